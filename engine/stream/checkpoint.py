"""One checkpoint of one partition: outputs, state changes and input offsets in one transaction.

Each input partition has its own transactional producer (transactional id derived
from the partition), so a worker that takes a partition over fences the previous
owner, and a restarted worker aborts what its crashed self left open. The steps of a
checkpoint, in order: begin; produce the outputs; produce the changed state to the
changelog; add the input offsets to the transaction; wait for every batch; commit.
Local RocksDB is written by the caller, and only after the commit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.structs import TopicPartition

from engine.settings import Settings
from engine.stream.bulk_send import BatchProducer, BulkSender, OutputRecord, SentBatch

TRANSACTION_RETRY_BACKOFF_MS = 5


class TransactionalProducer(BatchProducer, Protocol):
    """What a partition needs of aiokafka's producer (a fake stands in for it in tests)."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def begin_transaction(self) -> None: ...
    async def commit_transaction(self) -> None: ...
    async def abort_transaction(self) -> None: ...
    async def send_offsets_to_transaction(
        self, offsets: dict[TopicPartition, int], group_id: str
    ) -> None: ...


def transactional_id(settings: Settings, partition: int) -> str:
    """Return the transactional id that owns one input partition."""
    return f"{settings.topic_prefix}{settings.app_id}-engine-p{partition}"


async def start_partition_producer(settings: Settings, partition: int) -> TransactionalProducer:
    """Start a transactional producer; this fences any previous owner of the partition."""
    producer = AIOKafkaProducer(
        **settings.kafka_producer_options(),
        client_id=f"{settings.app_id}-{settings.worker_id}-p{partition}",
        transactional_id=transactional_id(settings, partition),
        transaction_timeout_ms=int(settings.transaction_timeout_seconds * 1000),
        linger_ms=5,
        # A transaction begun just after the previous commit meets ConcurrentTransactions
        # until the broker has written the commit markers; the 100 ms default retry backoff
        # would add that much to every delivery's latency.
        retry_backoff_ms=TRANSACTION_RETRY_BACKOFF_MS,
        compression_type=None,
        max_batch_size=256 * 1024,
        max_request_size=settings.max_record_bytes + 64 * 1024,
    )
    try:
        await producer.start()
    except BaseException:
        await producer.stop()  # a producer that could not start still holds its client
        raise
    return producer  # type: ignore[no-any-return]


async def run_transaction(
    producer: TransactionalProducer,
    sender: BulkSender,
    *,
    records: Iterable[OutputRecord],
    changelog: TopicPartition,
    changes: Iterable[tuple[bytes, bytes | None]],
    offsets: dict[TopicPartition, int],
    group_id: str,
) -> int | None:
    """Commit records, state changes and offsets in one transaction.

    Return the offset of the last changelog record written, if any. On an error the
    transaction is left as it is: the caller aborts it (or replaces the producer).
    """
    await producer.begin_transaction()
    batches: list[SentBatch] = []
    try:
        batches += await sender.send(records)
        changelog_batches = await sender.send_to(changelog.topic, changelog.partition, changes)
        batches += changelog_batches
        if offsets:
            await producer.send_offsets_to_transaction(offsets, group_id)
        await asyncio.gather(*(batch.future for batch in batches))
    except BaseException:
        for batch in batches:
            # The failure is the transaction's, reported once by the caller: the batches'
            # own errors would only be logged as "never retrieved".
            batch.future.add_done_callback(_retrieve)
        raise
    await producer.commit_transaction()
    if not changelog_batches:
        return None
    return max(batch.last_offset() for batch in changelog_batches)


def _retrieve(future: asyncio.Future[object]) -> None:
    if not future.cancelled():
        future.exception()
