"""User and delivery state: profile merging and exact JSON round trips."""

from __future__ import annotations

import json

import pytest

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
