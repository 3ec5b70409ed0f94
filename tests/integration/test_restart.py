"""State and outputs across worker restarts, crashes and lost local disks."""

from __future__ import annotations

import asyncio
import shutil

import pytest

from engine.child_process import free_port
from engine.worker_process import WorkerProcess
from tests.integration.conftest import Harness
from tests.integration.test_engine import _custom, _engagement, _id

pytestmark = pytest.mark.integration


async def _restart(worker: WorkerProcess, *, crash: bool, wipe_local_state: bool = False) -> None:
    if crash:
        worker.kill()
    else:
        assert worker.stop() == 0
    if wipe_local_state:
        # A new machine: nothing on disk, everything must come back from the changelog.
        shutil.rmtree(worker.settings.data_dir, ignore_errors=True)
    worker.start()
    await asyncio.to_thread(worker.wait_ready)


async def _delivered_to(harness: Harness, engagement_id: str, user: str, event: str) -> list[str]:
    deliveries = await harness.tail("deliveries")
    await harness.send("custom-events", _custom(user, event))
    records = await deliveries.read(at_least=1, quiet_seconds=0.3, max_seconds=30)
    await deliveries.stop()
    return [r["user_id"] for r in records if r["engagement_id"] == engagement_id]


@pytest.mark.parametrize(
    ("crash", "wipe_local_state"),
    [(False, False), (True, False), (True, True)],
    ids=["graceful-stop", "sigkill", "sigkill-and-lost-disk"],
)
async def test_once_per_user_survives_restart(
    harness: Harness, crash: bool, wipe_local_state: bool
) -> None:
    engagement_id = _id("once")
    sentinel_id = _id("sentinel")
    event = f"Restart Check {engagement_id}"
    await harness.apply(
        _engagement(engagement_id, {"event": "custom", "name": event}),
        # Re-eligible every time: its delivery proves the event was processed. The first
        # time it loses to the once-per-user engagement on priority (equal: id order).
        _engagement(
            sentinel_id,
            {"event": "custom", "name": event},
            reeligibility={"after_seconds": 1},
        ),
    )
    user = _id("user")
    assert await _delivered_to(harness, engagement_id, user, event) == [user]

    await _restart(harness.worker, crash=crash, wipe_local_state=wipe_local_state)
    await asyncio.sleep(1.1)  # let the sentinel become re-eligible
    deliveries = await harness.tail("deliveries")
    await harness.send("custom-events", _custom(user, event))
    records = await deliveries.read(at_least=1, quiet_seconds=0.5, max_seconds=60)
    await deliveries.stop()
    assert [r["engagement_id"] for r in records] == [sentinel_id]


async def test_crash_mid_stream_produces_each_delivery_exactly_once(harness: Harness) -> None:
    engagement_id = _id("burst")
    await harness.apply(_engagement(engagement_id, {"event": "custom", "name": "Burst"}))
    deliveries = await harness.tail("deliveries")
    users = [_id("user") for _ in range(2000)]
    await harness.send_many("custom-events", [_custom(user, "Burst") for user in users])
    await asyncio.sleep(0.1)  # the worker is mid-stream when it dies
    await _restart(harness.worker, crash=True)

    records = await deliveries.read(at_least=len(users), quiet_seconds=1.0, max_seconds=90)
    await deliveries.stop()
    burst = [r for r in records if r["engagement_id"] == engagement_id]
    assert sorted(r["user_id"] for r in burst) == sorted(users)
    assert len({r["delivery_id"] for r in burst}) == len(burst)


async def test_pending_deliveries_survive_sigkill_exactly_once(harness: Harness) -> None:
    engagement_id = _id("later")
    event, purchase = f"Later {engagement_id}", f"Bought {engagement_id}"
    await harness.apply(
        _engagement(
            engagement_id,
            {
                "event": "custom",
                "name": event,
                "delay_seconds": 4,
                "cancel_on": [{"event": purchase}],
            },
        )
    )
    waiting = [_id("user") for _ in range(30)]
    buyers = [_id("user") for _ in range(10)]
    deliveries = await harness.tail("deliveries")
    before = harness.counter("declic_events_read", topic="custom-events")
    await harness.send_many("custom-events", [_custom(user, event) for user in waiting + buyers])
    await harness.send_many("custom-events", [_custom(user, purchase) for user in buyers])
    # Crash once the triggers (and cancellations) are committed, before anything is due.
    await harness.wait_counter(
        "declic_events_read", before + 50, topic="custom-events", max_seconds=10
    )
    await _restart(harness.worker, crash=True)

    records = await deliveries.read(at_least=len(waiting), quiet_seconds=2.0, max_seconds=60)
    await deliveries.stop()
    later = [r for r in records if r["engagement_id"] == engagement_id]
    assert sorted(r["user_id"] for r in later) == sorted(waiting)
    assert len({r["delivery_id"] for r in later}) == len(later)


async def test_worker_exits_non_zero_when_its_state_cannot_open(
    harness: Harness, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # The group's state directory is a plain file: the worker starts, joins, and then
    # cannot open any partition's state. It must stop for its supervisor to see, not linger.
    run = _id("broken")
    settings = harness.settings.model_copy(
        update={
            "topic_prefix": f"{run}-",
            "worker_id": f"{run}-worker",
            "web_port": free_port(),
            "data_dir": tmp_path_factory.mktemp("broken-data"),
        }
    )
    (settings.data_dir / f"{settings.topic_prefix}{settings.app_id}").write_text("")
    broken = WorkerProcess(settings, tmp_path_factory.mktemp("broken-logs") / "worker.log")
    broken.start()
    try:
        status = await asyncio.to_thread(broken.wait_exit, 120.0)
    finally:
        broken.stop()
    log = broken.log_path.read_text(errors="replace")
    assert status not in (None, 0), log
    assert "engine stopped on an unrecoverable error" in log
