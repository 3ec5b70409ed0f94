"""Matcher behaviour across successive events (golden cases cover single events)."""

from __future__ import annotations

import json
from typing import Any

from engine.core.catalog import Catalog
from engine.core.engagements import compile_engagement
from engine.core.events import session_event
from engine.core.matcher import MatchPolicy, Outcome, evaluate
from engine.core.state import UserState

NOW = 1_795_442_400_000  # 2026-11-23T14:00:00Z


def _catalog(after_seconds: float | None) -> Catalog:
    return Catalog.build(
        [
            compile_engagement(
                {
                    "id": "welcome",
                    "status": "active",
                    "trigger": {"event": "session_start"},
                    "message": {"title": "Hi"},
                    "reeligibility": {"after_seconds": after_seconds},
                },
                1,
            )
        ]
    )


def _session(event_id: str, timestamp_ms: int, **extra: Any) -> Any:
    return session_event(
        {
            "event_id": event_id,
            "user_id": "user-42",
            "type": "session_start",
            "timestamp": timestamp_ms,
            **extra,
        }
    )


def test_redelivered_input_does_not_deliver_twice() -> None:
    catalog = _catalog(None)
    user = UserState()
    first = evaluate(_session("evt-1", NOW - 1_000), user, catalog, NOW)
    again = evaluate(_session("evt-1", NOW - 1_000), user, catalog, NOW + 5)
    assert [e.outcome for e in first.evaluations] == [Outcome.DELIVERED]
    assert [e.outcome for e in again.evaluations] == [Outcome.NOT_RE_ELIGIBLE]
    assert again.deliveries == [] and not again.user_changed


def test_after_seconds_uses_event_time_and_persisted_state() -> None:
    catalog = _catalog(60)
    user = UserState()
    assert evaluate(_session("evt-1", NOW - 120_000), user, catalog, NOW).deliveries
    stored = UserState.from_json_dict(user.to_json_dict())
    too_soon = evaluate(_session("evt-2", NOW - 60_001), stored, catalog, NOW)
    assert too_soon.evaluations[0].outcome is Outcome.NOT_RE_ELIGIBLE
    on_time = evaluate(_session("evt-3", NOW - 60_000), stored, catalog, NOW)
    assert on_time.evaluations[0].outcome is Outcome.DELIVERED
    assert (
        on_time.deliveries[0]["delivery_id"]
        != evaluate(_session("evt-4", NOW), UserState(), catalog, NOW).deliveries[0]["delivery_id"]
    )


def test_stale_event_leaves_user_untouched() -> None:
    user = UserState()
    result = evaluate(
        _session("evt-1", NOW + 3_600_000, attributes={"country": "FR"}),
        user,
        _catalog(None),
        NOW,
        MatchPolicy(),
    )
    assert result.evaluations[0].outcome is Outcome.STALE
    assert user == UserState()


def test_attributes_merge_without_candidates() -> None:
    user = UserState()
    result = evaluate(
        _session("evt-1", NOW, attributes={"country": "FR"}), user, Catalog.build([]), NOW
    )
    assert result.evaluations == [] and result.user_changed
    assert user.attributes == {"country": "FR"}


def test_message_and_delivery_are_json_ready() -> None:
    result = evaluate(_session("evt-1", NOW), UserState(), _catalog(None), NOW)
    assert json.loads(json.dumps(result.deliveries[0]))["message"] == {"title": "Hi"}
