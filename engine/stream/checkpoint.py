"""Commit one partition's outputs, state changes and input offsets in one Kafka transaction.

Each input partition has its own transactional producer (transactional id
derived from the partition), so a worker that takes a partition over fences
the previous owner, and a restarted worker aborts what its crashed self left
open. Local RocksDB is written only after the transaction commits.
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiokafka import AIOKafkaProducer
from aiokafka.structs import TopicPartition

from engine.errors import DeclicError
from engine.metrics import EngineMetrics
from engine.settings import Settings
from engine.stream.bulk_send import BulkSender
from engine.stream.processor import Outbox, PartitionProcessor

log = logging.getLogger(__name__)

TRANSACTION_RETRY_BACKOFF_MS = 5


def transactional_id(settings: Settings, partition: int) -> str:
    """Return the transactional id that owns one input partition."""
    return f"{settings.topic_prefix}{settings.app_id}-engine-p{partition}"


async def start_partition_producer(settings: Settings, partition: int) -> AIOKafkaProducer:
    """Start a transactional producer; this fences any previous owner of the partition."""
    producer = AIOKafkaProducer(
        **settings.kafka_client_options(),
        client_id=f"{settings.app_id}-{settings.worker_id}-p{partition}",
        transactional_id=transactional_id(settings, partition),
        enable_idempotence=True,
        transaction_timeout_ms=int(settings.transaction_timeout_seconds * 1000),
        linger_ms=5,
        # A transaction begun just after the previous commit meets ConcurrentTransactions
        # until the broker has written the commit markers; the 100 ms default retry backoff
        # would add that much to every delivery's latency.
        retry_backoff_ms=TRANSACTION_RETRY_BACKOFF_MS,
        compression_type=None,
        max_batch_size=256 * 1024,
    )
    await producer.start()
    return producer


class CheckpointFailed(DeclicError):
    """Raise when a partition's transaction could not commit; its inputs must be re-read."""

    def __init__(self, partition: int, rewind_offsets: dict[TopicPartition, int]) -> None:
        super().__init__(f"checkpoint of partition {partition} failed")
        self.partition = partition
        self.rewind_offsets = rewind_offsets


class Checkpointer:
    """Commit what a partition staged, atomically."""

    def __init__(
        self,
        settings: Settings,
        processor: PartitionProcessor,
        producer: AIOKafkaProducer,
        group_id: str,
        metrics: EngineMetrics,
    ) -> None:
        self._settings = settings
        self._processor = processor
        self._producer = producer
        self._group_id = group_id
        self._metrics = metrics
        self._changelog = processor.topics.state_changelog
        # Any input topic will do: they all have the same partition count (checked at start).
        input_topic = next(iter(processor.topics.inputs))
        self._sender = BulkSender(producer, input_topic, processor.partition)

    @property
    def processor(self) -> PartitionProcessor:
        """Return the partition's processor."""
        return self._processor

    @property
    def producer(self) -> AIOKafkaProducer:
        """Return the partition's transactional producer."""
        return self._producer

    async def commit(self) -> Outbox | None:
        """Produce the outbox, the staged state and the offsets in one transaction.

        Return the committed outbox, or None when there was nothing to commit.
        Raise CheckpointFailed after aborting the transaction; the caller rewinds.
        """
        processor = self._processor
        staged, outbox = processor.freeze_checkpoint()
        if outbox.is_empty() and not staged:
            return None
        started = time.perf_counter()
        producer = self._producer
        await producer.begin_transaction()
        try:
            batches = await self._sender.send(outbox.records)
            changelog_batches = await self._sender.send_to(
                self._changelog, processor.partition, staged.items()
            )
            if outbox.next_offsets:
                await producer.send_offsets_to_transaction(outbox.next_offsets, self._group_id)
            await asyncio.gather(*(batch.future for batch in (*batches, *changelog_batches)))
            await producer.commit_transaction()
        except BaseException as error:
            try:
                await producer.abort_transaction()
            except Exception:  # the producer may be fenced or gone: the rewind still happens
                log.warning("could not abort transaction of partition %d", processor.partition)
            self._metrics.checkpoints.labels("aborted").inc()
            if isinstance(error, Exception):
                raise CheckpointFailed(processor.partition, outbox.rewind_offsets) from error
            # Cancelled (the worker is stopping): nothing of this window was committed, so
            # forget it; the next owner reads these records again from the committed offsets.
            processor.rollback()
            raise
        last_changelog_offset = (
            max(batch.last_offset() for batch in changelog_batches) if changelog_batches else None
        )
        processor.store.commit_frozen(last_changelog_offset)
        committed_at = time.time()
        outbox.tally.delivery_latencies.extend(
            committed_at - triggered_ms / 1000 for triggered_ms in outbox.delivery_times_ms
        )
        self._metrics.checkpoints.labels("committed").inc()
        self._metrics.checkpoint_duration.observe(time.perf_counter() - started)
        return outbox
