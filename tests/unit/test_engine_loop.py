"""The engine's batch loop against in-memory Kafka fakes: aborts, rewinds, nothing lost."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError
from aiokafka.structs import TopicPartition

from engine.metrics import EngineMetrics
from engine.settings import Settings, load_settings
from engine.stream import engine as engine_module
from engine.stream.engine import Engine
from tests.unit.stream_fakes import FakeBroker, FakeConsumer, FakeLogReader, record

WAIT_SECONDS = 10
# A fenced partition waits this long for its revocation before it takes a new producer.
FENCED_WAIT_SECONDS = 0.5


def _session(user: str, n: int) -> dict[str, Any]:
    return {
        "event_id": f"{user}-{n}",
        "user_id": user,
        "type": "session_start",
        "timestamp": int(time.time() * 1000),
    }


def _log(topic: str, partition: int, count: int) -> list[Any]:
    return [record(topic, partition, n, _session(f"u{partition}", n)) for n in range(count)]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        {
            "data_dir": tmp_path / "data",
            "partitions": 2,
            "checkpoint_interval_seconds": 0.001,
            "worker_id": "unit",
        }
    )


class Running:
    """An engine whose loop runs on fakes, until the test ends."""

    def __init__(self, engine: Engine, consumer: FakeConsumer, broker: FakeBroker) -> None:
        self.engine = engine
        self.consumer = consumer
        self.broker = broker
        self.catalog_starts = 0
        self.catalog_lost = asyncio.Event()  # set: the follower fails once
        self.catalog_restarted = asyncio.Event()


@pytest.fixture
async def running(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Running]:
    consumer = FakeConsumer({})
    broker = FakeBroker(consumer, settings.partitions)
    engine = Engine(
        settings,
        EngineMetrics(),
        new_consumer=lambda **options: consumer,
        new_producer=lambda _, partition: broker.producer_for(partition),
        new_recovery_consumer=lambda **options: FakeLogReader(broker),
        fenced_wait_seconds=FENCED_WAIT_SECONDS,
    )
    running = Running(engine, consumer, broker)

    async def no_topics_to_create(*args: object) -> list[str]:
        return []

    async def catalog_start() -> None:
        running.catalog_starts += 1
        if running.catalog_starts > 1:
            running.catalog_restarted.set()
        engine.catalog.ready.set()

    async def catalog_follow() -> None:
        if running.catalog_starts == 1:
            await running.catalog_lost.wait()
            raise ConnectionError("the catalog's consumer failed")
        await asyncio.Event().wait()

    monkeypatch.setattr(engine_module, "ensure_topics", no_topics_to_create)
    monkeypatch.setattr(engine.catalog, "start", catalog_start)
    monkeypatch.setattr(engine.catalog, "follow", catalog_follow)
    task = asyncio.create_task(engine.run())
    await consumer.subscribed.wait()
    yield running
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_an_aborted_checkpoint_loses_no_record_of_any_partition(
    running: Running, settings: Settings
) -> None:
    """Partition 0's checkpoint aborts while partition 1's records are being fetched.

    Partition 0 is read again from its last commit; partition 1's records, fetched
    after the abort, must be processed too: their positions have moved on, so records
    dropped now would never be read again.
    """
    sessions = settings.topic("sessions")
    p0, p1 = TopicPartition(sessions, 0), TopicPartition(sessions, 1)
    consumer, broker = running.consumer, running.broker
    consumer.logs[p0] = _log(sessions, 0, 10)
    broker.commit_failures[0] = 1

    async def before_fetch(fetch: int) -> None:
        if consumer.positions.get(p0) == 10 and p1 not in consumer.logs:
            # Partition 1's records arrive while partition 0's first checkpoint fails
            # and partition 0 is rewound.
            consumer.logs[p1] = _log(sessions, 1, 10)
            consumer.seeked.clear()  # set when the partitions started: wait for the rewind
            await consumer.seeked.wait()
            assert broker.aborts == 1
        await asyncio.sleep(0)

    consumer.before_fetch = before_fetch
    await consumer.assign({0, 1})
    await asyncio.wait_for(broker.wait_committed({p0: 10, p1: 10}), WAIT_SECONDS)
    assert broker.aborts == 1
    assert running.engine.records_committed["sessions"] == 20


async def test_a_fenced_producer_is_replaced_and_the_partition_carries_on(
    running: Running, settings: Settings
) -> None:
    """A broker outage longer than the transaction timeout fences the producer for good."""
    sessions = settings.topic("sessions")
    p0 = TopicPartition(sessions, 0)
    consumer, broker = running.consumer, running.broker
    consumer.logs[p0] = _log(sessions, 0, 10)
    await consumer.assign({0, 1})
    await asyncio.wait_for(broker.wait_committed({p0: 10}), WAIT_SECONDS)

    broker.fence(0)  # the coordinator aborted the open transaction and bumped the epoch
    consumer.logs[p0] += [record(sessions, 0, n, _session("u0", n)) for n in range(10, 20)]
    await asyncio.wait_for(broker.wait_committed({p0: 20}), WAIT_SECONDS)
    assert len([p for p in broker.producers if p.partition == 0]) >= 2
    assert running.engine.records_committed["sessions"] == 20


async def test_the_catalog_follower_is_restarted_when_it_fails(running: Running) -> None:
    running.catalog_lost.set()  # the follower's consumer fails
    await asyncio.wait_for(running.catalog_restarted.wait(), WAIT_SECONDS)


async def test_a_worker_stopped_while_waiting_for_kafka_closes_its_consumer(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    consumer = FakeConsumer({})
    broker = FakeBroker(consumer, settings.partitions)
    engine = Engine(
        settings,
        EngineMetrics(),
        new_consumer=lambda **options: consumer,
        new_producer=lambda _, partition: broker.producer_for(partition),
        new_recovery_consumer=lambda **options: FakeLogReader(broker),
    )
    tried = asyncio.Event()

    async def kafka_unreachable(*args: object) -> list[str]:
        tried.set()
        raise KafkaConnectionError("Unable to bootstrap")

    monkeypatch.setattr(engine_module, "ensure_topics", kafka_unreachable)
    task = asyncio.create_task(engine.run())
    await asyncio.wait_for(tried.wait(), WAIT_SECONDS)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert consumer.stopped
