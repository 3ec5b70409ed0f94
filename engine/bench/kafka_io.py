"""Raw aiokafka pieces of the benchmark: publishing, the ceiling pass-through, cleanup."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import TopicPartition

from engine.bench.workload import Message
from engine.core.timestamps import parse_timestamp
from engine.errors import DeclicError
from engine.settings import Settings
from engine.stream.tail import read_to_end
from engine.stream.topics import partitions_of

BULK_LINGER_MS = 20
# Events published at a fixed rate are timed from their timestamp: a backend service sends
# them as they happen, so they wait in the producer no longer than this.
PROMPT_LINGER_MS = 2
PRODUCER_OPTIONS: dict[str, Any] = {
    "max_batch_size": 256 * 1024,
    "compression_type": None,
}
# Acknowledgements awaited at most this far behind the latest send: the bench publishes as
# many records as it has users, and holding a future for each would grow without bound.
SEND_WINDOW = 10_000


class BenchError(DeclicError):
    """Raise when the benchmark cannot run or a measured step does not finish."""


def bulk_producer(settings: Settings, linger_ms: int = BULK_LINGER_MS) -> AIOKafkaProducer:
    """Return a producer tuned for throughput (big batches, `linger_ms` to fill them)."""
    return AIOKafkaProducer(
        **settings.kafka_producer_options(), **PRODUCER_OPTIONS, linger_ms=linger_ms
    )


async def send_all(
    producer: AIOKafkaProducer,
    settings: Settings,
    messages: Iterable[Message],
    window: int = SEND_WINDOW,
) -> int:
    """Send messages without waiting for each acknowledgement, keeping at most `window`
    unacknowledged (memory stays bounded however many `messages` yields); return the count."""
    pending: deque[asyncio.Future[Any]] = deque()
    sent = 0
    for message in messages:
        topic = settings.topic(message.kind)
        pending.append(await producer.send(topic, message.value, key=message.key))
        sent += 1
        if len(pending) > window:
            # Usually acknowledged long since: this rarely waits, so batches keep filling.
            await pending.popleft()
    await producer.flush()
    await asyncio.gather(*pending)
    return sent


async def publish(settings: Settings, messages: Iterable[Message]) -> int:
    """Publish messages with a throw-away bulk producer, as `messages` yields them."""
    producer = bulk_producer(settings)
    await producer.start()
    try:
        return await send_all(producer, settings, messages)
    finally:
        await producer.stop()


async def create_topic(
    settings: Settings, name: str, partitions: int, configs: dict[str, str] | None = None
) -> None:
    """Create one topic (the scratch outputs, or deliveries stamped by the broker)."""
    admin = AIOKafkaAdminClient(**settings.kafka_client_options())
    await admin.start()
    try:
        spec = NewTopic(name, partitions, settings.replication_factor, topic_configs=configs or {})
        await admin.create_topics([spec])
    finally:
        await admin.close()


async def delete_topics_with_prefix(settings: Settings, prefix: str) -> list[str]:
    """Delete every topic whose name starts with `prefix`; return their names."""
    admin = AIOKafkaAdminClient(**settings.kafka_client_options())
    await admin.start()
    try:
        names = sorted(name for name in await admin.list_topics() if name.startswith(prefix))
        if names:
            await admin.delete_topics(names)
        return names
    finally:
        await admin.close()


async def _assigned_from_start(settings: Settings, topics: Sequence[str]) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(
        **settings.kafka_client_options(),
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        max_partition_fetch_bytes=4 * 1024 * 1024,
        fetch_max_bytes=32 * 1024 * 1024,
    )
    partitions = [
        TopicPartition(topic, partition)
        for topic in topics
        for partition in await partitions_of(settings, topic)
    ]
    await consumer.start()
    consumer.assign(partitions)
    await consumer.seek_to_beginning(*partitions)
    return consumer


async def ceiling(
    settings: Settings, topics: Sequence[str], out_topic: str, expected: int, max_seconds: float
) -> dict[str, Any]:
    """Consume `expected` records, parse each, produce one output each; return the rate."""
    consumer = await _assigned_from_start(settings, topics)
    producer = bulk_producer(settings)
    await producer.start()
    count = 0
    first = 0.0
    deadline = time.monotonic() + max_seconds
    try:
        while count < expected:
            if time.monotonic() > deadline:
                raise BenchError(f"ceiling: only {count}/{expected} records in {max_seconds:.0f}s")
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            if batches and not first:
                first = time.monotonic()
            for records in batches.values():
                for record in records:
                    event = orjson.loads(record.value)
                    output = {"user_id": event["user_id"], "event_id": event["event_id"]}
                    await producer.send(out_topic, orjson.dumps(output), key=record.key)
                    count += 1
        await producer.flush()
        elapsed = time.monotonic() - first
    finally:
        await producer.stop()
        await consumer.stop()
    return {"events": count, "seconds": elapsed, "events_per_second": count / elapsed}


async def count_records(settings: Settings, topic: str) -> int:
    """Return how many committed records `topic` holds."""
    return len(await read_to_end(settings, topic))


async def delivery_latencies(
    settings: Settings, since_ms: float, max_seconds: float = 60.0
) -> list[tuple[int, float]]:
    """Return (broker timestamp, broker timestamp - triggered_at), in ms, of each delivery
    triggered since `since_ms`."""
    latencies: list[tuple[int, float]] = []
    records = await read_to_end(settings, settings.topic("deliveries"), max_seconds=max_seconds)
    for record in records:
        delivery = orjson.loads(record.value)
        triggered_ms = parse_timestamp(delivery["triggered_at"])
        if delivery.get("test") or triggered_ms < since_ms:
            continue
        latencies.append((record.timestamp, float(record.timestamp - triggered_ms)))
    return latencies
