"""Integration fixtures: a real Kafka broker, one shared worker, isolated topics per session.

The broker comes from DECLIC_KAFKA_BOOTSTRAP (`make test` starts one). Under CI a
missing broker fails the tests; elsewhere they are skipped with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from engine.admin.engagements import EngagementRejected, apply_engagements, change_status
from engine.child_process import free_port
from engine.settings import Settings, load_settings
from engine.stream.tail import TopicTail, read_to_end
from engine.stream.topics import ensure_topics, partitions_of
from engine.worker_process import WorkerProcess

pytestmark = pytest.mark.integration


def _broker_reachable(bootstrap: str) -> bool:
    host, _, port = bootstrap.split(",", maxsplit=1)[0].rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=3):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def bootstrap() -> str:
    """Return the broker's address, or fail (CI) / skip (elsewhere) without one."""
    address = os.environ.get("DECLIC_KAFKA_BOOTSTRAP")
    on_ci = os.environ.get("CI", "").lower() == "true"
    if not address or not _broker_reachable(address):
        reason = (
            f"no Kafka broker at DECLIC_KAFKA_BOOTSTRAP={address!r}; run `make test`, "
            "which starts one"
        )
        if on_ci:
            pytest.fail(reason)
        pytest.skip(reason)
    return address


@pytest.fixture(scope="session")
def settings(bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Return settings with topics of their own, so runs never see each other's records."""
    run = uuid.uuid4().hex[:8]
    return load_settings(
        {
            "kafka_bootstrap": bootstrap,
            "topic_prefix": f"it-{run}-",
            "partitions": 2,
            "data_dir": tmp_path_factory.mktemp("declic") / "data",
            "web_port": free_port(),
            "worker_id": f"it-{run}-1",
            "checkpoint_interval_seconds": 0.1,
            "stats_interval_seconds": 1,
            # Two days: events a few hours old still count (trigger frequency by hour).
            "max_event_age_seconds": 2 * 86_400,
            "author": "integration-tests",
        }
    )


class Harness:
    """Drive the shared worker: apply engagements, publish records, read outputs."""

    def __init__(self, settings: Settings, worker: WorkerProcess) -> None:
        self.settings = settings
        self.worker = worker
        self._producer: AIOKafkaProducer | None = None
        self.applied: set[str] = set()

    async def producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            self._producer = AIOKafkaProducer(**self.settings.kafka_client_options(), linger_ms=2)
            await self._producer.start()
        return self._producer

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def apply(self, *documents: dict[str, Any]) -> None:
        """Publish engagements and wait until the worker runs their new versions."""
        changes = await apply_engagements(self.settings, list(documents), int(time.time() * 1000))
        self.applied.update(change.engagement_id for change in changes)
        await self.wait_for_versions({change.engagement_id: change.version for change in changes})

    async def archive_applied(self) -> None:
        """Archive what this test applied, so it competes with no later test's engagements."""
        versions = {}
        for engagement_id in sorted(self.applied):
            with contextlib.suppress(EngagementRejected):  # already archived or deleted
                change = await change_status(
                    self.settings, engagement_id, "archive", int(time.time() * 1000)
                )
                versions[engagement_id] = change.version
        self.applied.clear()
        await self.wait_for_versions(versions)

    async def wait_for_versions(self, expected: dict[str, int]) -> None:
        """Wait until the worker runs these engagement versions."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            known = await asyncio.to_thread(self._engagements)
            if all(
                known.get(key, {}).get("version") == version for key, version in expected.items()
            ):
                return
            await asyncio.sleep(0.2)
        raise AssertionError(f"worker did not load engagements {expected}")

    def _engagements(self) -> dict[str, Any]:
        import urllib.request

        with urllib.request.urlopen(f"{self.worker.base_url}/engagements", timeout=5) as reply:
            return dict(orjson.loads(reply.read()))

    async def send(self, topic: str, value: dict[str, Any] | bytes, key: str | None = None) -> None:
        """Publish one record to an input topic, keyed by its user_id unless key is given."""
        if isinstance(value, dict):
            key = key if key is not None else value.get("user_id")
            raw = orjson.dumps(value)
        else:
            raw = value
        producer = await self.producer()
        await producer.send_and_wait(
            self.settings.topic(topic), raw, key=key.encode() if key is not None else None
        )

    async def send_many(self, topic: str, records: list[dict[str, Any]]) -> None:
        """Publish records keyed by user_id without waiting for each acknowledgement."""
        producer = await self.producer()
        futures = [
            await producer.send(
                self.settings.topic(topic), orjson.dumps(record), key=record["user_id"].encode()
            )
            for record in records
        ]
        await asyncio.gather(*futures)

    def counter(self, name: str, **labels: str) -> float:
        """Return the sum of a counter's samples whose labels include `labels`."""
        total = 0.0
        for family in text_string_to_metric_families(self.worker.metrics_text()):
            for sample in family.samples:
                if sample.name != f"{name}_total":
                    continue
                if all(sample.labels.get(key) == value for key, value in labels.items()):
                    total += sample.value
        return total

    async def wait_counter(
        self, name: str, at_least: float, max_seconds: float = 30, **labels: str
    ) -> float:
        """Wait until a counter reaches a value (metrics move only after a commit)."""
        deadline = time.monotonic() + max_seconds
        value = 0.0
        while time.monotonic() < deadline:
            value = await asyncio.to_thread(self.counter, name, **labels)
            if value >= at_least:
                return value
            await asyncio.sleep(0.1)
        raise AssertionError(f"{name}{labels} stayed at {value}, expected >= {at_least}")

    async def changelog_end_offsets(self) -> dict[int, int]:
        """Return the end offset of each partition of the state changelog."""
        topic = self.settings.internal_topic("state-changelog")
        consumer = AIOKafkaConsumer(**self.settings.kafka_client_options())
        await consumer.start()
        try:
            partitions = [
                TopicPartition(topic, p) for p in await partitions_of(self.settings, topic)
            ]
            ends = await consumer.end_offsets(partitions)
        finally:
            await consumer.stop()
        return {tp.partition: offset for tp, offset in ends.items()}

    async def outcome(self, engagement_id: str, outcome: str) -> float:
        """Wait until an engagement has an evaluation with this outcome; return the count."""
        return await self.wait_counter(
            "declic_evaluations", 1, engagement=engagement_id, outcome=outcome
        )

    async def changelog_keys_since(self, start: dict[int, int]) -> set[bytes]:
        """Return the keys written to the state changelog since the given end offsets."""
        topic = self.settings.internal_topic("state-changelog")
        return {record.key for record in await read_to_end(self.settings, topic, start)}

    async def tail(self, topic: str) -> TopicTail:
        """Start reading a topic from its current end."""
        reader = TopicTail(self.settings, self.settings.topic(topic))
        await reader.start()
        return reader


@pytest.fixture(scope="session")
def worker(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    """Start one worker for the whole session (a cold start costs seconds)."""
    asyncio.run(ensure_topics(settings))
    process = WorkerProcess(settings, tmp_path_factory.mktemp("logs") / "worker.log")
    process.start()
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


@pytest.fixture
async def harness(settings: Settings, worker: WorkerProcess) -> AsyncIterator[Harness]:
    """Return a harness on the shared worker."""
    driver = Harness(settings, worker)
    try:
        yield driver
    finally:
        await driver.archive_applied()
        await driver.close()
