"""The worker's /diagnose cache: one read shared by concurrent requests, off the caller's
thread, kept for a while; reports as `diagnose` builds them; errors as HTTP statuses."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import orjson
import pytest
from aiokafka.errors import KafkaConnectionError

import engine.admin.diagnose as admin_diagnose
from engine.admin.diagnose import Snapshot
from engine.admin.diagnose_cache import DIAGNOSE_CACHE_SECONDS, DiagnoseCache
from engine.core.timestamps import parse_timestamp
from tests.unit.test_diagnose import GOLDEN, _record, _stats

CASE = json.loads((GOLDEN / "percent_lowered_after_launch.json").read_text(encoding="utf-8"))
ENGAGEMENT = CASE["stats"]["engagement_id"]
UNSEEN_SECONDS = 3600


def _snapshot() -> Snapshot:
    return Snapshot(
        stats={ENGAGEMENT: _stats(CASE["stats"])},
        records={ENGAGEMENT: _record(CASE["record"])},
        history=CASE["history"],
        read_at_ms=parse_timestamp(CASE["now"]),
    )


class FakeReader:
    """Counts reads; each takes a while, on whatever thread and loop runs it."""

    def __init__(self, failures: list[BaseException] | None = None) -> None:
        self.reads = 0
        self.threads: set[int] = set()
        self.failures = list(failures or [])

    async def __call__(self) -> Snapshot:
        self.reads += 1
        self.threads.add(threading.get_ident())
        await asyncio.sleep(0.05)  # long enough for every request to arrive meanwhile
        if self.failures:
            raise self.failures.pop(0)
        return _snapshot()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _cache(reader: FakeReader, clock: FakeClock | None = None, **options: Any) -> DiagnoseCache:
    return DiagnoseCache(reader, UNSEEN_SECONDS, clock=clock or FakeClock(), **options)


async def test_concurrent_requests_share_one_read_off_the_loop_thread() -> None:
    reader = FakeReader()
    clock = FakeClock()
    cache = _cache(reader, clock)

    answers = await asyncio.gather(*(cache.answer(ENGAGEMENT, None) for _ in range(20)))

    assert reader.reads == 1
    assert threading.get_ident() not in reader.threads
    assert {status for status, _ in answers} == {200}
    assert len({body for _, body in answers}) == 1

    clock.now += DIAGNOSE_CACHE_SECONDS - 0.1
    await cache.answer(ENGAGEMENT, None)
    await cache.answer("other-engagement", "1700000000000")
    assert reader.reads == 1  # still fresh: the same read serves them

    clock.now += 0.2
    again = await asyncio.gather(*(cache.answer(ENGAGEMENT, None) for _ in range(20)))
    assert reader.reads == 2
    assert {status for status, _ in again} == {200}


async def test_reports_are_those_of_diagnose_per_engagement_and_since(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    snapshot = _snapshot()

    async def stats(_: Any) -> Any:
        return snapshot.stats

    async def catalog(_: Any) -> Any:
        return snapshot.records

    async def history(_: Any, engagement_id: str | None = None) -> Any:
        return [c for c in snapshot.history if c["engagement_id"] == engagement_id]

    monkeypatch.setattr(admin_diagnose, "read_stats", stats)
    monkeypatch.setattr(admin_diagnose, "read_catalog", catalog)
    monkeypatch.setattr(admin_diagnose, "read_history", history)
    settings: Any = type("S", (), {"unseen_delivery_seconds": UNSEEN_SECONDS})()
    reader = FakeReader()
    cache = _cache(reader)
    since = parse_timestamp("2026-11-20T00:00:00Z")  # between the case's two changes
    bodies = set()
    for engagement_id, since_ms in [
        (ENGAGEMENT, None),
        (ENGAGEMENT, since),
        ("no-such-engagement", None),
    ]:
        status, body = await cache.answer(
            engagement_id, None if since_ms is None else str(since_ms)
        )
        expected = await admin_diagnose.diagnose(
            settings, engagement_id, snapshot.read_at_ms, since_ms
        )
        assert status == 200
        assert orjson.loads(body) == json.loads(json.dumps(expected.to_json_dict()))
        bodies.add(body)
    assert len(bodies) == 3
    assert reader.reads == 1


async def test_rfc3339_since_equals_epoch_ms() -> None:
    cache = _cache(FakeReader())
    _, as_ms = await cache.answer(ENGAGEMENT, "1763985600000")
    _, as_text = await cache.answer(ENGAGEMENT, "2025-11-24T12:00:00Z")
    assert orjson.loads(as_ms)["changes_since"] == "2025-11-24T12:00:00.000Z"
    assert as_text == as_ms


@pytest.mark.parametrize("since", ["yesterday", "24h", "-5", "99999999999999999999"])
async def test_a_bad_since_is_400_without_a_read(since: str) -> None:
    reader = FakeReader()
    status, body = await _cache(reader).answer(ENGAGEMENT, since)
    assert status == 400
    assert orjson.loads(body)["error"] == "invalid_since"
    assert since in orjson.loads(body)["detail"]
    assert reader.reads == 0


async def test_kafka_unreachable_is_503_for_every_waiter_and_not_kept() -> None:
    reader = FakeReader([KafkaConnectionError("Unable to bootstrap from [('127.0.0.1', 1)]")])
    cache = _cache(reader, kafka="Kafka at 127.0.0.1:1")

    failed = await asyncio.gather(*(cache.answer(ENGAGEMENT, None) for _ in range(5)))

    assert reader.reads == 1
    for status, body in failed:
        assert status == 503
        error = orjson.loads(body)
        assert error["error"] == "kafka_unavailable"
        assert "Kafka at 127.0.0.1:1" in error["detail"]
        assert "Unable to bootstrap" in error["detail"]
    status, _ = await cache.answer(ENGAGEMENT, None)  # the next request reads again
    assert (status, reader.reads) == (200, 2)


async def test_a_read_that_hangs_is_503_after_the_read_timeout() -> None:
    class Hanging(FakeReader):
        async def __call__(self) -> Snapshot:
            self.reads += 1
            await asyncio.sleep(30)
            raise AssertionError("not reached")

    status, body = await _cache(Hanging(), read_timeout_seconds=0.05).answer(ENGAGEMENT, None)
    assert status == 503
    assert orjson.loads(body)["error"] == "kafka_unavailable"


async def test_an_unexpected_error_is_500_with_a_json_body() -> None:
    status, body = await _cache(FakeReader([RuntimeError("boom")])).answer(ENGAGEMENT, None)
    assert status == 500
    assert orjson.loads(body) == {"error": "diagnose_failed", "detail": "boom"}
