"""The delivery gateway on a real broker, with a real worker: `declic gateway` as a child
process, read as an app would (HTTP and SSE with aiohttp's client).

Every wait is for a condition, with a deadline: a record on a topic, an event on a
stream, a status on /health.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from engine.bench.browser import GatewayProcess
from engine.core.timestamps import parse_timestamp
from engine.gateway.tokens import sign_token
from engine.stream.tail import TopicTail
from tests.integration.conftest import Harness

pytestmark = pytest.mark.integration

DEADLINE_SECONDS = 45.0


def _id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class SseReader:
    """One SSE connection, its events collected as they arrive."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.events: list[dict[str, Any]] = []
        self.ended = asyncio.Event()
        self._arrived = asyncio.Event()
        self._task = asyncio.create_task(self._collect())

    async def _collect(self) -> None:
        fields: dict[str, str] = {}
        try:
            async for raw in self.response.content:
                line = raw.decode().rstrip("\n")
                if line.startswith(":"):
                    continue
                if line == "":
                    if "data" in fields:
                        self.events.append({**fields, "data": orjson.loads(fields["data"])})
                        self._arrived.set()
                    fields = {}
                    continue
                name, _, value = line.partition(": ")
                fields[name] = value
        except (aiohttp.ClientError, asyncio.CancelledError):
            pass
        finally:
            self.ended.set()
            self._arrived.set()

    async def wait_for(self, count: int) -> list[dict[str, Any]]:
        """Wait until `count` events arrived in all; return them."""
        deadline = time.monotonic() + DEADLINE_SECONDS
        while len(self.events) < count:
            left = deadline - time.monotonic()
            assert left > 0 and not self.ended.is_set(), (
                f"{len(self.events)} of {count} events arrived: {self.events}"
            )
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), left)
        return self.events

    async def close(self) -> None:
        self.response.close()
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


