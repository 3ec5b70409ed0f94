"""Duration bounds: every engagement duration and cap window is at most 10 years."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest

from engine.core.caps import FrequencyCap
from engine.core.catalog import Catalog
from engine.core.durations import MAX_DURATION_SECONDS
from engine.core.engagements import compile_engagement
from engine.core.events import custom_event, session_event
from engine.core.matcher import Outcome, evaluate
from engine.core.release import release_pending
from engine.core.state import UserState
from engine.core.timestamps import format_timestamp
from engine.errors import InvalidRecord

NOW = 1_795_442_400_000  # 2026-11-23T14:00:00Z
TEN_YEARS_MS = 315_360_000_000
# The value that, before the bound, compiled and then broke the worker.
UNBOUNDED = 20_000_000_000_000_000

# Field name as the core error names it, and the document fragment setting it.
DURATIONS: dict[str, Callable[[object], dict[str, Any]]] = {
    "delay_seconds": lambda value: {"trigger": {"event": "session_start", "delay_seconds": value}},
    "expires_after_seconds": lambda value: {"expires_after_seconds": value},
    "after_seconds": lambda value: {"reeligibility": {"after_seconds": value}},
    "window_seconds": lambda value: {"conversion": {"event": "buy", "window_seconds": value}},
    "within_seconds": lambda value: {
        "audience": {
            "filters": [{"event": "viewed", "op": "gte", "count": 0, "within_seconds": value}]
        }
    },
}


def _document(**fields: Any) -> dict[str, Any]:
    document = {
        "id": "cart",
        "status": "active",
        "trigger": {"event": "session_start"},
        "message": {"title": "Hi"},
    }
    return document | fields


def _session(event_id: str, timestamp: int) -> Any:
    return session_event(
        {
            "event_id": event_id,
            "user_id": "user-42",
            "type": "session_start",
            "timestamp": timestamp,
        }
    )


def test_bound_is_ten_years_of_365_days() -> None:
    assert MAX_DURATION_SECONDS == 315_360_000 == TEN_YEARS_MS // 1000


@pytest.mark.parametrize("field", sorted(DURATIONS))
def test_duration_at_the_limit_compiles(field: str) -> None:
    compile_engagement(_document(**DURATIONS[field](MAX_DURATION_SECONDS)), 1)


@pytest.mark.parametrize("field", sorted(DURATIONS))
def test_duration_one_above_the_limit_is_refused(field: str) -> None:
    with pytest.raises(InvalidRecord) as raised:
        compile_engagement(_document(**DURATIONS[field](MAX_DURATION_SECONDS + 1)), 1)
    assert raised.value.reason == "invalid_engagement"
    assert raised.value.detail.startswith("cart: ")
    # The author must learn which field is wrong and what the limit is.
    assert field in raised.value.detail
    assert str(MAX_DURATION_SECONDS) in raised.value.detail


def test_fractional_reeligibility_just_above_the_limit_is_refused() -> None:
    # after_seconds is the one duration the core reads as a number, not an integer.
    with pytest.raises(InvalidRecord, match="after_seconds"):
        compile_engagement(
            _document(reeligibility={"after_seconds": MAX_DURATION_SECONDS + 0.5}), 1
        )


@pytest.mark.parametrize("field", ["delay_seconds", "expires_after_seconds"])
def test_unbounded_duration_never_reaches_the_stored_state(field: str) -> None:
    document = _document(**DURATIONS[field](UNBOUNDED))
    with pytest.raises(InvalidRecord, match=field):
        catalog = Catalog.build([compile_engagement(document, 1)])
        # Without the bound the engagement compiled and the failure came here: the due
        # time (or expires_at) of the first match fell outside 64 bits (orjson: "Integer
        # exceeds 64-bit range") or outside the dates format_timestamp can write.
        user = UserState()
        result = evaluate(_session("evt-1", NOW), user, catalog, NOW)
        for pending in result.scheduled:
            orjson.dumps(pending.to_json_dict())
        orjson.dumps(user.to_json_dict())
        orjson.dumps(result.deliveries)


def test_every_duration_at_the_limit_stays_storable_and_formattable() -> None:
    document = _document(
        trigger={"event": "session_start", "delay_seconds": MAX_DURATION_SECONDS},
        expires_after_seconds=MAX_DURATION_SECONDS,
        reeligibility={"after_seconds": MAX_DURATION_SECONDS},
        conversion={"event": "buy", "window_seconds": MAX_DURATION_SECONDS},
        audience={
            "filters": [
                {"event": "viewed", "op": "gte", "count": 0, "within_seconds": MAX_DURATION_SECONDS}
            ]
        },
    )
    catalog = Catalog.build([compile_engagement(document, 1)])
    user = UserState()
    [pending] = evaluate(_session("evt-1", NOW), user, catalog, NOW).scheduled
    assert pending.due_at_ms == NOW + TEN_YEARS_MS
    orjson.dumps(pending.to_json_dict())
    due = pending.due_at_ms
    released = release_pending(pending, user, catalog, due)
    assert released.evaluation is not None
    assert released.evaluation.outcome is Outcome.DELIVERED
    assert released.delivery is not None
    assert released.delivery["expires_at"] == format_timestamp(due + TEN_YEARS_MS)
    orjson.dumps(released.delivery)
    viewed = custom_event(
        {"event_id": "evt-2", "user_id": "user-42", "name": "viewed", "timestamp": due}
    )
    evaluate(viewed, user, catalog, due)
    orjson.dumps(user.to_json_dict())


def test_frequency_cap_window_is_bounded() -> None:
    assert FrequencyCap(1, MAX_DURATION_SECONDS).per_ms == TEN_YEARS_MS
    with pytest.raises(ValueError, match=rf"per_seconds.*{MAX_DURATION_SECONDS}"):
        FrequencyCap(1, MAX_DURATION_SECONDS + 1)
