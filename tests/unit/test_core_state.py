"""User and delivery state: profile merging and exact JSON round trips."""

from __future__ import annotations

import json

import pytest

from engine.core.catalog import Catalog
from engine.core.conversions import MAX_WATCHES, ConversionWatch
from engine.core.counters import CountSpec
from engine.core.engagements import compile_engagement
from engine.core.events import custom_event
from engine.core.matcher import MatchPolicy, evaluate
from engine.core.pending import PendingDelivery
from engine.core.state import DeliveryState, UserState
from engine.errors import InvalidRecord


def test_new_user_is_empty_json() -> None:
    assert UserState().to_json_dict() == {}
    assert UserState.from_json_dict({}) == UserState()


def test_merge_newest_wins_per_attribute() -> None:
    user = UserState()
    assert user.merge_attributes({"country": "FR", "plan": "free"}, 1_000)
    assert user.merge_attributes({"country": "BE"}, 3_000)
    # Older than country's time but newer than plan's: only plan changes.
    assert user.merge_attributes({"country": "US", "plan": "pro"}, 2_000)
    assert user.attributes == {"country": "BE", "plan": "pro"}
    assert user.attribute_times == {"country": 3_000, "plan": 2_000}


def test_merge_older_only_changes_nothing() -> None:
    user = UserState({"country": "FR"}, {"country": 5_000})
    assert not user.merge_attributes({"country": "US"}, 4_999)
    assert user.attributes == {"country": "FR"}


def test_merge_equal_timestamp_incoming_wins() -> None:
    user = UserState({"country": "FR"}, {"country": 5_000})
    assert user.merge_attributes({"country": "US"}, 5_000)
    assert user.attributes == {"country": "US"}


def test_merge_same_value_and_time_is_no_change() -> None:
    user = UserState({"country": "FR"}, {"country": 5_000})
    assert not user.merge_attributes({"country": "FR"}, 5_000)
    assert not user.merge_attributes({}, 9_000)


def test_merge_newer_time_same_value_is_a_change() -> None:
    # The newer time must be stored, or a late older value could overwrite it.
    user = UserState({"country": "FR"}, {"country": 5_000})
    assert user.merge_attributes({"country": "FR"}, 6_000)
    assert not user.merge_attributes({"country": "US"}, 5_500)
    assert user.attributes == {"country": "FR"}


def test_merge_detects_type_change_between_equal_python_values() -> None:
    user = UserState({"vip": 1}, {"vip": 5_000})
    assert user.merge_attributes({"vip": True}, 5_000)
    assert user.attributes["vip"] is True


def test_null_clears_and_outranks_older_values() -> None:
    user = UserState({"email": "a@example.com"}, {"email": 1_000})
    assert user.merge_attributes({"email": None}, 2_000)
    assert not user.merge_attributes({"email": "old@example.com"}, 1_500)
    assert user.attributes == {"email": None}


def test_record_delivery_never_moves_backwards() -> None:
    user = UserState()
    user.record_delivery("spring-sale", 2_000)
    user.record_delivery("spring-sale", 1_000)
    assert user.last_delivered_at("spring-sale") == 2_000
    user.record_delivery("spring-sale", 3_000)
    assert user.last_delivered == {"spring-sale": 3_000}
    assert user.last_delivered_at("other") is None


def test_user_state_json_round_trip() -> None:
    user = UserState()
    user.merge_attributes({"country": "FR", "age": 34, "tags": ["a", "b"], "x": None}, 1_000)
    user.merge_attributes({"score": 1.5, "nested": {"k": [1, {"z": True}]}}, 2_000)
    user.record_delivery("spring-sale", 1_234)
    stored = json.dumps(user.to_json_dict(), separators=(",", ":"))
    restored = UserState.from_json_dict(json.loads(stored))
    assert restored == user
    assert restored.to_json_dict() == user.to_json_dict()
    assert set(user.to_json_dict()) == {"a", "t", "d"}


def test_to_json_dict_does_not_expose_internals() -> None:
    user = UserState({"country": "FR"}, {"country": 1})
    data = user.to_json_dict()
    data["a"]["country"] = "US"  # type: ignore[index]
    assert user.attributes == {"country": "FR"}


@pytest.mark.parametrize(
    "data",
    [
        [],
        {"a": []},
        {"a": {"country": "FR"}},  # attribute without a time
        {"a": {"country": "FR"}, "t": {"country": "yesterday"}},
        {"d": {"spring-sale": True}},
    ],
)
def test_user_state_rejects_corrupt_json(data: object) -> None:
    with pytest.raises(InvalidRecord) as raised:
        UserState.from_json_dict(data)
    assert raised.value.reason == "invalid_state"


def _delivery() -> DeliveryState:
    return DeliveryState(
        delivery_id="d-1",
        engagement_id="spring-sale",
        engagement_version=3,
        variant="default",
        user_id="user-42",
        created_at_ms=1_795_442_400_000,
    )


def test_delivery_state_json_round_trip() -> None:
    delivery = _delivery()
    delivery.first_event_ids["impression"] = "int-1"
    delivery.first_event_ids["click"] = "int-2"
    restored = DeliveryState.from_json_dict(json.loads(json.dumps(delivery.to_json_dict())))
    assert restored == delivery
    assert restored.kinds_seen == {"impression", "click"}
    assert restored.counted_event_ids == {"int-1", "int-2"}
    assert restored.engagement_version == 3
    assert restored.created_at_ms == 1_795_442_400_000


