"""Every part of a user's state is bounded, and so is the whole, whatever the input.

Each test here fails when its bound is taken out of the code: the largest-state test
builds the biggest state the record paths can build (every string at its longest, made
of characters JSON escapes to six bytes) and checks it encodes under the stated limit.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import orjson
import pytest

from engine.core.attributes import (
    MAX_ATTRIBUTE_ARRAY_ITEMS,
    MAX_ATTRIBUTE_NAME_LENGTH,
    MAX_ATTRIBUTE_STRING_LENGTH,
    MAX_ATTRIBUTES,
)
from engine.core.caps import MAX_CAP_DELIVERIES, FrequencyCap
from engine.core.catalog import Catalog
from engine.core.conversions import MAX_WATCHES, ConversionWatch
from engine.core.counters import MAX_COUNT, MAX_COUNTED_TIMES, CountSpec
from engine.core.engagements import compile_engagement
from engine.core.events import custom_event
from engine.core.matcher import Outcome, evaluate
from engine.core.pending import MAX_PENDING_PER_USER, PendingDelivery
from engine.core.state import MAX_DELIVERY_HISTORY, MAX_USER_STATE_BYTES, UserState
from engine.core.timestamps import MAX_EPOCH_MS
from engine.errors import InvalidRecord

NOW = 1_795_442_400_000  # 2026-11-23T14:00:00Z
# The smallest record a worker may write (Settings.max_record_bytes' minimum), and the
# largest key of a user state: the prefix and a user id of 256 characters of 4 bytes.
MIN_RECORD_BYTES = 65_536
LARGEST_STATE_KEY = 2 + 256 * 4
# A character orjson writes as six bytes (\u0000), the worst there is.
ESCAPED = "\x00"
LONGEST_ENGAGEMENT_ID = "e" * 64  # the schema's id pattern allows 64 characters
LONGEST_VARIANT_ID = "v" * 64


def _name(index: int, length: int) -> str:
    """Return a distinct name of ``length`` characters, all but its index escaped ones."""
    suffix = str(index)
    return ESCAPED * (length - len(suffix)) + suffix


def _largest_value() -> list[object]:
    return [ESCAPED * MAX_ATTRIBUTE_STRING_LENGTH] * MAX_ATTRIBUTE_ARRAY_ITEMS


# --- attributes ---------------------------------------------------------------------------


def test_attributes_keep_the_most_recently_set() -> None:
    user = UserState()
    for index in range(100_000):  # one user, 100,000 distinct attribute names
        user.merge_attributes({f"attr-{index}": index}, NOW + index)
    assert len(user.attributes) == MAX_ATTRIBUTES
    assert set(user.attributes) == {f"attr-{index}" for index in range(100_000 - 128, 100_000)}
    assert user.attributes.keys() == user.attribute_times.keys()


def test_attribute_eviction_is_by_time_then_name() -> None:
    names = [f"n{index:03d}" for index in range(MAX_ATTRIBUTES)]
    user = UserState()
    user.merge_attributes(dict.fromkeys(names, 1), NOW)  # all at one time
    user.merge_attributes({"zzz": 1}, NOW)  # same time, a name sorting after them all
    assert "n000" not in user.attributes  # the smallest (time, name) goes first
    assert "zzz" in user.attributes
    user.merge_attributes({"old": 1}, NOW - 1)  # older than every kept one: not kept
    assert "old" not in user.attributes
    assert len(user.attributes) == MAX_ATTRIBUTES


@pytest.mark.parametrize(
    ("attributes", "mentions"),
    [
        ({"s": "x" * (MAX_ATTRIBUTE_STRING_LENGTH + 1)}, str(MAX_ATTRIBUTE_STRING_LENGTH)),
        ({"a": ["x"] * (MAX_ATTRIBUTE_ARRAY_ITEMS + 1)}, str(MAX_ATTRIBUTE_ARRAY_ITEMS)),
        ({"a": ["x" * (MAX_ATTRIBUTE_STRING_LENGTH + 1)]}, str(MAX_ATTRIBUTE_STRING_LENGTH)),
        ({"n": {"k": [[1] * MAX_ATTRIBUTE_ARRAY_ITEMS]}}, str(MAX_ATTRIBUTE_ARRAY_ITEMS)),
        ({"x" * (MAX_ATTRIBUTE_NAME_LENGTH + 1): 1}, str(MAX_ATTRIBUTE_NAME_LENGTH)),
        ({f"a{index}": 1 for index in range(MAX_ATTRIBUTES + 1)}, str(MAX_ATTRIBUTES)),
    ],
    ids=["string", "array", "array-string", "nested", "name", "count"],
)
def test_the_merge_refuses_values_past_the_bounds_and_changes_nothing(
    attributes: dict[str, object], mentions: str
) -> None:
    user = UserState({"plan": "free"}, {"plan": 1})
    with pytest.raises(InvalidRecord) as raised:
        user.merge_attributes({"plan": "gold", **attributes}, NOW)
    assert raised.value.reason == "invalid_field"
    assert mentions in raised.value.detail
    assert user.attributes == {"plan": "free"}


def test_the_merge_takes_values_at_the_bounds() -> None:
    user = UserState()
    attributes: dict[str, object] = {
        "s": "x" * MAX_ATTRIBUTE_STRING_LENGTH,
        "a": ["x" * MAX_ATTRIBUTE_STRING_LENGTH] * MAX_ATTRIBUTE_ARRAY_ITEMS,
        "y" * MAX_ATTRIBUTE_NAME_LENGTH: 1,
    }
    attributes.update({f"n{index}": index for index in range(MAX_ATTRIBUTES - 3)})
    assert user.merge_attributes(attributes, NOW)
    assert user.attributes == attributes


def test_an_event_with_attributes_past_the_bounds_is_refused_before_matching() -> None:
    catalog = Catalog.build(
        [
            compile_engagement(
                {
                    "id": "hello",
                    "status": "active",
                    "trigger": {"event": "custom", "name": "Open"},
                    "message": {},
                },
                1,
            )
        ]
    )
    fields = {"event_id": "e1", "user_id": "ann", "name": "Open", "timestamp": NOW}
    too_long = {"bio": "x" * (MAX_ATTRIBUTE_STRING_LENGTH + 1)}
    with pytest.raises(InvalidRecord, match="invalid_field"):  # a record's decode refuses it
        custom_event({**fields, "attributes": too_long})
    # and the core refuses it from anywhere else
    event = dataclasses.replace(custom_event(fields), attributes=too_long)
    user = UserState()
    with pytest.raises(InvalidRecord, match="invalid_field"):
        evaluate(event, user, catalog, NOW)
    assert user == UserState()


# --- last deliveries, pending deliveries, counted events, caps -------------------------------


def test_last_deliveries_forget_the_oldest_engagement() -> None:
    user = UserState()
    for index in range(10_000):  # engagements created and deleted over the years
        user.record_delivery(f"campaign-{index}", NOW + index)
    assert len(user.last_delivered) == MAX_DELIVERY_HISTORY
    assert min(user.last_delivered.values()) == NOW + 10_000 - MAX_DELIVERY_HISTORY
    # A late (older) delivery of a new engagement is kept: the oldest other one goes.
    user.record_delivery("late", NOW)
    assert user.last_delivered_at("late") == NOW
    assert "campaign-9744" not in user.last_delivered
    assert len(user.last_delivered) == MAX_DELIVERY_HISTORY


def _delayed(index: int) -> dict[str, Any]:
    return {
        "id": f"later-{index:02d}",
        "status": "active",
        "priority": 100 - index,
        "trigger": {"event": "custom", "name": "Open", "delay_seconds": 3_600},
        "ignore_frequency_caps": True,
        "message": {},
    }


def test_pending_deliveries_per_user_are_bounded() -> None:
    catalog = Catalog.build(compile_engagement(_delayed(index), 1) for index in range(20))
    user = UserState()
    for index in range(20):
        event = custom_event(
            {"event_id": f"e{index}", "user_id": "ann", "name": "Open", "timestamp": NOW + index}
        )
        result = evaluate(event, user, catalog, NOW + index)
        if index >= MAX_PENDING_PER_USER:
            assert not result.scheduled
            assert {e.outcome for e in result.evaluations} == {Outcome.NOT_RE_ELIGIBLE}
    assert len(user.pending) == MAX_PENDING_PER_USER


def test_counted_event_times_are_bounded_over_all_names() -> None:
    specs = {
        f"name-{index}": CountSpec(longest_window_ms=10**12, largest_count=MAX_COUNT)
        for index in range(10)
    }
    user = UserState()
    for step in range(MAX_COUNT + 1):
        for name in specs:
            user.count_event(name, NOW + step, specs)
    assert sum(len(times) for times in user.event_times.values()) == MAX_COUNTED_TIMES
    kept = sorted(at for times in user.event_times.values() for at in times)
    assert kept[0] > NOW  # the oldest went first
    # One name alone keeps what a filter at MAX_COUNT needs.
    alone = UserState()
    for step in range(2 * MAX_COUNT):
        alone.count_event("name-0", NOW + step, specs)
    assert len(alone.event_times["name-0"]) == MAX_COUNT + 1


def test_a_cap_max_past_the_bound_is_refused() -> None:
    assert FrequencyCap(MAX_CAP_DELIVERIES, 60).max == MAX_CAP_DELIVERIES
    with pytest.raises(ValueError, match=str(MAX_CAP_DELIVERIES)):
        FrequencyCap(MAX_CAP_DELIVERIES + 1, 60)


# --- the whole state --------------------------------------------------------------------------


def _fill_largest(user: UserState) -> None:
    """Fill every part of ``user`` to its bound with the longest, most escaped strings."""
    longest_time = MAX_EPOCH_MS  # 15 digits
    user_id = _name(0, 256)
    for index in range(MAX_PENDING_PER_USER):
        user.add_pending(
            PendingDelivery(
                delivery_id=str(uuid.uuid4()),
                engagement_id=LONGEST_ENGAGEMENT_ID[:-2] + f"{index:02d}",
                engagement_version=2**63 - 1,
                user_id=user_id,
                trigger_event_id=_name(index, 256),
                triggered_at_ms=longest_time,
                due_at_ms=longest_time,
                variant=LONGEST_VARIANT_ID,
                timezone="America/Argentina/ComodRivadavia",
            )
        )
    for index in range(MAX_WATCHES):
        user.add_watch(
            ConversionWatch(
                str(uuid.uuid4()),
                LONGEST_ENGAGEMENT_ID[:-2] + f"{index:02d}",
                LONGEST_VARIANT_ID,
                longest_time - 1,
                longest_time,
            )
        )
    for _ in range(2 * MAX_CAP_DELIVERIES):
        user.count_towards_caps(longest_time, MAX_CAP_DELIVERIES)
    for index in range(2 * MAX_DELIVERY_HISTORY):
        user.record_delivery(LONGEST_ENGAGEMENT_ID[:-4] + f"{index:04d}", longest_time - index)
    specs = {
        _name(index, 256): CountSpec(longest_window_ms=10**12, largest_count=MAX_COUNT)
        for index in range(16)
    }
    for step in range(MAX_COUNT + 1):
        for name in specs:
            user.count_event(name, longest_time - step, specs)
    for index in range(2 * MAX_ATTRIBUTES):
        user.merge_attributes(
            {_name(index, MAX_ATTRIBUTE_NAME_LENGTH): _largest_value()}, longest_time - index
        )


def test_the_largest_possible_state_encodes_under_the_stated_limit() -> None:
    assert MAX_USER_STATE_BYTES + LARGEST_STATE_KEY + 2 <= MIN_RECORD_BYTES - 14 * 1024
    user = UserState()
    _fill_largest(user)
    encoded = orjson.dumps(user.to_json_dict())
    assert len(encoded) <= MAX_USER_STATE_BYTES
    assert user.encoded_size() == len(encoded)
    # The parts that are never evicted are all there, at their bounds.
    assert len(user.pending) == MAX_PENDING_PER_USER
    assert len(user.watches) == MAX_WATCHES
    assert len(user.delivery_times) == MAX_CAP_DELIVERIES
    # The state comes back as it was stored.
    assert UserState.from_json_dict(orjson.loads(encoded)) == user


def test_the_parts_never_evicted_fit_with_room_to_spare() -> None:
    """What the size bound cannot evict must leave room under it for the rest."""
    user = UserState()
    _fill_largest(user)
    kept = UserState(
        delivery_times=list(user.delivery_times),
        pending=list(user.pending.values()),
        watches=list(user.watches),
    )
    assert kept.encoded_size() <= MAX_USER_STATE_BYTES * 3 // 4


def test_past_the_size_bound_the_oldest_attributes_go_first() -> None:
    user = UserState()
    for index in range(MAX_ATTRIBUTES):
        user.merge_attributes({_name(index, 256): _largest_value()}, NOW + index)
    assert user.encoded_size() <= MAX_USER_STATE_BYTES
    kept = sorted(user.attribute_times.values())
    assert kept == list(range(NOW + MAX_ATTRIBUTES - len(kept), NOW + MAX_ATTRIBUTES))
    assert 0 < len(kept) < MAX_ATTRIBUTES
    # Evicted down to 7/8 of the bound, so that the next changes have room.
    assert user.encoded_size() <= MAX_USER_STATE_BYTES * 7 // 8


def test_an_ordinary_full_profile_is_not_evicted_by_the_size_bound() -> None:
    """Plain strings at their longest: the count bounds alone keep the state in."""
    user = UserState()
    for index in range(MAX_ATTRIBUTES):
        user.merge_attributes({f"attribute-{index}": "x" * 200}, NOW + index)
    for index in range(MAX_DELIVERY_HISTORY):
        user.record_delivery(f"campaign-{index}", NOW + index)
    assert len(user.attributes) == MAX_ATTRIBUTES
    assert len(user.last_delivered) == MAX_DELIVERY_HISTORY
    assert user.encoded_size() <= MAX_USER_STATE_BYTES
