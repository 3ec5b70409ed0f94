"""In-memory stand-ins for aiokafka's consumer and transactional producer.

They keep just enough of Kafka's behaviour to drive the engine's loop without a
broker: per-partition positions that fetches advance and seeks move back, committed
group offsets, and transactions whose records and offsets become visible only when
they commit. Failures are injected by the tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka.errors import ProducerFenced
from aiokafka.structs import ConsumerRecord, TopicPartition


def record(topic: str, partition: int, offset: int, value: dict[str, Any]) -> ConsumerRecord:
    """Return a consumer record keyed by the value's user_id."""
    key = str(value["user_id"]).encode()
    raw = orjson.dumps(value)
    return ConsumerRecord(topic, partition, offset, 0, 0, key, raw, None, len(key), len(raw), ())


class FakeConsumer:
    """A group consumer over fixed per-partition logs."""

    def __init__(self, logs: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        self.logs = logs
        self.positions: dict[TopicPartition, int] = {}
        self.committed_offsets: dict[TopicPartition, int] = {}
        self.listener: Any = None
        self.topics: list[str] = []
        self._assignment: set[TopicPartition] = set()
        self._paused: set[TopicPartition] = set()
        self.fetches = 0
        # Awaited at the start of each fetch, with the fetch's number (from 1).
        self.before_fetch: Callable[[int], Awaitable[None]] | None = None
        self.stopped = False
        self.seeked = asyncio.Event()
        self.subscribed = asyncio.Event()

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        self.stopped = True

    def subscribe(self, topics: Iterable[str], listener: Any = None) -> None:
        self.topics = list(topics)
        self.listener = listener
        self.subscribed.set()

    async def assign(self, partitions: set[int]) -> None:
        """Assign partitions of every subscribed topic, as a rebalance would."""
        tps = {TopicPartition(topic, p) for topic in self.topics for p in partitions}
        self._assignment |= tps
        for tp in tps:
            self.positions[tp] = self.committed_offsets.get(tp, 0)
        await self.listener.on_partitions_assigned(tps)

    def assignment(self) -> set[TopicPartition]:
        return set(self._assignment)

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[ConsumerRecord]]:
        self.fetches += 1
        if self.before_fetch is not None:
            await self.before_fetch(self.fetches)
        else:
            await asyncio.sleep(0)
        batches: dict[TopicPartition, list[ConsumerRecord]] = {}
        for tp in sorted(self._assignment - self._paused):
            position = self.positions[tp]
            records = self.logs.get(tp, [])[position : position + (max_records or 10_000)]
            if records:
                batches[tp] = records
                self.positions[tp] = records[-1].offset + 1
        return batches

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp] = offset
        self.seeked.set()

    async def seek_to_beginning(self, *tps: TopicPartition) -> None:
        for tp in tps:
            self.seek(tp, 0)

    async def position(self, tp: TopicPartition) -> int:
        return self.positions[tp]

    def highwater(self, tp: TopicPartition) -> int:
        return len(self.logs.get(tp, []))

    def pause(self, *tps: TopicPartition) -> None:
        self._paused |= set(tps)

    def resume(self, *tps: TopicPartition) -> None:
        self._paused -= set(tps)

    def paused(self) -> set[TopicPartition]:
        return set(self._paused)

    async def committed(self, tp: TopicPartition) -> int | None:
        return self.committed_offsets.get(tp)


@dataclass
class FakeBatch:
    """A record batch that takes any number of records."""

    records: list[tuple[bytes | None, bytes | None]] = field(default_factory=list)

    def append(self, *, key: bytes | None, value: bytes | None, timestamp: int | None) -> object:
        self.records.append((key, value))
        return object()


@dataclass(frozen=True)
class Metadata:
    offset: int


class TransactionFailed(Exception):
    """Raised by a fake producer told to fail a commit."""


