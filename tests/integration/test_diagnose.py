"""`declic diagnose` on the five classic causes of low impressions, built on a real broker."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from engine.admin.diagnose import diagnose
from engine.admin.diagnose_cache import DIAGNOSE_CACHE_SECONDS
from engine.child_process import free_port
from engine.cli import main
from engine.core.timestamps import parse_timestamp
from engine.stats.reader import read_stats
from engine.worker_process import WorkerProcess
from tests.integration.conftest import Harness
from tests.integration.test_engine import _custom, _engagement, _id

pytestmark = pytest.mark.integration


async def _figures_settled(
    harness: Harness, engagement_id: str, evaluations: int
) -> dict[str, Any]:
    """Wait until the published figures count `evaluations` evaluations of the engagement."""
    deadline = time.monotonic() + 30
    figures: dict[str, Any] = {}
    while time.monotonic() < deadline:
        figures = (await read_stats(harness.settings)).get(engagement_id, {})
        if sum(figures.get("outcomes", {}).values()) >= evaluations:
            return figures
        await asyncio.sleep(0.5)
    raise AssertionError(f"figures of {engagement_id} did not reach {evaluations}: {figures}")


async def _impressions(harness: Harness, deliveries: list[dict[str, Any]]) -> None:
    now = int(time.time() * 1000)
    await harness.send_many(
        "interactions",
        [
            {
                "event_id": _id("ia"),
                "user_id": d["user_id"],
                "delivery_id": d["delivery_id"],
                "kind": "impression",
                "timestamp": now,
            }
            for d in deliveries
        ],
    )


async def _run(
    harness: Harness,
    document: dict[str, Any],
    events: list[dict[str, Any]],
    with_impressions: bool = True,
) -> str:
    """Apply, send, log impressions, wait for the figures; return the first verdict's cause."""
    engagement_id = document["id"]
    tail = await harness.tail("deliveries")
    await harness.send_many("custom-events", events)
    deliveries = [
        r
        for r in await tail.read(quiet_seconds=1.0, max_seconds=20)
        if r["engagement_id"] == engagement_id
    ]
    await tail.stop()
    if with_impressions:
        await _impressions(harness, deliveries)
        await harness.wait_counter("declic_impressions", len(deliveries), engagement=engagement_id)
    await _figures_settled(harness, engagement_id, len(events))
    await asyncio.sleep(1.5)  # one more publication, after the impressions
    report = await diagnose(harness.settings, engagement_id, int(time.time() * 1000))
    verdicts = report.to_json_dict()["verdicts"]
    assert verdicts, report.to_json_dict()
    return str(verdicts[0]["cause"])


async def test_tight_audience(harness: Harness) -> None:
    engagement_id = _id("tight")
    event = f"Tight {engagement_id}"
    document = _engagement(
        engagement_id,
        {"event": "custom", "name": event},
        audience={"filters": [{"attribute": "plan", "op": "eq", "value": "platinum"}]},
    )
    await harness.apply(document)
    users = [_id("user") for _ in range(40)]
    events = [
        {**_custom(user, event), "attributes": {"plan": "platinum" if i < 2 else "free"}}
        for i, user in enumerate(users)
    ]
    assert await _run(harness, document, events) == "audience"


async def test_schedule_ended(harness: Harness) -> None:
    engagement_id = _id("ended")
    event = f"Ended {engagement_id}"
    document = _engagement(
        engagement_id,
        {"event": "custom", "name": event},
        schedule={"start": "2026-01-01T00:00:00Z", "end": "2026-11-20T00:00:00Z"},
    )
    await harness.apply(document)
    events = [_custom(_id("user"), event) for _ in range(30)]
    assert await _run(harness, document, events) == "outside_schedule"


async def test_no_impressions_logged(harness: Harness) -> None:
    engagement_id = _id("silent")
    event = f"Silent {engagement_id}"
    document = _engagement(engagement_id, {"event": "custom", "name": event})
    await harness.apply(document)
    events = [_custom(_id("user"), event) for _ in range(30)]
    assert await _run(harness, document, events, with_impressions=False) == (
        "not_logging_impressions"
    )


async def test_rare_trigger(harness: Harness) -> None:
    engagement_id = _id("rare")
    event = f"Rare {engagement_id}"
    document = _engagement(engagement_id, {"event": "custom", "name": event})
    await harness.apply(document)
    # Twice in the last three hours (by event time).
    now = int(time.time() * 1000)
    events = [_custom(_id("user"), event, timestamp=now - hours * 3_600_000) for hours in (3, 2)]
    assert await _run(harness, document, events) == "rare_trigger"


async def test_changed_after_launch(harness: Harness) -> None:
    engagement_id = _id("changed")
    event = f"Changed {engagement_id}"
    document = _engagement(engagement_id, {"event": "custom", "name": event})
    await harness.apply(document)
    await harness.apply({**document, "audience": {"filters": [], "percent": 5}})
    events = [_custom(_id("user"), event) for _ in range(60)]
    assert await _run(harness, document, events) == "changed_after_launch"

    # The same report from the command line and from the worker's web server.
    settings = harness.settings
    code, text = await asyncio.to_thread(
        _cli,
        [
            "diagnose",
            engagement_id,
            "--bootstrap",
            settings.kafka_bootstrap,
            "--topic-prefix",
            settings.topic_prefix,
        ],
    )
    assert code == 0
    assert "audience.percent" in text and "100" in text and "5" in text
    served = await asyncio.to_thread(
        _get_json, f"{harness.worker.base_url}/diagnose/{engagement_id}"
    )
    assert served["verdicts"][0]["cause"] == "changed_after_launch"


