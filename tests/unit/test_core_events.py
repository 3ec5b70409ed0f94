"""Input records to typed events, and their rejection reasons."""

from __future__ import annotations

from typing import Any

import pytest

from engine.core.events import (
    custom_event,
    custom_trigger_key,
    interaction,
    profile_update,
    session_event,
)
from engine.errors import InvalidRecord

SESSION: dict[str, Any] = {
    "event_id": "evt-1",
    "user_id": "user-42",
    "type": "session_start",
    "timestamp": "2026-11-23T10:00:00Z",
    "session_id": "s-1",
    "device": {"platform": "ios", "app_version": "5.2.0", "locale": "fr-FR", "timezone": "UTC"},
    "attributes": {"country": "FR"},
}
CUSTOM: dict[str, Any] = {
    "event_id": "evt-2",
    "user_id": "user-42",
    "name": "Added to Favorites",
    "timestamp": 1_795_428_000_000,
    "properties": {"price": 120},
}


def test_session_event() -> None:
    event = session_event(SESSION)
    assert event.trigger_key == "session_start"
    assert event.event_name == "session_start"
    assert event.timestamp_ms == 1_795_428_000_000
    assert event.properties == SESSION["device"]
    assert event.device == SESSION["device"]
    assert event.attributes == {"country": "FR"}


def test_custom_event() -> None:
    event = custom_event(CUSTOM)
    assert event.trigger_key == custom_trigger_key("Added to Favorites")
    assert event.event_name == "Added to Favorites"
    assert event.properties == {"price": 120}
    assert event.attributes == {}
    assert event.device is None


def test_optional_fields_may_be_absent_but_not_null() -> None:
    event = custom_event({k: v for k, v in CUSTOM.items() if k != "properties"})
    assert event.properties == {} and event.attributes == {}
    with pytest.raises(InvalidRecord) as raised:
        custom_event({**CUSTOM, "properties": None})  # the schema wants an object
    assert raised.value.reason == "invalid_field"
    bare = {k: v for k, v in SESSION.items() if k not in ("device", "attributes")}
    assert session_event(bare).properties == {}


@pytest.mark.parametrize(
    ("build", "record", "reason"),
    [
        (session_event, "not a record", "invalid_field"),
        (session_event, {**SESSION, "type": "session_pause"}, "invalid_field"),
        (session_event, {**SESSION, "user_id": None}, "invalid_field"),
        (session_event, {k: v for k, v in SESSION.items() if k != "user_id"}, "missing_field"),
        (session_event, {**SESSION, "colour": "blue"}, "unknown_field"),
        (session_event, {**SESSION, "device": {"model": "x"}}, "unknown_field"),
        (session_event, {**SESSION, "user_id": 42}, "invalid_field"),
        (session_event, {**SESSION, "event_id": ""}, "invalid_field"),
        (session_event, {**SESSION, "device": "iphone"}, "invalid_field"),
        (session_event, {**SESSION, "timestamp": None}, "invalid_timestamp"),
        (session_event, {**SESSION, "timestamp": "2026-11-23t10:00:00z"}, "invalid_timestamp"),
        (session_event, {**SESSION, "timestamp": "2026-11-23T10:59:60Z"}, "invalid_timestamp"),
        (session_event, {**SESSION, "timestamp": "2026-11-23T10:00:00"}, "invalid_timestamp"),
        (custom_event, {**CUSTOM, "name": ""}, "invalid_field"),
        (custom_event, {**CUSTOM, "properties": [1, 2]}, "invalid_field"),
        (custom_event, {**CUSTOM, "attributes": "FR"}, "invalid_field"),
        (custom_event, {**CUSTOM, "timestamp": 1.5}, "invalid_timestamp"),
    ],
)
def test_rejections(build: Any, record: object, reason: str) -> None:
    with pytest.raises(InvalidRecord) as raised:
        build(record)
    assert raised.value.reason == reason


def test_interaction_and_profile_update() -> None:
    record = {
        "event_id": "int-1",
        "user_id": "user-42",
        "delivery_id": "d-1",
        "kind": "click",
        "element": "cta",
        "timestamp": "2026-11-23T10:00:00.250Z",
    }
    parsed = interaction(record)
    assert (parsed.kind, parsed.element, parsed.timestamp_ms) == ("click", "cta", 1_795_428_000_250)
    assert interaction({**record, "element": None}).element is None
    with pytest.raises(InvalidRecord):
        interaction({**record, "element": 3})
    with pytest.raises(InvalidRecord):
        interaction({**record, "delivery_id": None})

    update = profile_update({"user_id": "user-42", "attributes": {"plan": "pro"}, "timestamp": 5})
    assert (update.attributes, update.timestamp_ms) == ({"plan": "pro"}, 5)
    with pytest.raises(InvalidRecord) as raised:
        profile_update({"user_id": "user-42", "timestamp": 5})
    assert raised.value.reason == "missing_field"
