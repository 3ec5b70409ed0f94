"""Campaign rules end to end on a real broker: variants, priority, caps, delays, local time,
event counts, conversions, element metrics, expiry, test sends and engagement management."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from engine.admin.engagements import EngagementRejected, change_status
from engine.admin.history import read_history
from engine.admin.test_send import request_test_send
from engine.schemas import validator
from tests.integration.conftest import Harness
from tests.integration.test_engine import _custom, _engagement, _id

pytestmark = pytest.mark.integration


async def _deliveries_for(
    harness: Harness, engagement_ids: set[str], events: list[dict[str, Any]], at_least: int = 1
) -> list[dict[str, Any]]:
    tail = await harness.tail("deliveries")
    await harness.send_many("custom-events", events)
    records = await tail.read(at_least=at_least, quiet_seconds=1.0, max_seconds=30)
    await tail.stop()
    return [record for record in records if record["engagement_id"] in engagement_ids]


async def test_variants_and_control_group(harness: Harness) -> None:
    engagement_id = _id("ab")
    event = f"AB {engagement_id}"
    variants = [
        {"id": "A", "weight": 50, "message": {"title": "A"}},
        {"id": "B", "weight": 50, "message": {"title": "B"}},
    ]
    document = _engagement(
        engagement_id, {"event": "custom", "name": event}, variants=variants, control_percent=30
    )
    del document["message"]  # each variant carries its own: apply refuses an unused one
    await harness.apply(document)
    users = [_id("user") for _ in range(60)]
    records = await _deliveries_for(
        harness, {engagement_id}, [_custom(user, event) for user in users]
    )
    control = await harness.outcome(engagement_id, "control")
    assert len(records) + control == len(users)
    assert {record["variant"] for record in records} == {"A", "B"}
    for record in records:
        assert record["message"] == {"title": record["variant"]}


async def test_priority_picks_one_engagement_per_event(harness: Harness) -> None:
    high, low = _id("high"), _id("low")
    event = f"Priority {high}"
    await harness.apply(
        _engagement(high, {"event": "custom", "name": event}, priority=10),
        _engagement(low, {"event": "custom", "name": event}, priority=5),
    )
    records = await _deliveries_for(harness, {high, low}, [_custom(_id("user"), event)])
    assert [record["engagement_id"] for record in records] == [high]
    assert await harness.outcome(low, "lower_priority") == 1


async def test_frequency_cap_stops_a_second_message(harness: Harness) -> None:
    first, second, transactional = _id("first"), _id("second"), _id("receipt")
    await harness.apply(
        {
            **_engagement(first, {"event": "custom", "name": f"Cap1 {first}"}),
            "ignore_frequency_caps": False,
        },
        {
            **_engagement(second, {"event": "custom", "name": f"Cap2 {first}"}),
            "ignore_frequency_caps": False,
        },
        _engagement(transactional, {"event": "custom", "name": f"Cap3 {first}"}),
    )
    user = _id("user")
    events = [
        _custom(user, f"Cap1 {first}"),
        _custom(user, f"Cap2 {first}"),
        _custom(user, f"Cap3 {first}"),
    ]
    records = await _deliveries_for(harness, {first, second, transactional}, events, at_least=2)
    # Default caps: one message per 30 s; the transactional one ignores caps.
    assert sorted(record["engagement_id"] for record in records) == sorted([first, transactional])
    assert await harness.outcome(second, "frequency_capped") == 1


async def test_delay_then_deliver_or_cancel(harness: Harness) -> None:
    engagement_id = _id("delayed")
    event, purchase = f"Cart {engagement_id}", f"Purchase {engagement_id}"
    await harness.apply(
        _engagement(
            engagement_id,
            {
                "event": "custom",
                "name": event,
                "delay_seconds": 2,
                "cancel_on": [{"event": purchase}],
            },
            expires_after_seconds=600,
        )
    )
    patient, buyer = _id("user"), _id("user")
    tail = await harness.tail("deliveries")
    sent_at = time.time()
    await harness.send_many(
        "custom-events",
        [_custom(patient, event), _custom(buyer, event), _custom(buyer, purchase)],
    )
    records = await tail.read(at_least=1, quiet_seconds=1.5, max_seconds=30)
    await tail.stop()
    records = [record for record in records if record["engagement_id"] == engagement_id]
    assert [record["user_id"] for record in records] == [patient]
    delivery = records[0]
    created = datetime.fromisoformat(delivery["created_at"]).timestamp()
    assert created - sent_at >= 1.9
    expires = datetime.fromisoformat(delivery["expires_at"]).timestamp()
    assert expires - created == pytest.approx(600, abs=0.01)
    validator("delivery").check(delivery)
    assert await harness.outcome(engagement_id, "cancelled") == 1


async def test_local_time_hours_follow_the_users_zone(harness: Harness) -> None:
    engagement_id = _id("local")
    event = f"Local {engagement_id}"
    tokyo_now = datetime.now(ZoneInfo("Asia/Tokyo"))
    start = (tokyo_now - timedelta(hours=1)).strftime("%H:%M")
    end = (tokyo_now + timedelta(hours=1)).strftime("%H:%M")
    await harness.apply(
        _engagement(
            engagement_id,
            {"event": "custom", "name": event},
            schedule={
                "start": "2026-01-01T00:00:00",
                "end": "2030-01-01T00:00:00",
                "local_time": True,
                "hours": {"from": start, "to": end},
            },
        )
    )
    in_tokyo, in_new_york = _id("user"), _id("user")
    records = await _deliveries_for(
        harness,
        {engagement_id},
        [
            {**_custom(in_tokyo, event), "attributes": {"timezone": "Asia/Tokyo"}},
            {**_custom(in_new_york, event), "attributes": {"timezone": "America/New_York"}},
        ],
    )
    assert [record["user_id"] for record in records] == [in_tokyo]
    assert await harness.outcome(engagement_id, "outside_schedule") == 1


async def test_event_count_audience_filter(harness: Harness) -> None:
    engagement_id = _id("counted")
    viewed, trigger = f"Viewed {engagement_id}", f"Checkout {engagement_id}"
    await harness.apply(
        _engagement(
            engagement_id,
            {"event": "custom", "name": trigger},
            audience={
                "filters": [{"event": viewed, "op": "gte", "count": 3, "within_seconds": 600}]
            },
        )
    )
    keen, casual = _id("user"), _id("user")
    events = [_custom(keen, viewed) for _ in range(3)] + [_custom(casual, viewed) for _ in range(2)]
    events += [_custom(keen, trigger), _custom(casual, trigger)]
    records = await _deliveries_for(harness, {engagement_id}, events)
    assert [record["user_id"] for record in records] == [keen]


async def test_conversion_after_impression_and_element_metric(harness: Harness) -> None:
    engagement_id = _id("convert")
    event, purchase = f"Promo {engagement_id}", f"Bought {engagement_id}"
    await harness.apply(
        _engagement(
            engagement_id,
            {"event": "custom", "name": event},
            conversion={"event": purchase, "window_seconds": 3600},
            elements=[{"element": "buy_button", "metric": "buy_clicks"}],
        )
    )
    user = _id("user")
    [delivery] = await _deliveries_for(harness, {engagement_id}, [_custom(user, event)])
    conversions = await harness.tail("conversions")
    now = int(time.time() * 1000)
    for kind, element in (("impression", None), ("click", "buy_button")):
        record = {
            "event_id": _id("ia"),
            "user_id": user,
            "delivery_id": delivery["delivery_id"],
            "kind": kind,
            "timestamp": now,
        }
        if element:
            record["element"] = element
        await harness.send("interactions", record)
    await asyncio.sleep(0.5)
    await harness.send_many("custom-events", [_custom(user, purchase), _custom(user, purchase)])
    records = await conversions.read(at_least=1, quiet_seconds=1.0, max_seconds=30)
    await conversions.stop()
    assert len(records) == 1
    conversion = records[0]
    validator("conversion").check(conversion)
    assert conversion["delivery_id"] == delivery["delivery_id"]
    assert conversion["engagement_id"] == engagement_id
    assert conversion["seconds_to_convert"] >= 0
    assert (
        await harness.wait_counter(
            "declic_element_clicks", 1, engagement=engagement_id, metric="buy_clicks"
        )
        == 1
    )


async def test_test_send_ignores_rules_and_counts_apart(harness: Harness) -> None:
    engagement_id = _id("preview")
    event = f"Preview {engagement_id}"
    await harness.apply(
        _engagement(
            engagement_id,
            {"event": "custom", "name": event},
            status="draft",
            audience={"filters": [{"attribute": "plan", "op": "eq", "value": "gold"}]},
        )
    )
    user = _id("user")
    delivery = await request_test_send(harness.settings, engagement_id, user, None, 30)
    assert delivery["test"] is True
    assert delivery["user_id"] == user
    validator("delivery").check(delivery)
    assert (
        await harness.wait_counter("declic_deliveries", 1, engagement=engagement_id, test="true")
        == 1
    )
    assert harness.counter("declic_deliveries", engagement=engagement_id, test="false") == 0

    impressions = await harness.tail("impressions")
    await harness.send(
        "interactions",
        {
            "event_id": _id("ia"),
            "user_id": user,
            "delivery_id": delivery["delivery_id"],
            "kind": "impression",
            "timestamp": int(time.time() * 1000),
        },
    )
    [impression] = await impressions.read(at_least=1, quiet_seconds=0.3)
    await impressions.stop()
    assert impression["test"] is True

    # The test send counted towards nothing: once active, the user still gets the real one.
    await change_status(harness.settings, engagement_id, "resume", int(time.time() * 1000))
    await harness.wait_for_versions({engagement_id: 2})
    records = await _deliveries_for(
        harness, {engagement_id}, [{**_custom(user, event), "attributes": {"plan": "gold"}}]
    )
    assert [record["test"] for record in records] == [False]


async def test_management_history_and_unique_names(harness: Harness) -> None:
    engagement_id, rival = _id("managed"), _id("rival")
    document = _engagement(engagement_id, {"event": "custom", "name": f"M {engagement_id}"})
    await harness.apply(document)
    await harness.apply({**document, "audience": {"filters": [], "percent": 50}})
    now = int(time.time() * 1000)
    await change_status(harness.settings, engagement_id, "pause", now)
    await change_status(harness.settings, engagement_id, "resume", now)
    with pytest.raises(EngagementRejected, match="already used by"):
        await harness.apply(
            {**_engagement(rival, {"event": "session_end"}), "name": document["name"]}
        )
    await change_status(harness.settings, engagement_id, "archive", now)
    await harness.apply({**_engagement(rival, {"event": "session_end"}), "name": document["name"]})

    history = await read_history(harness.settings, engagement_id)
    assert [(change["action"], change["version"]) for change in history] == [
        ("create", 1),
        ("update", 2),
        ("pause", 3),
        ("resume", 4),
        ("archive", 5),
    ]
    for change in history:
        validator("engagement-change").check(change)
        assert change["author"] == "integration-tests"
    assert {"field": "audience.percent", "old": 100, "new": 50} in history[1]["changes"]
    # Created with hash version 2; the update's document does not name one, so it keeps 2.
    assert any(
        change["field"] == "audience" and change["new"]["hash_version"] == 2
        for change in history[0]["changes"]
    )
    assert all(change["field"] != "audience.hash_version" for change in history[1]["changes"])
    assert history[2]["changes"] == [{"field": "status", "old": "active", "new": "paused"}]
