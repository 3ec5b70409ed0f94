"""The whole path on a real broker: events in, deliveries, impressions and dead letters out."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from engine.metrics import STALL_BUCKETS
from engine.schemas import validator
from tests.integration.conftest import Harness

pytestmark = pytest.mark.integration


def _id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _engagement(engagement_id: str, trigger: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """Return an active engagement; frequency caps are off unless a test turns them on."""
    document = {
        "id": engagement_id,
        "name": f"Test {engagement_id}",
        "status": "active",
        "trigger": trigger,
        "message": {"title": f"Hello from {engagement_id}", "body": "..."},
        "ignore_frequency_caps": True,
    }
    document.update(fields)
    return document


def _session_start(user_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": _id("ev"),
        "user_id": user_id,
        "type": "session_start",
        "timestamp": int(time.time() * 1000),
        **fields,
    }


def _custom(user_id: str, name: str, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": _id("ev"),
        "user_id": user_id,
        "name": name,
        "timestamp": int(time.time() * 1000),
        **fields,
    }


async def _settle(harness: Harness, topic: str, count: int) -> None:
    """Wait until the worker has committed `count` more records of a topic."""
    await harness.wait_counter("declic_events_read", count, topic=topic)


async def test_session_start_delivers_to_matching_user_only(harness: Harness) -> None:
    engagement_id = _id("welcome")
    await harness.apply(
        _engagement(
            engagement_id,
            {"event": "session_start"},
            audience={"filters": [{"attribute": "country", "op": "in", "value": ["FR", "BE"]}]},
        )
    )
    deliveries = await harness.tail("deliveries")
    french, german = _id("user-fr"), _id("user-de")
    before = harness.counter("declic_events_read", topic="sessions")
    trigger = _session_start(french, attributes={"country": "FR"})
    await harness.send("sessions", trigger)
    await harness.send("sessions", _session_start(german, attributes={"country": "DE"}))
    await _settle(harness, "sessions", before + 2)

    records = [
        r for r in await deliveries.read(quiet_seconds=0.5) if r["engagement_id"] == engagement_id
    ]
    await deliveries.stop()
    assert [record["user_id"] for record in records] == [french]
    delivery = records[0]
    validator("delivery").check(delivery)
    assert delivery["trigger_event_id"] == trigger["event_id"]
    assert delivery["variant"] == "default"
    assert delivery["engagement_version"] == 1
    assert delivery["test"] is False
    assert delivery["message"] == {"title": f"Hello from {engagement_id}", "body": "..."}
    assert (
        harness.counter("declic_evaluations", engagement=engagement_id, outcome="audience_miss")
        == 1
    )


async def test_filtered_custom_event_and_once_per_user(harness: Harness) -> None:
    engagement_id = _id("favorites")
    await harness.apply(
        _engagement(
            engagement_id,
            {
                "event": "custom",
                "name": "Added to Favorites",
                "where": [{"property": "price", "op": "gte", "value": 100}],
            },
        )
    )
    deliveries = await harness.tail("deliveries")
    user = _id("user")
    before = harness.counter("declic_events_read", topic="custom-events")
    cheap = _custom(user, "Added to Favorites", properties={"price": 20})
    dear = _custom(user, "Added to Favorites", properties={"price": 150})
    again = _custom(user, "Added to Favorites", properties={"price": 300})
    for event in (cheap, dear, again):
        await harness.send("custom-events", event)
    await _settle(harness, "custom-events", before + 3)

    records = [
        r for r in await deliveries.read(quiet_seconds=0.5) if r["engagement_id"] == engagement_id
    ]
    await deliveries.stop()
    assert [record["trigger_event_id"] for record in records] == [dear["event_id"]]
    outcomes = {
        outcome: harness.counter("declic_evaluations", engagement=engagement_id, outcome=outcome)
        for outcome in ("filter_miss", "delivered", "not_re_eligible")
    }
    assert outcomes == {"filter_miss": 1, "delivered": 1, "not_re_eligible": 1}


async def test_event_outside_schedule_triggers_nothing(harness: Harness) -> None:
    engagement_id = _id("ended")
    await harness.apply(
        _engagement(
            engagement_id,
            {"event": "custom", "name": "Opened Cart"},
            schedule={"start": "2025-01-01T00:00:00Z", "end": "2025-02-01T00:00:00Z"},
        )
    )
    deliveries = await harness.tail("deliveries")
    before = harness.counter("declic_events_read", topic="custom-events")
    await harness.send("custom-events", _custom(_id("user"), "Opened Cart"))
    await _settle(harness, "custom-events", before + 1)
    records = [
        r for r in await deliveries.read(quiet_seconds=0.5) if r["engagement_id"] == engagement_id
    ]
    await deliveries.stop()
    assert records == []
    assert (
        harness.counter("declic_evaluations", engagement=engagement_id, outcome="outside_schedule")
        == 1
    )


async def test_interactions_become_impressions_with_first_flag(harness: Harness) -> None:
    engagement_id = _id("promo")
    await harness.apply(_engagement(engagement_id, {"event": "custom", "name": "Viewed Promo"}))
    deliveries = await harness.tail("deliveries")
    impressions = await harness.tail("impressions")
    user = _id("user")
    await harness.send("custom-events", _custom(user, "Viewed Promo"))
    [delivery] = [
        r
        for r in await deliveries.read(at_least=1, quiet_seconds=0.3)
        if r["engagement_id"] == engagement_id
    ]
    await deliveries.stop()

    def interaction(kind: str, **fields: Any) -> dict[str, Any]:
        return {
            "event_id": _id("ia"),
            "user_id": user,
            "delivery_id": delivery["delivery_id"],
            "kind": kind,
            "timestamp": int(time.time() * 1000),
            **fields,
        }

    sent = [
        interaction("impression"),
        interaction("impression"),
        interaction("click", element="buy_button"),
    ]
    for record in sent:
        await harness.send("interactions", record)
    records = await impressions.read(at_least=3, quiet_seconds=0.3)
    await impressions.stop()
    assert [(r["event_id"], r["kind"], r["first"]) for r in records] == [
        (sent[0]["event_id"], "impression", True),
        (sent[1]["event_id"], "impression", False),
        (sent[2]["event_id"], "click", True),
    ]
    for record in records:
        validator("impression").check(record)
    assert {r["delivery_id"] for r in records} == {delivery["delivery_id"]}
    assert {r["engagement_id"] for r in records} == {engagement_id}
    assert records[2]["element"] == "buy_button"
    assert (
        harness.counter(
            "declic_impressions", engagement=engagement_id, variant="default", kind="click"
        )
        == 1
    )


async def test_bad_input_goes_to_dead_letters_and_processing_goes_on(harness: Harness) -> None:
    engagement_id = _id("after-bad")
    await harness.apply(_engagement(engagement_id, {"event": "custom", "name": "After Bad"}))
    letters = await harness.tail("dead-letters")
    deliveries = await harness.tail("deliveries")
    user = _id("user")
    await harness.send("custom-events", b"{not json", key=user)
    await harness.send("custom-events", {"event_id": "x", "user_id": user, "timestamp": 5})
    await harness.send("custom-events", _custom(user, "After Bad"), key="someone-else")
    await harness.send("custom-events", _custom(user, "After Bad", timestamp="yesterday"))
    await harness.send(
        "interactions",
        {
            "event_id": _id("ia"),
            "user_id": user,
            "delivery_id": "no-such-delivery",
            "kind": "impression",
            "timestamp": int(time.time() * 1000),
        },
    )
    good = _custom(user, "After Bad")
    await harness.send("custom-events", good)

    dead = await letters.read(at_least=5, quiet_seconds=0.5)
    await letters.stop()
    reasons = sorted(letter["reason"] for letter in dead)
    # Each way a record is wrong has its own reason: the name is missing, "yesterday" is
    # no timestamp.
    assert reasons == sorted(
        ["invalid_json", "missing_field", "invalid_key", "invalid_timestamp", "unknown_delivery"]
    )
    for letter in dead:
        validator("dead-letter").check(letter)
        assert letter["error"]
        assert letter["source_topic"] in (
            harness.settings.topic("custom-events"),
            harness.settings.topic("interactions"),
        )
    records = [
        r
        for r in await deliveries.read(at_least=1, quiet_seconds=0.3)
        if r["engagement_id"] == engagement_id
    ]
    await deliveries.stop()
    assert [record["trigger_event_id"] for record in records] == [good["event_id"]]
    assert harness.counter("declic_dead_letters", reason="invalid_json") >= 1


async def test_pausing_an_engagement_stops_its_deliveries(harness: Harness) -> None:
    engagement_id = _id("pausable")
    document = _engagement(engagement_id, {"event": "custom", "name": "Pause Check"})
    await harness.apply(document)
    deliveries = await harness.tail("deliveries")
    first_user, second_user = _id("user"), _id("user")
    await harness.send("custom-events", _custom(first_user, "Pause Check"))
    delivered = [
        r
        for r in await deliveries.read(at_least=1, quiet_seconds=0.3)
        if r["engagement_id"] == engagement_id
    ]
    assert [record["user_id"] for record in delivered] == [first_user]

    await harness.apply({**document, "status": "paused"})
    before = harness.counter("declic_events_read", topic="custom-events")
    await harness.send("custom-events", _custom(second_user, "Pause Check"))
    await _settle(harness, "custom-events", before + 1)
    later = [
        r
        for r in await deliveries.read(quiet_seconds=0.5)
        if r["engagement_id"] == engagement_id and r["user_id"] == second_user
    ]
    await deliveries.stop()
    assert later == []
    assert harness.counter("declic_evaluations", engagement=engagement_id, outcome="inactive") == 1


async def test_profile_update_feeds_audience_filters(harness: Harness) -> None:
    engagement_id = _id("premium-only")
    await harness.apply(
        _engagement(
            engagement_id,
            {"event": "custom", "name": "Profile Check"},
            audience={"filters": [{"attribute": "plan", "op": "eq", "value": "premium"}]},
        )
    )
    deliveries = await harness.tail("deliveries")
    user = _id("user")
    now = int(time.time() * 1000)
    before = harness.counter("declic_events_read", topic="profiles")
    await harness.send(
        "profiles", {"user_id": user, "timestamp": now - 5000, "attributes": {"plan": "premium"}}
    )
    await _settle(harness, "profiles", before + 1)
    await harness.send("custom-events", _custom(user, "Profile Check"))
    records = [
        r
        for r in await deliveries.read(at_least=1, quiet_seconds=0.3)
        if r["engagement_id"] == engagement_id
    ]
    await deliveries.stop()
    assert [record["user_id"] for record in records] == [user]


async def test_metrics_endpoint_counts_what_happened(harness: Harness) -> None:
    before = harness.counter("declic_events_read", topic="sessions")
    await harness.send("sessions", _session_start(_id("user")))
    after = await harness.wait_counter("declic_events_read", before + 1, topic="sessions")
    assert after == before + 1
    text = harness.worker.metrics_text()
    for name in (
        "declic_evaluations_total",
        "declic_deliveries_total",
        "declic_event_to_delivery_seconds_bucket",
        "declic_dead_letters_total",
        "declic_assigned_partitions",
    ):
        assert name in text


async def test_only_state_changes_reach_the_changelog(harness: Harness) -> None:
    """Events that change nothing write no state; a delivery writes the user's state."""
    engagement_id = _id("changelog")
    await harness.apply(_engagement(engagement_id, {"event": "custom", "name": "Changelog Check"}))
    start = await harness.changelog_end_offsets()
    before = harness.counter("declic_events_read", topic="sessions")
    for _ in range(50):  # session starts that match no engagement's audience
        await harness.send("sessions", _session_start(_id("user")))
    await _settle(harness, "sessions", before + 50)
    # Only the periodic engagement figures (keys "s:") may have been written meanwhile.
    written = await harness.changelog_keys_since(start)
    assert {key[:2] for key in written} <= {b"s:"}

    start = await harness.changelog_end_offsets()
    deliveries = await harness.tail("deliveries")
    user = _id("user")
    await harness.send("custom-events", _custom(user, "Changelog Check"))
    [delivery] = [
        r
        for r in await deliveries.read(at_least=1, quiet_seconds=0.3)
        if r["engagement_id"] == engagement_id
    ]
    await deliveries.stop()
    written = await harness.changelog_keys_since(start)
    assert f"u:{user}".encode() in written
    assert f"d:{delivery['delivery_id']}".encode() in written


def test_worker_exports_its_loop_stalls(harness: Harness) -> None:
    samples = {
        (sample.name, sample.labels.get("le"))
        for family in text_string_to_metric_families(harness.worker.metrics_text())
        for sample in family.samples
        if sample.name.startswith("declic_loop_stall")
    }
    buckets = {le for name, le in samples if name == "declic_loop_stall_seconds_bucket"}
    assert buckets == {str(float(le)) for le in STALL_BUCKETS} | {"+Inf"}
    assert ("declic_loop_stall_max_seconds", None) in samples
