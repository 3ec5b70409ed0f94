"""Delivery records: deterministic ids and the state stored alongside them."""

from __future__ import annotations

import random
import uuid

from engine.core.deliveries import (
    DECLIC_NAMESPACE,
    build_delivery,
    delivery_id,
    delivery_id_for_test_send,
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


# Ids computed by the code before ids containing the unit separator were made unambiguous:
# every id without one must stay exactly the same (replays and stored states depend on it).
PINNED_IDS = [
    (("welcome", "u-1", "e-1"), "1ec6330b-1698-5f12-a896-35f31cfff550"),
    (
        ("promo-2026", "user:42", "0190f5c2-7d1e-7c3b-9a4e-5f6a7b8c9d0e"),
        "51b7cd7d-edaf-5bd7-ba74-6f85c014e90f",
    ),
    (("a", "", "x"), "cdc3d236-f5e9-5c52-a89b-c5c601cf1f70"),
    (("é", "ü", "✓"), "ab65869c-3321-5328-88ca-3f9e078366bd"),
]


def test_ids_without_separator_are_unchanged() -> None:
    for parts, expected in PINNED_IDS:
        assert delivery_id(*parts) == expected, parts
    assert delivery_id_for_test_send("welcome", "u-1", "req-1") == (
        "a0b39e30-8c61-54b0-b510-3a7345eba2a6"
    )


def test_separator_inside_ids_no_longer_collides() -> None:
    assert delivery_id("a\x1fb", "c", "e") != delivery_id("a", "b\x1fc", "e")
    assert delivery_id("a", "b", "c\x1fe") != delivery_id("a", "b\x1fc", "e")
    # A real event id shaped like a test send's trigger part is not that test send.
    assert delivery_id("welcome", "u-1", "test\x1fX") != delivery_id_for_test_send(
        "welcome", "u-1", "X"
    )
    assert delivery_id_for_test_send("a", "b\x1fc", "X") != delivery_id_for_test_send(
        "a\x1fb", "c", "X"
    )


def test_ids_with_separator_follow_the_documented_formula() -> None:
    # Recomputed from the module docstring, without calling the module's helpers.
    assert delivery_id("a", "b\x1fc", "e") == str(
        uuid.uuid5(DECLIC_NAMESPACE, '["a","b\\u001fc","e"]')
    )
    assert delivery_id_for_test_send("a", "b", '\x1f"é') == str(
        uuid.uuid5(DECLIC_NAMESPACE, '["a","b","test","\\u001f\\"é"]')
    )


def test_distinct_inputs_give_distinct_ids() -> None:
    # Short strings over a few symbols, the separator among them, so that joined forms
    # clash often: a real delivery and a test send are told apart too.
    rng = random.Random(20261123)
    symbols = ["\x1f", "\x1f", "a", "b", "test", '"', "\\", ",", "[", "\n", "é"]

    def text() -> str:
        return "".join(rng.choice(symbols) for _ in range(rng.randint(0, 4)))

    seen: dict[str, tuple[str, str, str, str]] = {}
    for _ in range(20_000):
        kind = rng.choice(["real", "test"])
        key = (kind, text(), text(), text())
        build = delivery_id if kind == "real" else delivery_id_for_test_send
        made = build(key[1], key[2], key[3])
        assert seen.setdefault(made, key) == key, (seen[made], key)
