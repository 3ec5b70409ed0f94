"""The gateway's pure rules and its bounded index: what is offered, what a resumed stream
replays, what is kept."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from engine.gateway.index import MARKS_PER_MESSAGE, DeliveryIndex
from engine.gateway.rules import (
    Cursor,
    EventId,
    Held,
    is_after,
    newest_event_id,
    parse_event_id,
    parse_limit,
    pending,
    replay_after,
)

NOW = 1_796_000_000_000


def held(
    offset: int,
    partition: int = 0,
    created_ms: int | None = None,
    expires_ms: int | None = None,
    delivery_id: str | None = None,
    record_ms: int | None = None,
) -> Held:
    created = created_ms if created_ms is not None else NOW - 100_000 + offset * 1000
    return Held(
        event_id=EventId(partition, offset),
        delivery_id=delivery_id or f"d-{partition}-{offset}",
        created_ms=created,
        expires_ms=expires_ms,
        record_ms=record_ms if record_ms is not None else created + 5,
        body=b"{}",
    )


def ids(entries: list[Held]) -> list[str]:
    return [str(entry.event_id) for entry in entries]


# --- pending ----------------------------------------------------------------------------


def test_pending_is_newest_first_and_bounded() -> None:
    entries = [held(offset) for offset in (3, 0, 4, 1, 2)]
    assert ids(pending(entries, set(), NOW, 3)) == ["0-4", "0-3", "0-2"]
    assert ids(pending(entries, set(), NOW, 50)) == ["0-4", "0-3", "0-2", "0-1", "0-0"]
    assert pending(entries, set(), NOW, 0) == []


def test_pending_leaves_out_shown_deliveries() -> None:
    entries = [held(0), held(1), held(2)]
    assert ids(pending(entries, {"d-0-1"}, NOW, 20)) == ["0-2", "0-0"]


def test_pending_leaves_out_expired_deliveries() -> None:
    entries = [
        held(0, expires_ms=NOW - 1),
        held(1, expires_ms=NOW),  # expires_at reached: expired
        held(2, expires_ms=NOW + 1),
        held(3),  # no expiry
    ]
    assert ids(pending(entries, set(), NOW, 20)) == ["0-3", "0-2"]
    assert ids(pending(entries, set(), NOW + 1, 20)) == ["0-3"]


def test_newest_is_by_creation_time_then_position() -> None:
    late_release = held(0, created_ms=NOW)  # a delayed delivery released last
    entries = [late_release, held(5), held(6, created_ms=NOW)]
    assert ids(pending(entries, set(), NOW + 1, 20)) == ["0-6", "0-0", "0-5"]
    assert newest_event_id(entries) == EventId(0, 6)
    assert newest_event_id([]) is None


def test_newest_event_id_counts_shown_and_expired_deliveries() -> None:
    entries = [held(0), held(1, expires_ms=NOW - 1)]
    assert newest_event_id(entries) == EventId(0, 1)


# --- resume after P-O ---------------------------------------------------------------------


def test_replay_after_p_o_is_the_later_offsets_oldest_first() -> None:
    entries = [held(offset) for offset in (4, 2, 0, 3, 1)]
    assert ids(replay_after(entries, EventId(0, 1), set(), NOW)) == ["0-2", "0-3", "0-4"]
    assert replay_after(entries, EventId(0, 4), set(), NOW) == []
    assert ids(replay_after(entries, EventId(0, 99), set(), NOW)) == []


def test_replay_leaves_out_shown_and_expired() -> None:
    entries = [held(1), held(2, expires_ms=NOW - 1), held(3)]
    assert ids(replay_after(entries, EventId(0, 0), {"d-0-3"}, NOW)) == ["0-1"]


def test_replay_after_an_id_no_longer_held_replays_what_is_held_after_it() -> None:
    entries = [held(10), held(11)]
    assert ids(replay_after(entries, EventId(0, 3), set(), NOW)) == ["0-10", "0-11"]


def test_other_partitions_compare_by_record_time() -> None:
    cursor = held(7, partition=1, record_ms=NOW - 50)
    before = held(3, partition=0, record_ms=NOW - 60)
    after = held(2, partition=0, record_ms=NOW - 40)
    assert not is_after(before, cursor.event_id, cursor.record_ms)
    assert is_after(after, cursor.event_id, cursor.record_ms)
    # Without the cursor's record, a delivery of another partition is replayed: a repeat
    # is possible, a loss is not.
    assert is_after(before, cursor.event_id, None)
    replay = replay_after([cursor, before, after], cursor.event_id, set(), NOW)
    assert ids(replay) == ["0-2"]


@pytest.mark.parametrize("last_seen", range(-1, 8))
def test_resume_at_any_point_misses_nothing_and_repeats_nothing(last_seen: int) -> None:
    """A client that saw events up to `last_seen` and reconnects gets each later delivery
    once, replayed or live, whichever way the deliveries split around its reconnection."""
    everything = [held(offset) for offset in range(8)]
    for arrived_before_reconnect in range(9):
        stored = everything[:arrived_before_reconnect]
        cursor = Cursor(EventId(0, last_seen) if last_seen >= 0 else None)
        received = []
        if last_seen >= 0:
            for entry in replay_after(stored, EventId(0, last_seen), set(), NOW):
                assert cursor.admits(entry)
                cursor.advance(entry)
                received.append(entry)
        for entry in everything[arrived_before_reconnect:]:  # live
            if cursor.admits(entry):
                cursor.advance(entry)
                received.append(entry)
        expected = (
            everything[last_seen + 1 :] if last_seen >= 0 else everything[arrived_before_reconnect:]
        )
        assert ids(received) == ids(expected), (last_seen, arrived_before_reconnect)


def test_a_cursor_admits_each_delivery_once() -> None:
    cursor = Cursor(EventId(0, 4))
    assert not cursor.admits(held(4)) and not cursor.admits(held(2))
    assert cursor.admits(held(5)) and cursor.admits(held(0, partition=1))
    cursor.advance(held(5))
    assert not cursor.admits(held(5))
    cursor.advance(held(3))  # never goes back
    assert not cursor.admits(held(5))


# --- parsing --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0-0", EventId(0, 0)),
        ("3-1234567", EventId(3, 1234567)),
        (" 1-2 ", EventId(1, 2)),
        ("", None),
        ("1", None),
        ("1-", None),
        ("-1-2", None),
        ("01-2", None),
        ("1-2-3", None),
        ("a-b", None),
        ("1-99999999999999999999", None),
        ("\u0661-\u0662", None),  # Arabic-Indic digits: not ASCII ones
    ],
)
def test_event_ids_parse_strictly(text: str, expected: EventId | None) -> None:
    assert parse_event_id(text) == expected
    if expected is not None:
        assert parse_event_id(str(expected)) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [(None, 20), ("", 20), ("1", 1), ("50", 50), ("51", 50), ("9999", 50)]
    + [(bad, None) for bad in ("0", "-1", "2.5", "x", "\uff11", "99999999")],
)
def test_limit(text: str | None, expected: int | None) -> None:
    assert parse_limit(text) == expected


# --- the index --------------------------------------------------------------------------------


def test_index_keeps_the_newest_per_user() -> None:
    index = DeliveryIndex(max_messages=3, max_users=10)
    for offset in (0, 1, 2, 3, 4):
        assert index.add("u", held(offset))
    user = index.get("u")
    assert user is not None
    assert ids(user.held) == ["0-2", "0-3", "0-4"]
    assert index.deliveries == 3
    # An older delivery read late is not kept in place of newer ones.
    assert not index.add("u", held(1, delivery_id="late", created_ms=0))
    assert ids(user.held) == ["0-2", "0-3", "0-4"]


def test_index_refuses_a_delivery_twice() -> None:
    index = DeliveryIndex(max_messages=3, max_users=10)
    assert index.add("u", held(0))
    assert not index.add("u", held(0))
    assert not index.add("u", held(9, delivery_id="d-0-0"))
    assert index.deliveries == 1


def test_index_drops_the_least_recent_user() -> None:
    index = DeliveryIndex(max_messages=2, max_users=2)
    index.add("a", held(0))
    index.add("b", held(1))
    index.mark_shown("a", "d-0-0")  # a is now more recent than b
    index.add("c", held(2))
    assert index.get("b") is None and index.get("a") is not None and index.get("c") is not None
    assert len(index) == 2 and index.deliveries == 2 and index.users_dropped == 1


def test_shown_marks_are_bounded_and_kept_before_their_delivery() -> None:
    index = DeliveryIndex(max_messages=2, max_users=10)
    assert index.mark_shown("u", "d-0-0")  # the impression is read before the delivery
    assert not index.mark_shown("u", "d-0-0")
    index.add("u", held(0))
    user = index.get("u")
    assert user is not None
    assert pending(user.held, user.shown, NOW, 20) == []
    for number in range(100):
        index.mark_shown("u", f"other-{number}")
    assert len(user.shown) == MARKS_PER_MESSAGE * 2
    assert "other-99" in user.shown and "d-0-0" not in user.shown


def test_index_bounds_must_be_positive() -> None:
    with pytest.raises(ValueError):
        DeliveryIndex(max_messages=0, max_users=1)


def test_rules_and_index_import_no_kafka_aiohttp_or_clock() -> None:
    forbidden = {"aiokafka", "aiohttp", "time", "datetime", "asyncio", "faust"}
    package = Path(__file__).resolve().parents[2] / "engine" / "gateway"
    for name in ("rules.py", "index.py"):
        tree = ast.parse((package / name).read_text())
        imported = {
            alias.name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        } | {
            (node.module or "").split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
        }
        assert not imported & forbidden, (name, imported & forbidden)