class FakeProducer:
    """A transactional producer writing to shared in-memory topics on commit."""

    def __init__(self, broker: FakeBroker, partition: int) -> None:
        self.broker = broker
        self.partition = partition
        # Starting a producer with a transactional id fences every earlier one.
        broker.epochs[partition] = broker.epochs.get(partition, 0) + 1
        self.epoch = broker.epochs[partition]
        self.in_transaction = False
        self._pending: list[tuple[str, int, bytes | None, bytes | None]] = []
        self._offsets: dict[TopicPartition, int] = {}
        self.stopped = False

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        self.stopped = True

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(self.broker.partitions))

    def _check_epoch(self) -> None:
        if self.broker.epochs[self.partition] != self.epoch:
            raise ProducerFenced()

    async def begin_transaction(self) -> None:
        self._check_epoch()
        assert not self.in_transaction
        self.in_transaction = True

    def create_batch(self) -> FakeBatch:
        return FakeBatch()

    async def send_batch(self, batch: FakeBatch, topic: str, *, partition: int) -> Any:
        self._check_epoch()
        assert self.in_transaction
        log = self.broker.topic(topic, partition)
        first = len(log) + len([1 for t, p, _, _ in self._pending if (t, p) == (topic, partition)])
        for key, value in batch.records:
            self._pending.append((topic, partition, key, value))
        future: asyncio.Future[Metadata] = asyncio.get_running_loop().create_future()
        future.set_result(Metadata(first))
        return future

    async def send(self, topic: str, value: bytes, *, key: bytes | None, partition: int) -> Any:
        batch = FakeBatch([(key, value)])
        return await self.send_batch(batch, topic, partition=partition)

    async def send_offsets_to_transaction(
        self, offsets: dict[TopicPartition, int], group_id: str
    ) -> None:
        self._check_epoch()
        assert self.in_transaction
        self._offsets.update(offsets)

    async def commit_transaction(self) -> None:
        assert self.in_transaction
        await asyncio.sleep(0)  # a round trip: other tasks run meanwhile
        self._check_epoch()
        failure = self.broker.commit_failures.get(self.partition)
        if failure:
            self.broker.commit_failures[self.partition] = failure - 1
            raise TransactionFailed(f"commit of partition {self.partition} refused")
        for topic, partition, key, value in self._pending:
            self.broker.topic(topic, partition).append((key, value))
        self.broker.commit_offsets(self._offsets)
        self._pending, self._offsets = [], {}
        self.in_transaction = False

    async def abort_transaction(self) -> None:
        self.broker.aborting.set()
        if self.broker.abort_gate is not None:
            await self.broker.abort_gate.wait()  # a round trip the test holds open
        self._check_epoch()
        self._pending, self._offsets = [], {}
        self.in_transaction = False
        self.broker.aborts += 1
        self.broker.aborted.set()


class FakeBroker:
    """Topics and group offsets shared by fake producers and a fake consumer."""

    def __init__(self, consumer: FakeConsumer, partitions: int) -> None:
        self.consumer = consumer
        self.partitions = partitions
        self.topics: dict[tuple[str, int], list[tuple[bytes | None, bytes | None]]] = {}
        # Partition -> how many of its next commits fail.
        self.commit_failures: dict[int, int] = {}
        self.aborts = 0
        self.aborted = asyncio.Event()
        # When set, aborts wait for it: the test acts while an abort is under way.
        self.abort_gate: asyncio.Event | None = None
        self.aborting = asyncio.Event()  # an abort began
        self.offsets_changed = asyncio.Event()
        self.producers: list[FakeProducer] = []
        self.epochs: dict[int, int] = {}

    def fence(self, partition: int) -> None:
        """Bump the partition's producer epoch, as a transaction timeout or a new owner does."""
        self.epochs[partition] = self.epochs.get(partition, 0) + 1

    def topic(self, name: str, partition: int) -> list[tuple[bytes | None, bytes | None]]:
        return self.topics.setdefault((name, partition), [])

    def commit_offsets(self, offsets: dict[TopicPartition, int]) -> None:
        self.consumer.committed_offsets.update(offsets)
        self.offsets_changed.set()

    async def producer_for(self, partition: int) -> FakeProducer:
        producer = FakeProducer(self, partition)
        self.producers.append(producer)
        return producer

    async def wait_committed(self, expected: dict[TopicPartition, int]) -> None:
        """Return once the group's committed offsets reach ``expected``."""
        committed = self.consumer.committed_offsets
        while any(committed.get(tp, 0) < offset for tp, offset in expected.items()):
            self.offsets_changed.clear()
            await self.offsets_changed.wait()


class FakeLogReader:
    """A consumer without a group reading the fake broker's topics (a changelog, say)."""

    def __init__(self, broker: FakeBroker) -> None:
        self.broker = broker
        self.positions: dict[TopicPartition, int] = {}

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def assign(self, tps: list[TopicPartition]) -> None:
        self.positions = {tp: self.positions.get(tp, 0) for tp in tps}

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: len(self.broker.topic(tp.topic, tp.partition)) for tp in tps}

    async def seek_to_beginning(self, *tps: TopicPartition) -> None:
        for tp in tps:
            self.positions[tp] = 0

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp] = offset

    async def position(self, tp: TopicPartition) -> int:
        return self.positions[tp]

    async def getmany(
        self, *tps: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[ConsumerRecord]]:
        await asyncio.sleep(0)
        batches: dict[TopicPartition, list[ConsumerRecord]] = {}
        for tp in tps:
            log = self.broker.topic(tp.topic, tp.partition)
            start = self.positions[tp]
            chosen = log[start : start + (max_records or 10_000)]
            if chosen:
                batches[tp] = [
                    ConsumerRecord(
                        tp.topic, tp.partition, start + n, 0, 0, key, value, None, 0, 0, ()
                    )
                    for n, (key, value) in enumerate(chosen)
                ]
                self.positions[tp] = start + len(chosen)
        return batches
