"""`declic users show` and `declic users forget` on a real broker, with the shared worker.

The commands run as `python -m engine.cli` children configured by DECLIC_* variables, as
an operator runs them. Compaction is not waited for: what it acts on is asserted, that
the latest record of every key the user ever had on the state changelog is a tombstone
(compaction keeps only the latest record per key, and drops tombstones after
delete.retention.ms).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from engine.admin.users import forget_user, user_partition
from engine.errors import DeclicError
from engine.schemas import validator
from engine.settings import Settings
from engine.stream.tail import read_to_end
from engine.stream.topics import ensure_topics, partitions_of
from engine.worker_process import SECURITY, settings_environment
from tests.integration.conftest import Harness

pytestmark = pytest.mark.integration

PASSED = (*SECURITY, "kafka_bootstrap", "topic_prefix", "app_id")


def _id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _now() -> int:
    return int(time.time() * 1000)


async def declic(settings: Settings, *argv: str) -> str:
    """Run a `declic` command; return its output, failing on a non-zero exit status."""
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "engine.cli", *argv],
        env=settings_environment(settings, PASSED),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"{argv}: exit {result.returncode}\n{result.stderr}"
    return result.stdout


async def show(settings: Settings, user: str) -> dict[str, Any]:
    return dict(orjson.loads(await declic(settings, "users", "show", user, "--json")))


async def _deliveries_to(harness: Harness, tail: Any, user: str, count: int) -> list[Any]:
    deadline = time.monotonic() + 30
    mine: list[Any] = []
    while time.monotonic() < deadline:
        records = await tail.read(quiet_seconds=0, max_seconds=0.5)
        mine = [record for record in records if record["user_id"] == user]
        if len(mine) >= count:
            return mine
    raise AssertionError(f"{len(mine)} deliveries to {user}, expected {count}")


async def _until_shown(settings: Settings, user: str, seen: str) -> dict[str, Any]:
    """Show the user until their delivery has an interaction of kind ``seen`` committed."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        view = await show(settings, user)
        if any(seen in d["interactions_seen"] for d in view["deliveries"]):
            return view
        await asyncio.sleep(0.2)
    raise AssertionError(f"the {seen} of {user} was never committed: {view}")


