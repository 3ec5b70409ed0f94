"""`declic worker --processes 2` on a real broker: partitions spread over the processes, one
/health and /metrics for both, a killed process restarted by its parent, a clean stop."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from engine.bench.measure import alive
from engine.child_process import free_port
from engine.settings import Settings, load_settings
from engine.stream.topics import ensure_topics
from engine.worker_process import WorkerProcess
from tests.integration.conftest import Harness

pytestmark = pytest.mark.integration

PARTITIONS = 4
DEADLINE_SECONDS = 180.0


async def _health_until(
    worker: WorkerProcess, accept: Callable[[dict[str, Any]], bool], what: str
) -> dict[str, Any]:
    """Poll the parent's /health until it answers 200 and `accept` holds; return the body."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    last: Any = "no answer"
    while time.monotonic() < deadline:
        assert worker.running, f"the worker exited; see {worker.log_path}"
        try:
            status, body = await asyncio.to_thread(worker.health_status)
        except (OSError, ValueError) as error:
            last = error
        else:
            last = (status, body)
            if status == 200 and accept(body):
                return body
        await asyncio.sleep(0.2)
    raise AssertionError(f"never {what}; last /health: {last}; see {worker.log_path}")


def _spread(body: dict[str, Any]) -> bool:
    """Each process runs at least one partition, and together all of them."""
    owned = [set(child["partitions"]) for child in body["children"]]
    running = {p for p, state in body["partition_states"].items() if state == "running"}
    return (
        len(owned) == 2
        and all(owned)
        and set().union(*owned) == set(range(PARTITIONS))
        and running == {str(p) for p in range(PARTITIONS)}
    )


def _samples(worker: WorkerProcess, name: str) -> dict[str, float]:
    """Return a metric's value per process label (summed over its other labels)."""
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(worker.metrics_text()):
        for sample in family.samples:
            if sample.name == name:
                process = sample.labels.get("process", "")
                values[process] = values.get(process, 0.0) + sample.value
    return values


def _sessions(count: int) -> list[dict[str, Any]]:
    now = int(time.time() * 1000)
    return [
        {
            "event_id": f"ev-{uuid.uuid4().hex[:8]}",
            "user_id": f"user-{uuid.uuid4().hex[:8]}",
            "type": "session_start",
            "timestamp": now,
        }
        for _ in range(count)
    ]


async def _delivered(harness: Harness, engagement_id: str, events: list[dict[str, Any]]) -> None:
    """Publish session starts and wait for one delivery per user."""
    deliveries = await harness.tail("deliveries")
    try:
        await harness.send_many("sessions", events)
        records = await deliveries.read(at_least=len(events), quiet_seconds=0.3, max_seconds=120)
    finally:
        await deliveries.stop()
    users = {r["user_id"] for r in records if r["engagement_id"] == engagement_id}
    assert users == {event["user_id"] for event in events}


@pytest.fixture
def settings_2p(bootstrap: str, tmp_path: Path) -> Settings:
    run = uuid.uuid4().hex[:8]
    return load_settings(
        {
            "kafka_bootstrap": bootstrap,
            "topic_prefix": f"it-{run}-procs-",
            "partitions": PARTITIONS,
            "data_dir": tmp_path / "data",
            "web_port": free_port(),
            "worker_id": f"it-{run}-procs",
            "checkpoint_interval_seconds": 0.1,
            "author": "integration-tests",
        }
    )


async def test_two_processes_share_the_partitions_and_survive_a_kill(
    settings_2p: Settings, tmp_path: Path
) -> None:
    await ensure_topics(settings_2p)
    worker = WorkerProcess(settings_2p, tmp_path / "worker.log", processes=2)
    harness = Harness(settings_2p, worker)
    worker.start()
    try:
        body = await _health_until(worker, _spread, "both processes running partitions")
        assert [child["worker_id"] for child in body["children"]] == [
            f"{settings_2p.worker_id}-0",
            f"{settings_2p.worker_id}-1",
        ]
        engagement_id = f"procs-{uuid.uuid4().hex[:8]}"
        await harness.apply(
            {
                "id": engagement_id,
                "name": "Processes",
                "status": "active",
                "trigger": {"event": "session_start"},
                "message": {"title": "Hello", "body": "..."},
                "ignore_frequency_caps": True,
            }
        )
        await _delivered(harness, engagement_id, _sessions(20))

        # /metrics carries both processes' series, and the parent's own.
        assigned = await asyncio.to_thread(_samples, worker, "declic_assigned_partitions")
        assert set(assigned) == {"0", "1"} and all(value >= 1 for value in assigned.values())
        running = await asyncio.to_thread(_samples, worker, "declic_worker_processes_running")
        assert running == {"": 2.0}

        # A process killed outright is started again by its parent, and takes its partitions.
        killed = body["children"][1]["pid"]
        parent = worker.pid
        assert killed is not None and parent is not None and killed != parent
        await asyncio.to_thread(_kill, killed)
        body = await _health_until(
            worker,
            lambda b: b["children"][1]["pid"] not in (None, killed) and _spread(b),
            "process 1 restarted with all partitions running",
        )
        assert body["children"][1]["restarts"] == 1 and body["children"][0]["restarts"] == 0
        restarts = await asyncio.to_thread(_samples, worker, "declic_worker_process_restarts_total")
        assert restarts == {"0": 0.0, "1": 1.0}
        await _delivered(harness, engagement_id, _sessions(20))

        # SIGTERM to the parent stops both processes gracefully, then the parent.
        children = [child["pid"] for child in body["children"]]
        assert await asyncio.to_thread(worker.stop, 120.0) == 0
        assert not any(alive(pid) for pid in children)
    finally:
        await harness.close()
        worker.stop()


def _kill(pid: int) -> None:
    import os
    import signal

    os.kill(pid, signal.SIGKILL)
