"""A worker outlives what used to stop it: an oversized dead letter, a late broker, an outage.

The broker tests run a broker of their own (`deploy/local/kafka.sh`, free ports, the test's
temporary directory), to start it late or stop it under a running worker.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from engine.child_process import free_port
from engine.schemas import validator
from engine.settings import Settings, load_settings
from engine.stream.tail import TopicTail, read_to_end
from engine.worker_process import WorkerProcess
from tests.integration.conftest import Harness
from tests.integration.test_engine import _custom, _engagement, _id
from tests.offsets import group_lag

pytestmark = pytest.mark.integration

T = TypeVar("T")
KAFKA_SH = Path(__file__).resolve().parents[2] / "deploy" / "local" / "kafka.sh"
# A slow, shared 2-core machine: a broker may take a minute or more to (re)start.
BROKER_SECONDS = 240
READY_SECONDS = 240
TRANSACTION_TIMEOUT_SECONDS = 2.0


def _log_tail(worker: WorkerProcess, lines: int = 60) -> str:
    text = worker.log_path.read_text(errors="replace") if worker.log_path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


def _alive(worker: WorkerProcess) -> None:
    assert worker.running, f"the worker exited; its log ends with:\n{_log_tail(worker)}"


async def _until(
    check: Callable[[], Awaitable[T | None]],
    what: str,
    seconds: float,
    worker: WorkerProcess | None = None,
) -> T:
    """Return the first truthy answer of ``check``, polled until a deadline (the worker, if
    given, must stay alive meanwhile)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if worker is not None:
            _alive(worker)
        answer = await check()
        if answer:
            return answer
        await asyncio.sleep(0.25)
    log = "" if worker is None else f"; the worker's log ends with:\n{_log_tail(worker)}"
    raise AssertionError(f"not within {seconds:.0f}s: {what}{log}")


async def _health(worker: WorkerProcess) -> tuple[int, dict[str, Any]] | None:
    """Return /health's status and document (None while the web server does not answer)."""
    try:
        return await asyncio.to_thread(worker.health_status)
    except (OSError, ValueError):
        return None


async def _serving(worker: WorkerProcess, seconds: float = READY_SECONDS) -> dict[str, Any]:
    """Wait until /health answers 200 with every partition assigned and running."""
    everything = [str(p) for p in range(worker.settings.partitions)]

    async def check() -> dict[str, Any] | None:
        answer = await _health(worker)
        if answer is None or answer[0] != 200:
            return None
        states = answer[1]["partition_states"]
        running = sorted(states) == everything and set(states.values()) == {"running"}
        return answer[1] if running else None

    return await _until(check, "/health 200 with every partition running", seconds, worker)


async def _arrived(tail: TopicTail, found: Callable[[dict[str, Any]], bool]) -> list[Any]:
    """Return the records read so far (and in the next moment) that ``found`` accepts."""
    return [record for record in await tail.read(quiet_seconds=0, max_seconds=1) if found(record)]


# -- a rejected record near the size limit ------------------------------------------------

BIG_VALUE_BYTES = 1_000_000


async def test_a_rejected_record_near_1_mb_becomes_a_truncated_dead_letter_and_does_not_loop(
    harness: Harness,
) -> None:
    engagement_id = _id("after-big")
    event = f"After Big {engagement_id}"
    await harness.apply(_engagement(engagement_id, {"event": "custom", "name": event}))
    log_start = harness.worker.log_path.stat().st_size
    letters = await harness.tail("dead-letters")
    deliveries = await harness.tail("deliveries")
    user = _id("user")
    # Past max_input_bytes: rejected unread (too_large); its dead letter would be over the
    # broker's limit if it carried the whole value.
    value = b"<" + os.urandom(BIG_VALUE_BYTES - 1)
    await harness.send("custom-events", value, key=user)
    good = _custom(user, event)
    await harness.send("custom-events", good)  # same key: behind the big one on its partition

    key = base64.b64encode(user.encode()).decode()
    worker = harness.worker
    await _until(lambda: _arrived(letters, lambda r: r["key"] == key), "dead letter", 120, worker)
    delivered = await _until(
        lambda: _arrived(deliveries, lambda r: r["engagement_id"] == engagement_id),
        "the delivery of the event behind the rejected record",
        120,
        worker,
    )
    assert [d["trigger_event_id"] for d in delivered] == [good["event_id"]]
    mine = [r for r in await letters.read(quiet_seconds=1.0) if r["key"] == key]
    assert len(mine) == 1, mine  # once: the record did not come round again
    letter = mine[0]
    await letters.stop()
    await deliveries.stop()

    validator("dead-letter").check(letter)
    assert letter["reason"] == "too_large"
    assert letter["source_topic"] == harness.settings.topic("custom-events")
    assert letter["truncated"] is True
    assert letter["value_bytes"] == BIG_VALUE_BYTES
    assert letter["key_bytes"] == len(user.encode())
    kept = base64.b64decode(letter["value"], validate=True)
    assert 0 < len(kept) < BIG_VALUE_BYTES
    assert kept == value[: len(kept)]
    assert len(orjson.dumps(letter)) <= harness.settings.max_record_bytes
    new_log = harness.worker.log_path.read_bytes()[log_start:].decode(errors="replace")
    assert "checkpoint aborted" not in new_log, new_log[-5000:]
    _alive(harness.worker)