async def test_show_then_forget_then_the_user_is_new(harness: Harness, settings: Settings) -> None:
    engagement_id = _id("forget-me")
    await harness.apply(
        {
            "id": engagement_id,
            "name": "Once per user, to France",
            "status": "active",
            "trigger": {"event": "session_start"},
            "audience": {"filters": [{"attribute": "country", "op": "eq", "value": "FR"}]},
            "message": {"title": "Bienvenue"},
            "ignore_frequency_caps": True,
        }
    )
    user = _id("user-erased")
    deliveries = await harness.tail("deliveries")
    await harness.send(
        "profiles", {"user_id": user, "attributes": {"country": "FR"}, "timestamp": _now()}
    )
    first = {"event_id": _id("ev"), "user_id": user, "type": "session_start"}
    await harness.send("sessions", {**first, "timestamp": _now()})
    [delivery] = await _deliveries_to(harness, deliveries, user, 1)
    impression = {
        "event_id": _id("imp"),
        "user_id": user,
        "delivery_id": delivery["delivery_id"],
        "kind": "impression",
        "timestamp": _now(),
    }
    await harness.send("interactions", impression)

    # What Declic holds: the profile, the last delivery, the delivery with its impression.
    held = await _until_shown(settings, user, "impression")
    assert held["user_id"] == user
    assert held["state"]["profile"]["country"]["value"] == "FR"
    assert list(held["state"]["last_delivered"]) == [engagement_id]
    assert [(d["delivery_id"], d["engagement_id"]) for d in held["deliveries"]] == [
        (delivery["delivery_id"], engagement_id)
    ]
    text = await declic(settings, "users", "show", user)
    assert 'country = "FR"' in text and delivery["delivery_id"] in text

    changelog = settings.internal_topic("state-changelog")
    forgotten = orjson.loads(
        await declic(settings, "users", "forget", user, "--author", "alice", "--json")
    )
    assert forgotten["removed"] == {"user_state": 1, "deliveries": 1, "pending_deliveries": 0}
    assert (forgotten["author"], forgotten["action"]) == ("alice", "forget")

    # The audit topic: one record of the request, with no user id in clear anywhere.
    audit = [
        record
        for record in await read_to_end(settings, settings.topic("user-audit"))
        if orjson.loads(record.value)["request_id"] == forgotten["request_id"]
    ]
    assert len(audit) == 1
    assert user.encode() not in audit[0].value and user.encode() not in (audit[0].key or b"")
    validator("user-audit").check(orjson.loads(audit[0].value))
    assert orjson.loads(audit[0].value) == forgotten

    # The changelog: the latest record of each of the user's keys is a tombstone.
    partition = user_partition(user, await partitions_of(settings, changelog))
    assert forgotten["partition"] == partition
    latest: dict[bytes, bytes | None] = {}
    for record in await read_to_end(settings, changelog, {partition: 0}):
        latest[record.key] = record.value
    user_keys = {b"u:" + user.encode(), b"d:" + delivery["delivery_id"].encode()}
    assert user_keys <= latest.keys()
    assert {key: latest[key] for key in user_keys} == dict.fromkeys(user_keys)

    after = await show(settings, user)
    assert (after["partition"], after["state"], after["deliveries"]) == (partition, None, [])
    assert after["pending_deliveries"] == []
    assert "holds nothing about user" in await declic(settings, "users", "show", user)

    # The next events are a new user's: no profile (the audience misses), no history (a
    # once-per-user engagement delivers again once the profile is back).
    await harness.send("sessions", {**first, "event_id": _id("ev"), "timestamp": _now()})
    await harness.outcome(engagement_id, "audience_miss")
    again = {"event_id": _id("ev"), "user_id": user, "type": "session_start"}
    await harness.send("sessions", {**again, "timestamp": _now(), "attributes": {"country": "FR"}})
    second = (await _deliveries_to(harness, deliveries, user, 2))[1]
    await deliveries.stop()
    assert second["trigger_event_id"] == again["event_id"]
    assert second["delivery_id"] != delivery["delivery_id"]


async def test_forget_without_a_worker_says_so(settings: Settings) -> None:
    # Topics of their own, which no worker reads.
    alone = settings.model_copy(update={"topic_prefix": f"{settings.topic_prefix}alone-"})
    await ensure_topics(alone)
    with pytest.raises(DeclicError, match="no worker carried out request forget-") as raised:
        await forget_user(alone, "user-1", wait_seconds=1)
    assert "is a `declic worker` running" in str(raised.value)


async def test_forget_waits_for_the_users_older_events_and_sends_nothing_before(
    settings: Settings,
) -> None:
    # A profile update of the user, sent before the forget, that no worker has processed
    # yet (no worker reads these topics). Carried out first, the forget would be undone
    # by it: the user's profile would be back once the worker reached it.
    alone = settings.model_copy(update={"topic_prefix": f"{settings.topic_prefix}late-"})
    await ensure_topics(alone)
    user = _id("user-late")
    update = {"user_id": user, "attributes": {"country": "FR"}, "timestamp": _now()}
    producer = AIOKafkaProducer(**alone.kafka_producer_options())
    await producer.start()
    try:
        await producer.send_and_wait(
            alone.topic("profiles"), orjson.dumps(update), key=user.encode()
        )
    finally:
        await producer.stop()
    with pytest.raises(DeclicError, match="not processed yet") as raised:
        await forget_user(alone, user, wait_seconds=1)
    partition = user_partition(user, await partitions_of(alone, alone.topic("profiles")))
    assert f"1 record(s) of partition {partition}" in str(raised.value)
    assert "Nothing was requested" in str(raised.value)
    assert await read_to_end(alone, alone.topic("user-requests")) == []
