"""Read what arrives on a topic from now on: for the demo, the tests and operators."""

from __future__ import annotations

import time
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord, TopicPartition

from engine.settings import Settings
from engine.stream.topics import partitions_of


class TopicTail:
    """Committed records of one topic, from the offsets it had when started."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self._settings = settings
        self.topic = topic
        self._consumer: AIOKafkaConsumer | None = None
        self.records: list[dict[str, Any]] = []

    async def start(self, from_beginning: bool = False) -> None:
        """Connect and position at the end (or the beginning) of every partition; call
        stop() afterwards, whether this succeeded or not."""
        partitions = await partitions_of(self._settings, self.topic)
        consumer = AIOKafkaConsumer(
            **self._settings.kafka_client_options(),
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
        )
        self._consumer = consumer  # stop() closes it, even if start() fails
        await consumer.start()
        assigned = [TopicPartition(self.topic, partition) for partition in sorted(partitions)]
        consumer.assign(assigned)
        if from_beginning:
            await consumer.seek_to_beginning(*assigned)
        else:
            await consumer.seek_to_end(*assigned)
            for tp in assigned:
                await consumer.position(tp)  # fix the start now, not at first read

    async def read(
        self, at_least: int = 0, quiet_seconds: float = 2.0, max_seconds: float = 60.0
    ) -> list[dict[str, Any]]:
        """Collect records until at least `at_least` arrived and none came for quiet_seconds."""
        assert self._consumer is not None, "start() first"
        deadline = time.monotonic() + max_seconds
        last_arrival = time.monotonic()
        while time.monotonic() < deadline:
            batches = await self._consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for record in records:
                    self.records.append(orjson.loads(record.value))
                    last_arrival = time.monotonic()
            if len(self.records) >= at_least and time.monotonic() - last_arrival >= quiet_seconds:
                break
        return self.records

    async def stop(self) -> None:
        """Disconnect."""
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None


async def read_to_end(
    settings: Settings,
    topic: str,
    start_offsets: dict[int, int] | None = None,
    max_seconds: float | None = None,
) -> list[ConsumerRecord]:
    """Return a topic's committed records, from the beginning (or the given offsets per
    partition) up to the end it had when called, partition by partition."""
    partitions = [TopicPartition(topic, p) for p in await partitions_of(settings, topic)]
    if start_offsets is not None:
        partitions = [tp for tp in partitions if tp.partition in start_offsets]
    consumer = AIOKafkaConsumer(
        **settings.kafka_client_options(),
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    records: list[ConsumerRecord] = []
    deadline = None if max_seconds is None else time.monotonic() + max_seconds
    try:
        await consumer.start()
        consumer.assign(partitions)
        if start_offsets is None:
            await consumer.seek_to_beginning(*partitions)
        else:
            for tp in partitions:
                consumer.seek(tp, start_offsets[tp.partition])
        ends = await consumer.end_offsets(partitions)
        for tp, end in ends.items():
            while await consumer.position(tp) < end:
                if deadline is not None and time.monotonic() >= deadline:
                    break
                batch = await consumer.getmany(tp, timeout_ms=1000)
                records.extend(batch.get(tp, []))
    finally:
        await consumer.stop()
    return records