# -- a broker of its own ---------------------------------------------------------------------


def _port_pair() -> int:
    """Return a free port P whose next port (the controller's) is free too."""
    while True:
        port = free_port()
        with socket.socket() as probe, contextlib.suppress(OSError):
            probe.bind(("127.0.0.1", port + 1))
            return port


class Broker:
    """A single-node broker of deploy/local/kafka.sh, on ports and in a directory of its own."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir, self.port = run_dir, _port_pair()
        self.bootstrap = f"127.0.0.1:{self.port}"

    def kafka_sh(self, command: str) -> None:
        """Run `kafka.sh start` (return once the broker answers) or `stop` (a clean stop)."""
        env = {
            **os.environ,
            "DECLIC_KAFKA_PORT": str(self.port),
            "DECLIC_KAFKA_RUN_DIR": str(self.run_dir),
            "DECLIC_KAFKA_TIMEOUT": str(BROKER_SECONDS),
        }
        result = subprocess.run(
            ["bash", str(KAFKA_SH), command],
            env=env,
            capture_output=True,
            text=True,
            timeout=BROKER_SECONDS + 120,
            check=False,
        )
        assert result.returncode == 0, f"kafka.sh {command} failed:\n{result.stderr}"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """Return a broker of the test's own, not started yet; it is stopped after the test.

    Without Java or Kafka's jars (`kafka.sh fetch`), fail under CI and skip elsewhere.
    """
    fetched = subprocess.run(
        ["bash", str(KAFKA_SH), "fetch"], capture_output=True, text=True, check=False
    )
    if fetched.returncode != 0 or not (shutil.which("java") or os.environ.get("JAVA_HOME")):
        reason = f"kafka.sh cannot run a broker here: {fetched.stderr[-2000:] or 'no java'}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    own = Broker(tmp_path / "kafka")
    try:
        yield own
    finally:
        own.kafka_sh("stop")


def _worker_settings(bootstrap: str, tmp_path: Path, **overrides: Any) -> Settings:
    run = uuid.uuid4().hex[:8]
    return load_settings(
        {
            "kafka_bootstrap": bootstrap,
            "topic_prefix": f"res-{run}-",
            "partitions": 2,
            "data_dir": tmp_path / "data",
            "web_port": free_port(),
            "worker_id": f"res-{run}-1",
            "checkpoint_interval_seconds": 0.1,
            "author": "integration-tests",
            **overrides,
        }
    )


# -- a worker started before its broker ------------------------------------------------------


async def test_a_worker_started_before_its_broker_waits_and_then_serves(
    broker: Broker, tmp_path: Path
) -> None:
    settings = _worker_settings(broker.bootstrap, tmp_path)
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    harness = Harness(settings, worker)
    worker.start()
    try:

        async def waiting() -> list[str] | None:
            answer = await _health(worker)
            if answer is None or answer[0] != 503:
                return None
            return [p for p in answer[1]["problems"] if "waiting for Kafka" in p] or None

        problems = await _until(waiting, "/health 503 saying it waits for Kafka", 120, worker)
        assert broker.bootstrap in problems[0], problems

        async def retried() -> bool:
            return worker.log_path.read_text(errors="replace").count("waiting for Kafka") >= 3

        # Several tries, seconds apart, and still running: it waits instead of exiting.
        await _until(retried, "three 'waiting for Kafka' log lines", 120, worker)
        answer = await _health(worker)
        assert answer is not None and answer[0] == 503, answer

        await asyncio.to_thread(broker.kafka_sh, "start")
        health = await _serving(worker)
        assert health["problems"] == [] and health["catalog_loaded"] is True

        engagement_id = _id("late")
        event = f"Late Broker {engagement_id}"
        await harness.apply(_engagement(engagement_id, {"event": "custom", "name": event}))
        deliveries = await harness.tail("deliveries")
        user = _id("user")
        trigger = _custom(user, event)
        await harness.send("custom-events", trigger)
        records = await deliveries.read(at_least=1, quiet_seconds=0.3, max_seconds=120)
        await deliveries.stop()
        assert [(r["user_id"], r["trigger_event_id"]) for r in records] == [
            (user, trigger["event_id"])
        ]
        _alive(worker)
    finally:
        await harness.close()
        worker.stop()


# -- a broker outage longer than the transaction timeout -------------------------------------


class Publisher:
    """Publish one trigger event per new user until stopped; keep the acknowledged users."""

    def __init__(self, settings: Settings, event: str) -> None:
        self.settings, self.event = settings, event
        self.acked: list[str] = []
        self.failed = 0
        self.stopping = asyncio.Event()

    async def run(self) -> None:
        options = self.settings.kafka_client_options()
        producer = AIOKafkaProducer(**options, request_timeout_ms=3000, linger_ms=0)
        await producer.start()
        try:
            while not self.stopping.is_set():
                user = _id("user")
                value = orjson.dumps(_custom(user, self.event))
                sent = producer.send_and_wait(
                    self.settings.topic("custom-events"), value, key=user.encode()
                )
                try:
                    await asyncio.wait_for(sent, 15)
                except Exception:  # the broker is down: not acknowledged, so not expected
                    self.failed += 1
                    continue
                self.acked.append(user)
                await asyncio.sleep(0.05)  # a steady trickle of events
        finally:
            await asyncio.wait_for(producer.stop(), 30)


async def test_a_broker_outage_longer_than_the_transaction_timeout_loses_and_duplicates_nothing(
    broker: Broker, tmp_path: Path
) -> None:
    await asyncio.to_thread(broker.kafka_sh, "start")
    settings = _worker_settings(
        broker.bootstrap, tmp_path, transaction_timeout_seconds=TRANSACTION_TIMEOUT_SECONDS
    )
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    harness = Harness(settings, worker)
    engagement_id = _id("once")  # once per user, ever
    event = f"Outage {engagement_id}"
    publisher = Publisher(settings, event)
    publishing: asyncio.Task[None] | None = None
    worker.start()
    try:
        await _serving(worker)
        await harness.apply(_engagement(engagement_id, {"event": "custom", "name": event}))
        before = [_id("user") for _ in range(20)]
        deliveries = await harness.tail("deliveries")
        await harness.send_many("custom-events", [_custom(user, event) for user in before])
        records = await deliveries.read(at_least=len(before), quiet_seconds=0.3, max_seconds=120)
        await deliveries.stop()
        assert sorted(r["user_id"] for r in records) == sorted(before)
        await harness.close()

        publishing = asyncio.create_task(publisher.run())

        async def acked(count: int) -> bool:
            return len(publisher.acked) >= count

        await _until(lambda: acked(20), "20 events published", 60, worker)  # under way
        # A clean stop closes requests mid-flight: the producer under way is left unusable.
        await asyncio.to_thread(broker.kafka_sh, "stop")
        down_since = time.monotonic()
        # Down for well over the transaction timeout: the checkpoint under way fails, and
        # its producer is left unusable (aiokafka's fatal state) or fenced by the broker.
        while time.monotonic() - down_since < 5 * TRANSACTION_TIMEOUT_SECONDS:
            _alive(worker)
            await asyncio.sleep(0.2)
        acked_before_restart = len(publisher.acked)
        await asyncio.to_thread(broker.kafka_sh, "start")

        await _serving(worker)
        await _until(
            lambda: acked(acked_before_restart + 20), "20 more events published", 120, worker
        )
        publisher.stopping.set()
        await publishing
        assert publisher.failed > 0, "no send failed: the broker was never down"

        async def processed() -> bool:
            return await group_lag(settings) == 0

        await _until(processed, "every custom event processed", 180, worker)
        raw = await read_to_end(settings, settings.topic("deliveries"), max_seconds=120)
        delivered = [orjson.loads(record.value) for record in raw]
        once = [d for d in delivered if d["engagement_id"] == engagement_id]
        users = [d["user_id"] for d in once]
        expected = set(before) | set(publisher.acked)
        assert sorted(expected - set(users)) == [], _log_tail(worker)
        assert len(users) == len(set(users)), "a user got two deliveries"
        assert len({d["delivery_id"] for d in once}) == len(once), "a delivery came twice"
        health = await _serving(worker, seconds=30)
        assert health["problems"] == []
        _alive(worker)
    finally:
        publisher.stopping.set()
        if publishing is not None:
            await asyncio.gather(publishing, return_exceptions=True)
        await harness.close()
        worker.stop()
