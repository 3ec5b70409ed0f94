"""Delivery records: deterministic ids and the state stored alongside them."""

from __future__ import annotations

import uuid

from engine.core.deliveries import (
    DECLIC_NAMESPACE,
    build_delivery,
    delivery_id,
    new_delivery_state,
)
from engine.core.engagements import compile_engagement
from engine.core.events import session_event


def test_namespace_is_pinned() -> None:
    assert uuid.uuid5(uuid.NAMESPACE_URL, "urn:declic:delivery") == DECLIC_NAMESPACE


def test_delivery_id_is_deterministic_and_pinned() -> None:
    first = delivery_id("welcome", "user-42", "evt-1")
    assert first == delivery_id("welcome", "user-42", "evt-1")
    # Computed independently: uuid5 over the three ids joined by the unit separator.
    assert first == str(uuid.uuid5(DECLIC_NAMESPACE, "welcome\x1fuser-42\x1fevt-1"))
    assert uuid.UUID(first).version == 5


def test_delivery_id_differs_per_input() -> None:
    ids = {
        delivery_id("welcome", "user-42", "evt-1"),
        delivery_id("welcome", "user-42", "evt-2"),
        delivery_id("welcome", "user-43", "evt-1"),
        delivery_id("welcome-2", "user-42", "evt-1"),
        # Without a separator these two would collide.
        delivery_id("ab", "c", "evt-1"),
        delivery_id("a", "bc", "evt-1"),
    }
    assert len(ids) == 6


def test_new_delivery_state_from_record() -> None:
    engagement = compile_engagement(
        {"id": "welcome", "status": "active", "trigger": {"event": "session_start"}}, 7
    )
    event = session_event(
        {"event_id": "evt-1", "user_id": "user-42", "type": "session_start", "timestamp": 1_000}
    )
    record = build_delivery(engagement, event, now_ms=2_000)
    assert record["triggered_at"] == "1970-01-01T00:00:01.000Z"
    assert record["created_at"] == "1970-01-01T00:00:02.000Z"
    state = new_delivery_state(record, created_at_ms=2_000)
    assert state.delivery_id == record["delivery_id"]
    assert (state.engagement_id, state.engagement_version, state.variant, state.user_id) == (
        "welcome",
        7,
        "default",
        "user-42",
    )
    assert state.created_at_ms == 2_000
    assert state.kinds_seen == frozenset()


def test_fast_delivery_id_equals_uuid5_for_many_inputs() -> None:
    samples = ["", "a", "welcome", "é-ü-中文", "x" * 300, "spaces and\ttabs"]
    for engagement_id in samples:
        for user_id in samples:
            for event_id in ("evt-1", "🙂"):
                name = "\x1f".join((engagement_id, user_id, event_id))
                assert delivery_id(engagement_id, user_id, event_id) == str(
                    uuid.uuid5(DECLIC_NAMESPACE, name)
                )