@pytest.mark.parametrize(
    "data",
    [
        None,
        {"id": "d-1"},
        {"id": "d-1", "e": "x", "v": "3", "var": "default", "u": "u", "c": 1, "k": {}},
        {"id": "d-1", "e": "x", "v": True, "var": "default", "u": "u", "c": 1, "k": {}},
        {"id": "d-1", "e": "x", "v": 3, "var": "default", "u": "u", "c": 1, "k": {"click": 5}},
    ],
)
def test_delivery_state_rejects_corrupt_json(data: object) -> None:
    with pytest.raises(InvalidRecord) as raised:
        DeliveryState.from_json_dict(data)
    assert raised.value.reason == "invalid_state"


def _full_user() -> UserState:
    user = UserState()
    user.merge_attributes({"country": "FR"}, 1_000)
    user.record_delivery("spring-sale", 1_234)
    user.count_towards_caps(1_234, limit=3)
    user.count_towards_caps(900, limit=3)
    user.count_event("Viewed", 1_100, {"Viewed": CountSpec(60_000, 3)})
    user.add_pending(
        PendingDelivery(
            delivery_id="d-2",
            engagement_id="cart",
            engagement_version=1,
            user_id="user-42",
            trigger_event_id="evt-9",
            triggered_at_ms=1_000,
            due_at_ms=301_000,
            variant="control",
            timezone="Europe/Paris",
        )
    )
    user.add_watch(ConversionWatch("d-1", "spring-sale", "A", 2_000, 3_602_000))
    user.add_watch(ConversionWatch(None, "trial", "control", 2_500, 3_602_500))
    return user


def test_user_state_json_round_trip_with_history() -> None:
    user = _full_user()
    data = user.to_json_dict()
    assert set(data) == {"a", "t", "d", "f", "n", "p", "w"}
    assert data["f"] == [900, 1_234]
    assert data["n"] == {"Viewed": [1_100]}
    restored = UserState.from_json_dict(json.loads(json.dumps(data, separators=(",", ":"))))
    assert restored == user
    assert restored.to_json_dict() == data
    assert restored.pending["cart"].timezone == "Europe/Paris"
    assert [watch.variant for watch in restored.watches] == ["A", "control"]


def test_take_pending_needs_the_same_delivery() -> None:
    user = _full_user()
    assert user.take_pending("cart", "another") is None
    assert user.take_pending("cart", "d-2") is not None
    assert user.take_pending("cart", "d-2") is None
    assert "p" not in user.to_json_dict()


@pytest.mark.parametrize(
    "data",
    [
        {"f": {"x": 1}},
        {"f": [1, "2"]},
        {"n": {"Viewed": []}},
        {"n": {"Viewed": [True]}},
        {"n": []},
        {"p": [{"engagement_id": "cart"}]},
        {"p": {}},
        {"w": [{"d": None, "e": "x", "v": "A", "s": 1}]},
    ],
)
def test_user_state_rejects_corrupt_history(data: object) -> None:
    with pytest.raises(InvalidRecord) as raised:
        UserState.from_json_dict(data)
    assert raised.value.reason == "invalid_state"


def test_delivery_state_test_flag_and_metrics_round_trip() -> None:
    delivery = _delivery()
    assert set(delivery.to_json_dict()) == {"id", "e", "v", "var", "u", "c", "k"}  # as before
    delivery.test = True
    delivery.metric_event_ids["buy_clicks"] = "int-3"
    data = json.loads(json.dumps(delivery.to_json_dict()))
    assert data["t"] is True and data["m"] == {"buy_clicks": "int-3"}
    assert DeliveryState.from_json_dict(data) == delivery
    with pytest.raises(InvalidRecord):
        DeliveryState.from_json_dict(data | {"t": "yes"})


def _bounded_catalog() -> Catalog:
    documents: list[dict[str, object]] = [
        {
            "id": "viewer",
            "status": "active",
            "priority": 1,
            "trigger": {"event": "custom", "name": "Viewed"},
            "audience": {
                "filters": [{"event": "Viewed", "op": "gte", "count": 5, "within_seconds": 3_600}]
            },
            "reeligibility": {"after_seconds": 1},
            "conversion": {"event": "purchase", "window_seconds": 86_400},
        },
        {
            "id": "held-out",
            "status": "active",
            "trigger": {"event": "custom", "name": "Viewed"},
            "control_percent": 100,
            "ignore_frequency_caps": True,  # wins whenever viewer is capped
            "reeligibility": {"after_seconds": 1},
            "conversion": {"event": "purchase", "window_seconds": 86_400},
        },
    ]
    return Catalog.build(compile_engagement(document, 1) for document in documents)


def test_state_stays_bounded_under_many_events() -> None:
    catalog = _bounded_catalog()
    user = UserState()
    start = 1_795_442_400_000
    for index in range(5_000):
        timestamp = start + index * 40_000  # 40 s apart: each can pass the 30 s cap
        event = custom_event(
            {"event_id": f"evt-{index}", "user_id": "u", "name": "Viewed", "timestamp": timestamp}
        )
        evaluate(event, user, catalog, timestamp)
    data = user.to_json_dict()
    assert len(user.event_times["Viewed"]) == 6  # largest count 5, plus one
    assert len(user.delivery_times) == MatchPolicy().cap_history == 3
    assert len(user.watches) == MAX_WATCHES
    assert set(user.last_delivered) == {"viewer", "held-out"}
    assert len(json.dumps(data)) < 5_000
