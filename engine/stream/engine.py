"""The engine's data plane: a batch consumer loop over the input topics.

Faust's per-message stream path costs ~300 us of CPU per record; this loop
reads whole batches with aiokafka, matches them synchronously, and commits
each partition's outputs, state and offsets in one transaction per
checkpoint interval, so Kafka costs are paid per batch, not per event.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections import Counter
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.structs import ConsumerRecord, TopicPartition

from engine.core.caps import FrequencyCap
from engine.core.catalog import Catalog
from engine.core.policy import MatchPolicy
from engine.metrics import BatchTally, EngineMetrics
from engine.settings import Settings
from engine.state.recovery import recover
from engine.state.store import PartitionStore
from engine.stream.catalog_follower import CatalogFollower
from engine.stream.checkpoint import Checkpointer, CheckpointFailed, start_partition_producer
from engine.stream.processor import Outbox, PartitionProcessor
from engine.stream.topics import TopicNames

log = logging.getLogger(__name__)

# Time given to the engagement figures' scans between batches: a slice at most once per
# period, so that small, frequent batches (a moderate load) still get 80% of the loop.
STATS_SLICE_SECONDS = 0.005
STATS_SLICE_PERIOD_SECONDS = 0.025
# Records are handed to a partition's processor this many at a time, and other tasks
# (the commit under way, group heartbeats, HTTP) get the loop after about this long of
# processing: well within the 10 s group session, without handing it over needlessly.
SLICE_RECORDS = 100
SLICE_SECONDS = 0.5
# A checkpoint still committing after this many intervals holds the processing back.
COMMIT_WAIT_FACTOR = 5
# Committed counts reach the metrics and engagement figures at most this late. Folding
# costs per distinct engagement and outcome, so it is done for many checkpoints at once.
FOLD_INTERVAL_SECONDS = 5.0


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self._engine.release({tp.partition for tp in revoked})

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        await self._engine.acquire({tp.partition for tp in assigned})


class Engine:
    """Consume input partitions in batches and commit results transactionally."""

    def __init__(self, settings: Settings, metrics: EngineMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.topics = TopicNames.for_settings(settings)
        self.group_id = f"{settings.topic_prefix}{settings.app_id}"
        self.catalog = CatalogFollower(settings, on_change=self._on_catalog_change)
        self.policy = MatchPolicy(
            max_age_ms=int(settings.max_event_age_seconds * 1000),
            max_future_ms=int(settings.max_future_seconds * 1000),
            frequency_caps=tuple(
                FrequencyCap(max=cap.max, per_seconds=cap.per_seconds)
                for cap in settings.frequency_caps
            ),
            default_timezone=settings.default_timezone,
        )
        self._checkpointers: dict[int, Checkpointer] = {}
        self._lock = asyncio.Lock()
        self._consumer: AIOKafkaConsumer | None = None
        self._last_checkpoint = time.monotonic()
        self._last_stats = time.monotonic()
        self._last_stats_slice = 0.0
        # Committed tallies not yet folded into the metrics and figures, by partition,
        # with the monotonic time of the first one.
        self._unfolded: dict[int, tuple[float, BatchTally]] = {}
        self._failure: Exception | None = None
        # The checkpoint under way, committing while the next batches are processed.
        self._commit_task: asyncio.Task[None] | None = None
        # Bumped when partitions are rewound: batches fetched before are stale.
        self._rewinds = 0
        self.ready = asyncio.Event()
        # Input records committed by this worker since it started, by input topic kind.
        self.records_committed: Counter[str] = Counter()

    @property
    def partitions(self) -> list[int]:
        """Return the input partitions this worker owns."""
        return sorted(self._checkpointers)

    async def run(self) -> None:
        """Load the catalog, join the group, and process until cancelled."""
        await self.catalog.start()
        catalog_task = asyncio.create_task(self.catalog.follow(), name="declic-catalog")
        consumer = AIOKafkaConsumer(
            **self.settings.kafka_client_options(),
            client_id=f"{self.settings.app_id}-{self.settings.worker_id}",
            group_id=self.group_id,
            # Static membership: a restarted worker takes its partitions back at once
            # instead of waiting for its previous self's session to time out.
            group_instance_id=self.settings.worker_id,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            # Range assignment gives one worker partition p of every input topic,
            # where that user's state lives.
            partition_assignment_strategy=(RangePartitionAssignor,),
            max_partition_fetch_bytes=4 * 1024 * 1024,
            fetch_max_wait_ms=10,
        )
        self._consumer = consumer
        await consumer.start()
        consumer.subscribe(list(self.topics.inputs), listener=_Rebalance(self))
        try:
            await self._loop(consumer)
        finally:
            catalog_task.cancel()
            await asyncio.gather(catalog_task, return_exceptions=True)
            await self._shutdown(consumer)

    async def _loop(self, consumer: AIOKafkaConsumer) -> None:
        interval = self.settings.checkpoint_interval_seconds
        timeout_ms = max(1, int(interval * 500))
        while True:
            rewinds = self._rewinds
            batches = await consumer.getmany(
                timeout_ms=timeout_ms, max_records=self.settings.max_batch_records
            )
            async with self._lock:
                if self._failure is not None:
                    raise self._failure
                if batches and rewinds == self._rewinds:
                    await self._process(consumer, batches, rewinds)
                now_ms = int(time.time() * 1000)
                for checkpointer in self._checkpointers.values():
                    checkpointer.processor.release_due(now_ms)
                self._work_on_stats(now_ms)
                self._fold_oldest_due()
                if self._commit_task is not None and self._commit_task.done():
                    task, self._commit_task = self._commit_task, None
                    task.result()  # a failure other than an aborted transaction stops the worker
                elapsed = time.monotonic() - self._last_checkpoint
                if self._commit_task is None and elapsed >= interval:
                    # Kafka round trips of the commit overlap the processing of the next batches.
                    self._commit_task = asyncio.create_task(
                        self._checkpoint_all(), name="declic-checkpoint"
                    )
                elif self._commit_task is not None and elapsed >= COMMIT_WAIT_FACTOR * interval:
                    # Backpressure: a slow commit must not let the next outbox grow unbounded.
                    await asyncio.wait([self._commit_task])
            # getmany() returns without suspending while records are buffered: yield, or the
            # commit under way would wait until the backlog is drained.
            await asyncio.sleep(0)

    async def _process(
        self,
        consumer: AIOKafkaConsumer,
        batches: dict[TopicPartition, list[ConsumerRecord]],
        rewinds: int,
    ) -> None:
        """Process fetched records in slices, letting other tasks run between slices.

        A fetch can hold seconds of work (10,000 records with thousands of engagements):
        in one go it would delay the commit under way and the group heartbeats, and a
        worker silent for a session timeout loses its partitions.
        """
        yielded_at = time.monotonic()
        for tp, records in batches.items():
            checkpointer = self._checkpointers.get(tp.partition)
            if checkpointer is None:
                if tp in consumer.assignment():
                    # aiokafka hands out records before the assignment callback has
                    # opened the partition's state: read them again once it has.
                    consumer.seek(tp, records[0].offset)
                continue
            for start in range(0, len(records), SLICE_RECORDS):
                if time.monotonic() - yielded_at >= SLICE_SECONDS:
                    await asyncio.sleep(0)
                    yielded_at = time.monotonic()
                    if rewinds != self._rewinds:
                        return  # a checkpoint failed meanwhile: these records are read again
                now_ms = int(time.time() * 1000)
                checkpointer.processor.handle_batch(
                    tp, records[start : start + SLICE_RECORDS], now_ms
                )
            self._record_lag(consumer, tp, records[-1].offset + 1)

    async def _finish_commit(self) -> None:
        """Wait for the checkpoint under way, if any."""
        task, self._commit_task = self._commit_task, None
        if task is not None:
            await task

    def _record_lag(self, consumer: AIOKafkaConsumer, tp: TopicPartition, next_offset: int) -> None:
        highwater = consumer.highwater(tp)
        if highwater is not None:
            lag = max(0, highwater - next_offset)
            kind = self.topics.inputs[tp.topic].value
            self.metrics.consumer_lag.labels(kind, str(tp.partition)).set(lag)

    def _work_on_stats(self, now_ms: int) -> None:
        """Start a publication of engagement figures when due, and advance one under way."""
        processors = [checkpointer.processor for checkpointer in self._checkpointers.values()]
        publishing = [processor for processor in processors if processor.stats.publishing]
        if not publishing:
            if time.monotonic() - self._last_stats < self.settings.stats_interval_seconds:
                return
            self._last_stats = time.monotonic()
            self.fold_committed()  # the figures published include every committed count
            unseen_after_ms = self.settings.unseen_delivery_seconds * 1000
            for processor in processors:
                processor.begin_stats(now_ms, unseen_after_ms)
            publishing = processors
        if time.monotonic() - self._last_stats_slice < STATS_SLICE_PERIOD_SECONDS:
            return
        self._last_stats_slice = time.monotonic()
        for processor in publishing:
            seconds = processor.advance_stats(STATS_SLICE_SECONDS / len(publishing))
            if seconds is not None:
                self.metrics.stats_publication.observe(seconds)

    async def _checkpoint_all(self) -> None:
        self._last_checkpoint = time.monotonic()
        checkpointers = list(self._checkpointers.values())
        self.metrics.pending_deliveries.set(sum(len(c.processor.due) for c in checkpointers))
        results = await asyncio.gather(
            *(checkpointer.commit() for checkpointer in checkpointers), return_exceptions=True
        )
        for checkpointer, result in zip(checkpointers, results, strict=True):
            if isinstance(result, Outbox):
                self.records_committed.update(result.tally.events_read)
                partition = checkpointer.processor.partition
                if partition in self._unfolded:
                    self._unfolded[partition][1].merge(result.tally)
                else:
                    self._unfolded[partition] = (time.monotonic(), result.tally)
            elif isinstance(result, CheckpointFailed):
                log.error(
                    "partition %d: %s; re-reading from last commit",
                    result.partition,
                    result.__cause__,
                )
                # What was processed since the checkpoint began goes too: re-read it all.
                rewind_offsets = {
                    **checkpointer.processor.rollback(),
                    **result.rewind_offsets,
                }
                self._rewinds += 1
                if self._consumer is not None:
                    for tp, offset in rewind_offsets.items():
                        self._consumer.seek(tp, offset)
            elif isinstance(result, BaseException):
                raise result

    def fold_committed(self) -> None:
        """Fold the committed tallies into the metrics and the engagement figures."""
        for partition in list(self._unfolded):
            self._fold(partition)

    def _fold_oldest_due(self) -> None:
        """Fold the partition whose counts have waited longest, once they are due.

        One partition at a time: folding costs milliseconds per partition, a pause every
        delivery under way would otherwise wait for all at once.
        """
        if not self._unfolded:
            return
        since, partition = min(
            (since, partition) for partition, (since, _) in self._unfolded.items()
        )
        if time.monotonic() - since >= FOLD_INTERVAL_SECONDS:
            self._fold(partition)

    def _fold(self, partition: int) -> None:
        _, tally = self._unfolded.pop(partition)
        tally.settle()
        self.metrics.record(tally)
        checkpointer = self._checkpointers.get(partition)
        if checkpointer is not None:
            checkpointer.processor.stats.fold(tally, int(time.time() * 1000))

    async def acquire(self, partitions: set[int]) -> None:
        """Take ownership of partitions: fence the old owner, then recover state."""
        async with self._lock:  # no record of these partitions is processed meanwhile
            new = sorted(partitions - set(self._checkpointers))
            if not new:
                return
            started = time.perf_counter()
            try:
                checkpointers = await asyncio.gather(*(self._open_partition(p) for p in new))
            except Exception as error:
                # aiokafka only logs a failing callback: make the loop stop the worker instead.
                log.exception("could not open partitions %s", new)
                self._failure = error
                return
            for partition, checkpointer in zip(new, checkpointers, strict=True):
                self._checkpointers[partition] = checkpointer
            self.metrics.assigned_partitions.set(len(self._checkpointers))
            # What exists now (modules, catalog, partitions) lives as long as the worker: a
            # full collection need not walk it again, each walk pausing the batch loop.
            gc.collect()
            gc.freeze()
            log.info("assigned partitions %s in %.2fs", new, time.perf_counter() - started)
            self.ready.set()

    async def _open_partition(self, partition: int) -> Checkpointer:
        # The producer first: starting it aborts any transaction left open by a crashed owner,
        # so the changelog read below sees only committed state.
        producer = await start_partition_producer(self.settings, partition)
        store_path = self.settings.data_dir / self.group_id / f"partition-{partition}"
        store = PartitionStore(store_path)
        replayed = await recover(
            self.settings, store, TopicPartition(self.topics.state_changelog, partition)
        )
        self.metrics.state_recovery_records.inc(replayed)
        processor = PartitionProcessor(
            partition, store, self.topics, lambda: self.catalog.catalog, self.policy
        )
        return Checkpointer(self.settings, processor, producer, self.group_id, self.metrics)

    async def release(self, partitions: set[int]) -> None:
        """Commit what is pending, then let partitions go."""
        async with self._lock:
            await self._finish_commit()
            await self._checkpoint_all()
            self.fold_committed()
            for partition in sorted(partitions & set(self._checkpointers)):
                checkpointer = self._checkpointers.pop(partition)
                await checkpointer.producer.stop()
                checkpointer.processor.store.close()
                for kind in self.topics.inputs.values():
                    # The new owner reports this partition's lag from now on.
                    with contextlib.suppress(KeyError):
                        self.metrics.consumer_lag.remove(kind.value, str(partition))
            # What the released partitions held was frozen at their assignment: let the
            # collector reclaim it (the next assignment freezes what remains again).
            gc.unfreeze()
            self.metrics.assigned_partitions.set(len(self._checkpointers))
            if partitions:
                log.info("released partitions %s", sorted(partitions))

    async def _shutdown(self, consumer: AIOKafkaConsumer) -> None:
        try:
            await self.release(set(self._checkpointers))
        finally:
            await consumer.stop()
            await self.catalog.stop()

    def _on_catalog_change(self, catalog: Catalog) -> None:
        statuses: dict[str, int] = {}
        for engagement in catalog:
            statuses[engagement.status] = statuses.get(engagement.status, 0) + 1
        for status in ("draft", "active", "paused", "archived"):
            self.metrics.catalog_engagements.labels(status).set(statuses.get(status, 0))
