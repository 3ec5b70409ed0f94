"""The engine's data plane: a batch consumer loop over the input topics.

Faust's per-message stream path costs ~300 us of CPU per record; this loop
reads whole batches with aiokafka, matches them synchronously, and commits
each partition's outputs, state and offsets in one transaction per
checkpoint interval, so Kafka costs are paid per batch, not per event.

Each pass of the loop: move assigned partitions on (start their producers, replay
their changelogs: see ``partition`` and ``state.recovery``), fetch and process records
of the running partitions, release due deliveries, work on the engagement figures,
and start a checkpoint when one is due. A checkpoint commits while the next records
are processed; a partition whose checkpoint fails is rewound (or gets a new producer)
on its own, the others carry on.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord, TopicPartition

from engine.core.caps import FrequencyCap
from engine.core.catalog import Catalog
from engine.core.policy import MatchPolicy
from engine.metrics import EngineMetrics
from engine.retry import retry_kafka_forever
from engine.settings import Settings
from engine.state.recovery import ChangelogRecovery
from engine.state.store import PartitionStore
from engine.stats.partition_stats import PartitionStats
from engine.stream.catalog_follower import CatalogFollower
from engine.stream.checkpoint import TransactionalProducer, start_partition_producer
from engine.stream.figures import CommittedCounts, FigurePublications
from engine.stream.group import Rebalance, group_consumer
from engine.stream.partition import (
    FENCED_WAIT_SECONDS,
    Partition,
    PartitionContext,
    PartitionState,
)
from engine.stream.processor import PartitionProcessor
from engine.stream.topics import TopicNames, ensure_topics

log = logging.getLogger(__name__)

# Records are handed to a partition's processor this many at a time, and other tasks
# (the commit under way, group heartbeats, HTTP) get the loop after about this long of
# processing: well within the 10 s group session, without handing it over needlessly.
SLICE_RECORDS = 100
SLICE_SECONDS = 0.5
# Changelog replay per pass of the loop, while partitions are being recovered.
RECOVERY_SLICE_SECONDS = 0.25
# A checkpoint still committing after this many intervals holds the processing back.
COMMIT_WAIT_FACTOR = 5


class Engine:
    """Consume input partitions in batches and commit results transactionally."""

    def __init__(
        self,
        settings: Settings,
        metrics: EngineMetrics,
        *,
        new_consumer: Callable[..., Any] = AIOKafkaConsumer,
        new_producer: Callable[[Settings, int], Awaitable[TransactionalProducer]] = (
            start_partition_producer
        ),
        new_recovery_consumer: Callable[..., Any] = AIOKafkaConsumer,
        fenced_wait_seconds: float = FENCED_WAIT_SECONDS,
    ) -> None:
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
        self._new_consumer = new_consumer
        self._context = PartitionContext(
            topics=self.topics,
            group_id=self.group_id,
            metrics=metrics,
            new_processor=self._new_processor,
            new_producer=lambda partition: new_producer(settings, partition),
            fenced_wait_seconds=fenced_wait_seconds,
        )
        self._partitions: dict[int, Partition] = {}
        # Producers being started, by partition; retried until they start.
        self._opening: dict[int, asyncio.Task[None]] = {}
        self._recovery = ChangelogRecovery(
            settings, self.topics.state_changelog, new_recovery_consumer
        )
        self._lock = asyncio.Lock()
        self._consumer: Any = None
        self._last_checkpoint = time.monotonic()
        self._committed = CommittedCounts(metrics, self._stats_of)
        self._figures = FigurePublications(
            metrics,
            settings.stats_interval_seconds,
            settings.unseen_delivery_seconds * 1000,
            before=self.fold_committed,  # the figures published include every committed count
        )
        self._failure: Exception | None = None
        # The checkpoint under way, committing while the next batches are processed.
        self._commit_task: asyncio.Task[None] | None = None
        # What the worker waits for, while it waits (None once connected).
        self.waiting_for: str | None = "Kafka"
        # Input records committed by this worker since it started, by input topic kind.
        self.records_committed: Counter[str] = Counter()

    @property
    def partitions(self) -> list[int]:
        """Return the input partitions this worker processes."""
        return sorted(p for p, partition in self._partitions.items() if partition.running)

    def partition_states(self) -> dict[int, str]:
        """Return the state of every partition assigned to this worker."""
        return {p: partition.state.value for p, partition in sorted(self._partitions.items())}

    def _new_processor(self, partition: int, store: PartitionStore) -> PartitionProcessor:
        return PartitionProcessor(
            partition,
            store,
            self.topics,
            lambda: self.catalog.catalog,
            self.policy,
            max_record_bytes=self.settings.max_record_bytes,
            max_input_bytes=self.settings.max_input_bytes,
        )

    async def run(self) -> None:
        """Wait for Kafka, load the catalog, join the group, and process until cancelled."""
        consumer = group_consumer(self.settings, self.group_id, self._new_consumer)
        self._consumer = consumer
        catalog_task: asyncio.Task[None] | None = None
        try:
            # Inside the try: a worker stopped while it waits for Kafka closes its clients.
            await self._connect(consumer)
            catalog_task = asyncio.create_task(self.catalog.follow_forever(), name="declic-catalog")
            listener = Rebalance(self.acquire, self.release)
            consumer.subscribe(list(self.topics.inputs), listener=listener)
            await self._loop(consumer, catalog_task)
        finally:
            if catalog_task is not None:
                catalog_task.cancel()
                await asyncio.gather(catalog_task, return_exceptions=True)
            await self._shutdown(consumer)

    async def _connect(self, consumer: Any) -> None:
        """Create the topics, load the catalog and start the consumer, once Kafka answers."""

        def waiting(problem: str) -> None:
            self.waiting_for = f"Kafka at {self.settings.kafka_bootstrap} ({problem})"

        await retry_kafka_forever(lambda: ensure_topics(self.settings), "create topics", waiting)
        await retry_kafka_forever(self.catalog.start, "load the engagements", waiting)
        await retry_kafka_forever(consumer.start, "join the group", waiting)
        self.waiting_for = None

    async def _loop(self, consumer: Any, catalog_task: asyncio.Task[None]) -> None:
        interval = self.settings.checkpoint_interval_seconds
        timeout_ms = max(1, int(interval * 500))
        while True:
            await self._advance_partitions()
            batches = await consumer.getmany(
                timeout_ms=timeout_ms, max_records=self.settings.max_batch_records
            )
            # Taken as soon as the fetch returns: a rewind from now on makes these stale.
            generations = {p: partition.generation for p, partition in self._partitions.items()}
            async with self._lock:
                if self._failure is not None:
                    raise self._failure
                if catalog_task.done():
                    catalog_task.result()  # it restarts on any error: this raises only bugs
                    raise RuntimeError("the catalog follower stopped")
                if batches:
                    await self._process(consumer, batches, generations)
                now_ms = int(time.time() * 1000)
                for partition in self._running():
                    partition.processor.release_due(now_ms)
                self._figures.work([partition.processor for partition in self._running()], now_ms)
                self._committed.fold_oldest_due()
                if self._commit_task is not None and self._commit_task.done():
                    task, self._commit_task = self._commit_task, None
                    task.result()  # a checkpoint never fails the loop: this raises only bugs
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

    def _running(self) -> list[Partition]:
        return [partition for partition in self._partitions.values() if partition.running]

    async def _advance_partitions(self) -> None:
        """Start producers, replay changelogs, and resume the partitions that are ready.

        Kafka round trips run in tasks of their own (retried while Kafka is unavailable),
        never under the lock; only the changelog replay is done here, in a slice.
        """
        if all(partition.running for partition in self._partitions.values()):
            return
        async with self._lock:
            now = time.monotonic()
            for number, partition in list(self._partitions.items()):
                if number in self._opening:
                    continue
                if partition.state is PartitionState.ASSIGNING:
                    if now >= partition.producer_not_before:
                        self._start_task(number, self._open(partition), "open")
                elif (
                    partition.state is PartitionState.RECOVERING
                    and number not in self._recovery.partitions
                ):
                    self._start_task(number, self._begin_recovery(partition), "recover")
            for task in [task for task in self._opening.values() if task.done()]:
                task.result()  # only a local failure (the store) reaches here: stop the worker
            self._opening = {p: task for p, task in self._opening.items() if not task.done()}
            recovered = await self._recovery.step(RECOVERY_SLICE_SECONDS)
            for number, replayed in recovered.items():
                self.metrics.state_recovery_records.inc(replayed)
                self._start_task(number, self._resume(self._partitions[number]), "resume")

    def _start_task(self, number: int, work: Coroutine[Any, Any, None], what: str) -> None:
        self._opening[number] = asyncio.create_task(work, name=f"declic-{what}-p{number}")

    async def _open(self, partition: Partition) -> None:
        await retry_kafka_forever(
            partition.start_producer, f"start the producer of partition {partition.number}"
        )

    async def _begin_recovery(self, partition: Partition) -> None:
        await retry_kafka_forever(
            lambda: self._recovery.add(partition.number, partition.store),
            f"read the changelog of partition {partition.number}",
        )

    async def _resume(self, partition: Partition) -> None:
        await retry_kafka_forever(
            partition.start_running, f"read the committed offsets of partition {partition.number}"
        )
        # What exists now (modules, catalog, partitions) lives as long as the worker: a
        # full collection need not walk it again, each walk pausing the batch loop.
        gc.collect()
        gc.freeze()
        log.info("partition %d: running", partition.number)

    async def _process(
        self,
        consumer: Any,
        batches: dict[TopicPartition, list[ConsumerRecord]],
        generations: dict[int, int],
    ) -> None:
        """Process fetched records in slices, letting other tasks run between slices.

        A fetch can hold seconds of work (10,000 records with thousands of engagements):
        in one go it would delay the commit under way and the group heartbeats, and a
        worker silent for a session timeout loses its partitions. A partition rewound
        meanwhile skips the rest of its records: they are read again.
        """
        yielded_at = time.monotonic()
        for tp, records in batches.items():
            fetched_at = generations.get(tp.partition)
            for start in range(0, len(records), SLICE_RECORDS):
                if time.monotonic() - yielded_at >= SLICE_SECONDS:
                    await asyncio.sleep(0)
                    yielded_at = time.monotonic()
                partition = self._partitions.get(tp.partition)
                if partition is None or not partition.accepts(fetched_at):
                    break
                now_ms = int(time.time() * 1000)
                partition.handle(tp, records[start : start + SLICE_RECORDS], now_ms)
            else:
                self._record_lag(consumer, tp, records[-1].offset + 1)

    async def _finish_commit(self) -> None:
        """Wait for the checkpoint under way, if any."""
        task, self._commit_task = self._commit_task, None
        if task is not None:
            await task

    def _record_lag(self, consumer: Any, tp: TopicPartition, next_offset: int) -> None:
        highwater = consumer.highwater(tp)
        if highwater is not None:
            lag = max(0, highwater - next_offset)
            kind = self.topics.inputs[tp.topic].value
            self.metrics.consumer_lag.labels(kind, str(tp.partition)).set(lag)

    async def _checkpoint_all(self, only: set[int] | None = None) -> None:
        """Commit every running partition (or those of ``only``), each in its transaction."""
        self._last_checkpoint = time.monotonic()
        partitions = [
            partition
            for partition in self._partitions.values()
            if partition.state is PartitionState.RUNNING
            and (only is None or partition.number in only)
        ]
        self.metrics.pending_deliveries.set(
            sum(len(partition.processor.due) for partition in self._running())
        )
        results = await asyncio.gather(*(partition.commit() for partition in partitions))
        for partition, outbox in zip(partitions, results, strict=True):
            if outbox is None:
                continue
            self.records_committed.update(outbox.tally.events_read)
            self._committed.add(partition.number, outbox.tally)

    def fold_committed(self) -> None:
        """Fold the committed tallies into the metrics and the engagement figures."""
        self._committed.fold_all()

    def _stats_of(self, number: int) -> PartitionStats | None:
        partition = self._partitions.get(number)
        return partition.processor.stats if partition is not None and partition.running else None

    async def acquire(self, numbers: set[int]) -> None:
        """Take partitions on: they start as ASSIGNING, their inputs paused."""
        async with self._lock:
            new = sorted(numbers - set(self._partitions))
            try:
                for number in new:
                    store_path = self.settings.data_dir / self.group_id / f"partition-{number}"
                    store = PartitionStore(store_path)
                    self._partitions[number] = Partition(
                        number, store, self._context, self._consumer
                    )
            except Exception as error:
                # aiokafka only logs a failing callback: make the loop stop the worker instead.
                log.exception("could not open the state of partitions %s", new)
                self._failure = error
                return
            self.metrics.assigned_partitions.set(len(self._partitions))
            if new:
                log.info("assigned partitions %s", new)

    async def release(self, numbers: set[int]) -> None:
        """Commit what the partitions processed, then let them go."""
        async with self._lock:
            try:
                await self._finish_commit()
                await self._checkpoint_all(only=numbers)
                self.fold_committed()
            except Exception:
                # Let them go all the same: their new owner reads them from the last commit.
                log.exception("could not commit partitions %s before releasing them", numbers)
            for number in sorted(numbers & set(self._partitions)):
                partition = self._partitions.pop(number)
                opening = self._opening.pop(number, None)
                if opening is not None:
                    opening.cancel()
                    await asyncio.gather(opening, return_exceptions=True)
                await self._recovery.remove(number)
                await partition.close()
                for kind in self.topics.inputs.values():
                    # The new owner reports this partition's lag from now on.
                    with contextlib.suppress(KeyError):
                        self.metrics.consumer_lag.remove(kind.value, str(number))
            # What the released partitions held was frozen when they started running: let
            # the collector reclaim it (the next partition to run freezes what remains).
            gc.unfreeze()
            self.metrics.assigned_partitions.set(len(self._partitions))
            if numbers:
                log.info("released partitions %s", sorted(numbers))

    async def _shutdown(self, consumer: Any) -> None:
        try:
            await self.release(set(self._partitions))
        finally:
            await self._recovery.close()
            await consumer.stop()
            await self.catalog.stop()

    def _on_catalog_change(self, catalog: Catalog) -> None:
        statuses: dict[str, int] = {}
        for engagement in catalog:
            statuses[engagement.status] = statuses.get(engagement.status, 0) + 1
        for status in ("draft", "active", "paused", "archived"):
            self.metrics.catalog_engagements.labels(status).set(statuses.get(status, 0))
