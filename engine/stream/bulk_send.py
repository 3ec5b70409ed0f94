"""Produce a checkpoint's records as a few record batches instead of one send per record.

``AIOKafkaProducer.send`` costs tens of microseconds per record (a future, a partitioner
call in pure Python, accumulator bookkeeping); a checkpoint carries thousands. Records
are grouped by topic-partition in order and appended to ``BatchBuilder``s, which the
producer sends (inside the open transaction) like any other batch.

Partitions: a record keyed by the user goes to the partition number of the input
partition it came from when its topic has as many partitions as the inputs (the input
was routed by that same key, so this is where Kafka's default partitioner sends it, and
a user's records keep their order); other records go where the default partitioner
sends their key.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.structs import RecordMetadata


class BatchProducer(Protocol):
    """The part of aiokafka's producer that sends whole record batches."""

    async def partitions_for(self, topic: str) -> set[int]: ...
    def create_batch(self) -> Any: ...
    async def send_batch(self, batch: Any, topic: str, *, partition: int) -> Any: ...
    async def send(
        self, topic: str, value: bytes | None = None, key: bytes | None = None, **kwargs: Any
    ) -> Any: ...


@dataclass(frozen=True, slots=True)
class OutputRecord:
    """A record waiting for the checkpoint that produces it."""

    topic: str
    key: bytes | None
    value: bytes
    keyed_by_user: bool = False  # the key is the user id the input partition was routed by


@dataclass(frozen=True, slots=True)
class SentBatch:
    """A batch handed to the producer, with how many records it holds."""

    records: int
    future: asyncio.Future[RecordMetadata]

    def last_offset(self) -> int:
        """Return the offset of the batch's last record (call once the future is done)."""
        metadata = self.future.result()
        offset: int = metadata.offset
        return offset + self.records - 1


class BulkSender:
    """Append records to per-partition batches and send them through one producer."""

    def __init__(self, producer: BatchProducer, input_topic: str, input_partition: int):
        self._producer = producer
        self._input_topic = input_topic
        self._input_partition = input_partition
        self._partitions: dict[str, list[int]] = {}
        self._partitioner = DefaultPartitioner()

    async def _partitions_of(self, topic: str) -> list[int]:
        partitions = self._partitions.get(topic)
        if partitions is None:
            partitions = sorted(await self._producer.partitions_for(topic))
            self._partitions[topic] = partitions
        return partitions

    async def _group(
        self, records: Iterable[OutputRecord]
    ) -> dict[tuple[str, int], list[OutputRecord]]:
        groups: dict[tuple[str, int], list[OutputRecord]] = {}
        input_partitions = len(await self._partitions_of(self._input_topic))
        for record in records:
            partitions = await self._partitions_of(record.topic)
            if record.keyed_by_user and len(partitions) == input_partitions:
                partition = self._input_partition
            else:
                partition = self._partitioner(record.key, partitions, partitions)
            group = groups.get((record.topic, partition))
            if group is None:
                group = groups[(record.topic, partition)] = []
            group.append(record)
        return groups

    async def send(self, records: Iterable[OutputRecord]) -> list[SentBatch]:
        """Send records, each to the partition its key selects; keep order per partition."""
        sent: list[SentBatch] = []
        for (topic, partition), group in (await self._group(records)).items():
            sent.extend(await self.send_to(topic, partition, ((r.key, r.value) for r in group)))
        return sent

    async def send_to(
        self, topic: str, partition: int, items: Iterable[tuple[bytes | None, bytes | None]]
    ) -> list[SentBatch]:
        """Send key/value pairs to one partition, in order, in as few batches as fit."""
        producer = self._producer
        sent: list[SentBatch] = []
        batch = producer.create_batch()
        count = 0
        for key, value in items:
            if batch.append(key=key, value=value, timestamp=None) is None:
                # Full: send it and start another, which always takes one record.
                future = await producer.send_batch(batch, topic, partition=partition)
                sent.append(SentBatch(count, future))
                batch = producer.create_batch()
                count = 0
                if batch.append(key=key, value=value, timestamp=None) is None:
                    # Larger than a batch: send() gives it a batch of its own size.
                    future = await producer.send(topic, value, key=key, partition=partition)
                    sent.append(SentBatch(1, future))
                    continue
            count += 1
        if count:
            future = await producer.send_batch(batch, topic, partition=partition)
            sent.append(SentBatch(count, future))
        return sent