async def _records(
    tail: TopicTail, found: Callable[[list[dict[str, Any]]], bool]
) -> list[dict[str, Any]]:
    """Read a topic until `found(records read so far)`; return the records."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not found(tail.records):
        assert time.monotonic() < deadline, f"not found among {len(tail.records)} records"
        await tail.read(quiet_seconds=0, max_seconds=1)
    return tail.records


def _engagement(engagement_id: str, trigger: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": engagement_id,
        "name": f"Gateway {engagement_id}",
        "status": "active",
        "trigger": {"event": "custom", "name": trigger},
        "message": {"title": f"Hello from {engagement_id}", "body": "..."},
        "ignore_frequency_caps": True,
        **fields,
    }


class Events:
    """Custom events for one engagement, 2 s apart in event time (its re-eligibility is 1 s)."""

    def __init__(self, harness: Harness, name: str) -> None:
        self.harness = harness
        self.name = name
        self.base_ms = int(time.time() * 1000)
        self.sent = 0

    async def send(self, user_id: str) -> str:
        """Publish one event for a user; return its event_id."""
        event_id = _id("ev")
        timestamp = self.base_ms + 2000 * self.sent
        self.sent += 1
        await self.harness.send(
            "custom-events",
            {"event_id": event_id, "user_id": user_id, "name": self.name, "timestamp": timestamp},
        )
        return event_id


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as client:
        yield client


async def test_gateway_end_to_end(
    harness: Harness, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    main_id, expiring_id = _id("gw-main"), _id("gw-expiring")
    main_trigger, expiring_trigger = _id("GW main"), _id("GW expiring")
    await harness.apply(
        _engagement(main_id, main_trigger, reeligibility={"after_seconds": 1}),
        _engagement(expiring_id, expiring_trigger, expires_after_seconds=1),
    )
    events = Events(harness, main_trigger)
    secret = secrets.token_hex(32)
    user_a, user_b, user_c = _id("user-a"), _id("user-b"), _id("user-c")
    token_a, token_c = sign_token(secret, user_a), sign_token(secret, user_c)
    bearer_a = {"Authorization": f"Bearer {token_a}"}
    bearer_c = {"Authorization": f"Bearer {token_c}"}
    deliveries = await harness.tail("deliveries")
    impressions = await harness.tail("impressions")
    # Every line a gateway can log, access lines included: none may hold a token.
    gateway = GatewayProcess(
        harness.settings,
        tmp_path / "gateway.log",
        secret,
        demo=False,
        variables={"DECLIC_LOG_LEVEL": "DEBUG"},
    )
    gateway.start()
    stream: SseReader | None = None
    try:
        await asyncio.to_thread(gateway.wait_ready, DEADLINE_SECONDS)
        stream_url = f"{gateway.base_url}/v1/users/{user_a}/stream"
        response = await session.get(stream_url, params={"token": token_a})
        assert response.status == 200
        stream = SseReader(response)

        # An event for A: its delivery on A's stream, and in /messages.
        trigger = await events.send(user_a)
        [pushed] = await stream.wait_for(1)
        [delivered] = await _records(
            deliveries, lambda rs: any(r["trigger_event_id"] == trigger for r in rs)
        )
        assert pushed["event"] == "delivery"
        assert pushed["data"] == {**delivered, "event_id": pushed["id"]}
        async with session.get(
            f"{gateway.base_url}/v1/users/{user_a}/messages", headers=bearer_a
        ) as r:
            listed = await r.json()
        assert listed == {
            "user_id": user_a,
            "messages": [pushed["data"]],
            "last_event_id": pushed["id"],
        }

        # Its impression: published, joined by the worker once (first: true), not offered.
        delivery_id = delivered["delivery_id"]
        for kind in ("impression", "click"):
            async with session.post(
                f"{gateway.base_url}/v1/interactions",
                json={"delivery_id": delivery_id, "kind": kind, "element": None},
                headers=bearer_a,
            ) as r:
                assert r.status == 202, await r.text()
            if kind == "impression":
                async with session.get(
                    f"{gateway.base_url}/v1/users/{user_a}/messages", headers=bearer_a
                ) as r:
                    assert (await r.json())["messages"] == []
        joined = await _records(
            impressions,
            lambda rs: any(r["delivery_id"] == delivery_id and r["kind"] == "click" for r in rs),
        )
        seen = [r for r in joined if r["delivery_id"] == delivery_id and r["kind"] == "impression"]
        assert len(seen) == 1 and seen[0]["first"] is True and seen[0]["user_id"] == user_a

        # A's token on B's paths.
        for path in ("messages", "stream"):
            async with session.get(
                f"{gateway.base_url}/v1/users/{user_b}/{path}", headers=bearer_a
            ) as r:
                assert r.status == 403
                assert (await r.json())["error"] == "forbidden"

        # The gateway restarts; two deliveries are committed meanwhile.
        last_seen = stream.events[-1]["id"]
        assert gateway.stop() == 0
        await asyncio.wait_for(stream.ended.wait(), DEADLINE_SECONDS)
        await stream.close()
        missed = [await events.send(user_a) for _ in range(2)]
        await _records(deliveries, lambda rs: set(missed) <= {r["trigger_event_id"] for r in rs})
        gateway.start()
        await asyncio.to_thread(gateway.wait_ready, DEADLINE_SECONDS)
        response = await session.get(
            stream_url, params={"token": token_a}, headers={"Last-Event-ID": last_seen}
        )
        assert response.status == 200
        stream = SseReader(response)
        replayed = await stream.wait_for(2)
        assert [e["data"]["trigger_event_id"] for e in replayed] == missed
        live = await events.send(user_a)
        after = await stream.wait_for(3)
        assert after[2]["data"]["trigger_event_id"] == live
        ids = [last_seen, *(e["id"] for e in after)]
        assert len(set(ids)) == len(ids)

        # An expired delivery is never offered: not listed, not replayed.
        events_c = Events(harness, main_trigger)
        first_c = await events_c.send(user_c)
        expiring = await Events(harness, expiring_trigger).send(user_c)
        records = await _records(
            deliveries,
            lambda rs: {first_c, expiring} <= {r["trigger_event_id"] for r in rs},
        )
        [expired] = [r for r in records if r["trigger_event_id"] == expiring]
        expires_ms = parse_timestamp(expired["expires_at"])
        deadline = time.monotonic() + DEADLINE_SECONDS
        while time.time() * 1000 <= expires_ms:  # the delivery's own expiry, one second
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        async with session.get(
            f"{gateway.base_url}/v1/users/{user_c}/messages", headers=bearer_c
        ) as r:
            body = await r.json()
        assert [m["trigger_event_id"] for m in body["messages"]] == [first_c]
        [first_c_record] = body["messages"]
        response = await session.get(
            f"{gateway.base_url}/v1/users/{user_c}/stream",
            params={"token": token_c, "last_event_id": first_c_record["event_id"]},
        )
        stream_c = SseReader(response)
        marker = await events_c.send(user_c)
        [only] = await stream_c.wait_for(1)
        assert only["data"]["trigger_event_id"] == marker
        await stream_c.close()

        async with session.get(f"{gateway.base_url}/metrics") as r:
            metrics = await r.text()
        assert "declic_gateway_messages_pushed_total" in metrics
    finally:
        if stream is not None:
            await stream.close()
        gateway.stop()
        await deliveries.stop()
        await impressions.stop()
    log = (tmp_path / "gateway.log").read_text(errors="replace")
    assert "declic gateway listening" in log and "declic gateway stopped" in log
    for token in (token_a, token_c):
        assert token not in log
    assert secret not in log
