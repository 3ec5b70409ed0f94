"""The bench workload is generated as it is published: memory does not grow with --users."""

from __future__ import annotations

import asyncio
import tracemalloc
from itertools import chain, islice
from typing import Any

import orjson
import pytest

from engine.bench import kafka_io
from engine.bench.workload import EventSource, Message, profiles
from engine.settings import Settings, load_settings

NOW_MS = 1_800_000_000_000
MANY_USERS = 10_000_000


class _Producer:
    """Stands in for aiokafka's producer: acknowledges each record at once, keeps none."""

    def __init__(self) -> None:
        self.sent = 0
        self.kinds: set[str] = set()

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def flush(self) -> None:
        pass

    async def send(self, topic: str, value: bytes, key: bytes) -> asyncio.Future[None]:
        self.sent += 1
        self.kinds.add(topic)
        future = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


def _publish_peak(settings: Settings, producer: _Producer, count: int) -> int:
    """Publish the first `count` profiles of MANY_USERS, then some events; return the peak
    bytes allocated meanwhile."""
    messages = chain(
        islice(profiles(MANY_USERS, NOW_MS, seed=1), count),
        EventSource(MANY_USERS, seed=1).stream(1_000, NOW_MS),
    )
    tracemalloc.start()
    try:
        asyncio.run(kafka_io.publish(settings, messages))
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_publishing_more_users_takes_no_more_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    producer = _Producer()
    monkeypatch.setattr(kafka_io, "bulk_producer", lambda *args, **kwargs: producer)
    settings = load_settings()
    # Both well past the send window, so what a record leaves behind would show as growth.
    few = _publish_peak(settings, producer, 2 * kafka_io.SEND_WINDOW)
    many = _publish_peak(settings, producer, 10 * kafka_io.SEND_WINDOW)
    assert producer.sent == 12 * kafka_io.SEND_WINDOW + 2_000
    kinds = ("profiles", "sessions", "custom-events")
    assert producer.kinds == {settings.topic(kind) for kind in kinds}
    # A list of 100,000 profile records alone takes about 30 MB (3 GB for 10 million).
    assert many < 1.5 * few
    assert many < 10_000_000


def test_profiles_are_generated_lazily_and_the_same_whatever_the_user_count() -> None:
    tracemalloc.start()
    try:
        first = list(islice(profiles(MANY_USERS, NOW_MS, seed=5), 100))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000
    # The users a smaller run has get the same profiles: a seed gives one workload.
    assert first == list(profiles(100, NOW_MS, seed=5))
    assert first != list(profiles(100, NOW_MS, seed=6))
    record: dict[str, Any] = orjson.loads(first[42].value)
    assert record["user_id"] == "bench-user-42" and first[42].key == b"bench-user-42"


def test_streamed_events_match_batched_ones() -> None:
    streamed = list(EventSource(MANY_USERS, seed=2).stream(500, NOW_MS))
    assert streamed == EventSource(MANY_USERS, seed=2).batch(500, NOW_MS)
    assert all(isinstance(message, Message) for message in streamed)
    assert {message.kind for message in streamed} == {"sessions", "custom-events"}