def _get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=30) as reply:
        return dict(json.loads(reply.read()))


def _cli(argv: list[str]) -> tuple[int, str]:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(argv)
    return code, out.getvalue()


async def test_figures_add_up_across_two_workers(
    harness: Harness, tmp_path_factory: pytest.TempPathFactory
) -> None:
    settings = harness.settings
    second = WorkerProcess(
        settings.model_copy(
            update={
                "worker_id": f"{settings.worker_id}-second",
                "web_port": free_port(),
                "data_dir": tmp_path_factory.mktemp("second") / "data",
            }
        ),
        tmp_path_factory.mktemp("second-logs") / "worker.log",
    )
    second.start()
    try:
        await asyncio.to_thread(second.wait_ready)
        await _both_own_partitions(harness.worker, second)
        engagement_id = _id("shared")
        event = f"Shared {engagement_id}"
        await harness.apply(_engagement(engagement_id, {"event": "custom", "name": event}))
        users = [_id("user") for _ in range(40)]
        tail = await harness.tail("deliveries")
        await harness.send_many("custom-events", [_custom(user, event) for user in users])
        deliveries = await tail.read(at_least=len(users), quiet_seconds=1.0, max_seconds=30)
        await tail.stop()
        deliveries = [d for d in deliveries if d["engagement_id"] == engagement_id]
        await _impressions(harness, deliveries)
        figures = await _figures_settled(harness, engagement_id, len(users))
        deadline = time.monotonic() + 20
        while figures["variants"].get("default", {}).get("impressions", 0) < len(users):
            assert time.monotonic() < deadline, figures
            await asyncio.sleep(0.5)
            figures = (await read_stats(settings))[engagement_id]
        assert figures["outcomes"] == {"delivered": len(users)}
        assert figures["variants"]["default"]["deliveries"] == len(users)
        assert figures["variants"]["default"]["impressions"] == len(users)
    finally:
        second.stop()
    # Static membership: the first worker takes the partitions back after the session timeout.
    deadline = time.monotonic() + 60
    while len(harness.worker.health()["partitions"]) < settings.partitions:
        assert time.monotonic() < deadline, "the first worker did not take the partitions back"
        await asyncio.sleep(0.5)


async def _both_own_partitions(first: WorkerProcess, second: WorkerProcess) -> None:
    deadline = time.monotonic() + 60
    while not (first.health()["partitions"] and second.health()["partitions"]):
        assert time.monotonic() < deadline, "partitions were not shared between the workers"
        await asyncio.sleep(0.5)


async def test_concurrent_requests_to_the_worker_all_get_the_report(harness: Harness) -> None:
    engagement_id = _id("busy")
    event = f"Busy {engagement_id}"
    document = _engagement(engagement_id, {"event": "custom", "name": event})
    await harness.apply(document)
    await harness.apply({**document, "audience": {"filters": [], "percent": 5}})
    events = [_custom(_id("user"), event) for _ in range(60)]
    assert await _run(harness, document, events) == "changed_after_launch"
    url = f"{harness.worker.base_url}/diagnose/{engagement_id}"
    # A read an earlier request left in the worker's cache may predate this engagement.
    await _wait_for_cause(url, "changed_after_launch")
    answers = await asyncio.to_thread(_get_all_at_once, [url] * 20)

    assert [status for status, _ in answers] == [200] * 20
    reports = [json.loads(body) for _, body in answers]
    # Each is the report `diagnose` builds as of its generation time (one, unless a read
    # expired in between).
    for generated_at in {report["generated_at"] for report in reports}:
        expected = await diagnose(harness.settings, engagement_id, parse_timestamp(generated_at))
        single = json.loads(json.dumps(expected.to_json_dict()))
        assert single["verdicts"][0]["cause"] == "changed_after_launch"
        for report in reports:
            if report["generated_at"] == generated_at:
                assert report == single

    since = "2020-01-01T00:00:00Z"
    [(status, body)] = await asyncio.to_thread(_get_all_at_once, [f"{url}?since={since}"])
    assert status == 200
    assert json.loads(body)["changes_since"] == "2020-01-01T00:00:00.000Z"
    [(status, body)] = await asyncio.to_thread(_get_all_at_once, [f"{url}?since=yesterday"])
    assert status == 400
    assert json.loads(body)["error"] == "invalid_since"


async def _wait_for_cause(url: str, cause: str) -> None:
    """Wait until the worker's report of an engagement gives ``cause`` first."""
    deadline = time.monotonic() + 4 * DIAGNOSE_CACHE_SECONDS + 30
    while True:
        [(status, body)] = await asyncio.to_thread(_get_all_at_once, [url])
        verdicts = json.loads(body).get("verdicts") if status == 200 else None
        if verdicts and verdicts[0]["cause"] == cause:
            return
        assert time.monotonic() < deadline, f"{url} never gave {cause}: {status} {body[:500]!r}"
        await asyncio.sleep(0.5)


def _get_all_at_once(urls: list[str]) -> list[tuple[int, bytes]]:
    """GET every URL, each from a thread of its own, all released together."""
    start = threading.Barrier(len(urls))

    def get(url: str) -> tuple[int, bytes]:
        start.wait()
        try:
            with urllib.request.urlopen(url, timeout=60) as reply:
                return reply.status, reply.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    with ThreadPoolExecutor(len(urls)) as pool:
        return list(pool.map(get, urls))
