"""Event counts, pending deliveries and conversion watches: the per-user history pieces."""

from __future__ import annotations

import json
from typing import Any

import pytest

from engine.core.catalog import Catalog
from engine.core.conversions import MAX_WATCHES, ConversionWatch, add_watch
from engine.core.counters import CountSpec, compile_count_filter, counts_hold, record_occurrence
from engine.core.engagements import compile_engagement
from engine.core.events import custom_event
from engine.core.pending import PendingDelivery, cancels, compile_cancel_rules
from engine.errors import InvalidRecord

DAY_MS = 86_400_000


def _count(op: str, count: int, within_seconds: int = 86_400) -> Any:
    return compile_count_filter(
        {"event": "Viewed", "op": op, "count": count, "within_seconds": within_seconds}
    )


@pytest.mark.parametrize(
    ("op", "count", "holds"),
    [
        ("eq", 2, True),
        ("ne", 2, False),
        ("gt", 1, True),
        ("gt", 2, False),
        ("gte", 2, True),
        ("lt", 3, True),
        ("lte", 1, False),
        ("eq", 0, False),
    ],
)
def test_count_operators(op: str, count: int, holds: bool) -> None:
    times = {"Viewed": [1_000, 5_000, 9_000]}
    # Window (9_000 - 6_000, 9_000]: 5_000 and 9_000; 1_000 is outside.
    assert counts_hold((_count(op, count, 6),), times, 9_000) is holds


def test_missing_name_counts_zero() -> None:
    assert counts_hold((_count("eq", 0),), {}, 1_000)
    assert not counts_hold((_count("gte", 1),), {}, 1_000)


def test_later_events_do_not_count_for_an_earlier_one() -> None:
    assert counts_hold((_count("eq", 1, 10),), {"Viewed": [1_000, 5_000]}, 2_000)


def test_recorded_counts_stay_bounded_under_many_events() -> None:
    specs = {"Viewed": CountSpec(longest_window_ms=DAY_MS, largest_count=3)}
    times: dict[str, list[int]] = {}
    for index in range(10_000):
        record_occurrence(times, "Viewed", index * 1_000, specs)
    assert times == {"Viewed": [9_996_000, 9_997_000, 9_998_000, 9_999_000]}
    # Sparse events: the longest window prunes before the count bound does.
    sparse: dict[str, list[int]] = {}
    for index in range(100):
        record_occurrence(sparse, "Viewed", index * DAY_MS, specs)
    assert sparse == {"Viewed": [99 * DAY_MS]}


def test_names_no_longer_counted_are_dropped() -> None:
    times = {"Old": [1, 2, 3], "Viewed": [5]}
    record_occurrence(times, "Viewed", 10, {"Viewed": CountSpec(1_000, 5)})
    assert times == {"Viewed": [5, 10]}


@pytest.mark.parametrize(
    "spec",
    [
        {"event": "", "op": "eq", "count": 1, "within_seconds": 1},
        {"event": "E", "op": "contains", "count": 1, "within_seconds": 1},
        {"event": "E", "op": "eq", "count": -1, "within_seconds": 1},
        {"event": "E", "op": "eq", "count": 1_001, "within_seconds": 1},
        {"event": "E", "op": "eq", "count": 1, "within_seconds": 0},
        {"event": "E", "op": "eq", "count": 1.5, "within_seconds": 1},
    ],
)
def test_bad_count_filters_are_refused(spec: dict[str, Any]) -> None:
    with pytest.raises(InvalidRecord) as raised:
        compile_count_filter(spec)
    assert raised.value.reason == "invalid_engagement"


def test_catalog_exposes_counted_names_from_active_engagements_only() -> None:
    def engagement(engagement_id: str, status: str, count: int, within: int) -> Any:
        filters = [{"event": "Viewed", "op": "gte", "count": count, "within_seconds": within}]
        document = {
            "id": engagement_id,
            "status": status,
            "trigger": {"event": "session_start"},
            "audience": {"filters": filters},
        }
        return compile_engagement(document, 1)

    catalog = Catalog.build(
        [
            engagement("a", "active", 3, 60),
            engagement("b", "active", 1, 3_600),
            engagement("c", "paused", 50, 86_400),
        ]
    )
    assert dict(catalog.counted_events) == {"Viewed": CountSpec(3_600_000, 3)}
    assert catalog.count_spec("custom:Viewed") == CountSpec(3_600_000, 3)
    assert catalog.count_spec("Viewed") is None


def _pending(**changes: Any) -> PendingDelivery:
    fields: dict[str, Any] = {
        "delivery_id": "d-1",
        "engagement_id": "cart",
        "engagement_version": 2,
        "user_id": "user-42",
        "trigger_event_id": "evt-1",
        "triggered_at_ms": 1_000,
        "due_at_ms": 301_000,
        "variant": "A",
    }
    return PendingDelivery(**(fields | changes))


@pytest.mark.parametrize("timezone", [None, "Europe/Paris"])
def test_pending_json_round_trip(timezone: str | None) -> None:
    pending = _pending(timezone=timezone)
    data = json.loads(json.dumps(pending.to_json_dict()))
    assert ("timezone" in data) is (timezone is not None)
    assert data["due_at_ms"] == 301_000
    assert PendingDelivery.from_json_dict(data) == pending


@pytest.mark.parametrize(
    "change",
    [{"due_at_ms": "soon"}, {"variant": None}, {"engagement_version": True}, {"timezone": 1}],
)
def test_pending_rejects_corrupt_json(change: dict[str, Any]) -> None:
    with pytest.raises(InvalidRecord) as raised:
        PendingDelivery.from_json_dict(_pending().to_json_dict() | change)
    assert raised.value.reason == "invalid_state"


def _purchase(event_id: str, timestamp: int, total: int) -> Any:
    return custom_event(
        {
            "event_id": event_id,
            "user_id": "user-42",
            "name": "purchase",
            "timestamp": timestamp,
            "properties": {"total": total},
        }
    )


def test_cancel_rules() -> None:
    rules = compile_cancel_rules(
        [{"event": "purchase", "where": [{"property": "total", "op": "gt", "value": 0}]}]
    )
    pending = _pending()
    assert cancels(rules, pending, _purchase("evt-2", 1_000, 5))
    assert not cancels(rules, pending, _purchase("evt-2", 1_000, 0))  # where misses
    assert not cancels(rules, pending, _purchase("evt-1", 2_000, 5))  # the trigger itself
    assert not cancels(rules, pending, _purchase("evt-2", 999, 5))  # before the trigger
    assert not cancels(rules, pending, _purchase("evt-2", 301_000, 5))  # at the due time
    assert not cancels((), pending, _purchase("evt-2", 2_000, 5))


def test_watch_json_round_trip_and_bound() -> None:
    watch = ConversionWatch(None, "cart", "control", 1_000, 2_000)
    assert ConversionWatch.from_json_dict(json.loads(json.dumps(watch.to_json_dict()))) == watch
    with pytest.raises(InvalidRecord):
        ConversionWatch.from_json_dict({"d": None, "e": "cart", "v": "A", "s": True, "x": 1})
    watches: list[ConversionWatch] = []
    for index in range(1_000):
        add_watch(watches, ConversionWatch(f"d-{index}", "cart", "A", index, index + 10_000))
    assert len(watches) == MAX_WATCHES
    assert watches[-1].delivery_id == "d-999"
    # Starting a watch drops those already expired at its start.
    add_watch(watches, ConversionWatch("late", "cart", "A", 50_000, 60_000))
    assert [watch.delivery_id for watch in watches] == ["late"]
