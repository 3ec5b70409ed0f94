"""Measure ``evaluate`` cost per event with 1,000 engagements (not collected by pytest).

Run: ``.venv/bin/python -m tests.unit.bench_matcher``. Two catalogs of 1,000 active
engagements each, all triggered by the measured event (session_start, or the custom event
"Added to Favorites" with ``where`` filters), mixing audience filters, sampling, schedules
and re-eligibility, so most candidates run several checks and some are eligible. 10,000
users with stored profiles; events 100 ms apart. Prints the best of five runs in µs/event.

Shape "mixed": users start with no history. Since priorities, one event delivers at most
one engagement (the others are lower_priority), where it used to deliver every eligible
one, so before/after differ in work done, not only in check cost. Shape "replay": every
user already received every engagement, so each candidate runs its checks up to
not_re_eligible at most and outcomes are identical before and after: it isolates the
per-candidate check cost. Only uses APIs that predate variants/caps/local time, so older
trees can be measured too.
"""

from __future__ import annotations

import random
import time
from typing import Any

from engine.core.catalog import Catalog
from engine.core.engagements import compile_engagement
from engine.core.events import TriggerEvent, custom_event, session_event
from engine.core.matcher import evaluate
from engine.core.state import UserState

NOW = 1_795_442_400_000  # 2026-11-23T14:00:00Z
COUNTRIES = [f"C{index}" for index in range(20)]
PLANS = ["free", "pro", "team", "trial"]
USERS = 10_000
EVENTS = 5_000


def _document(index: int, trigger: dict[str, Any]) -> dict[str, Any]:
    document: dict[str, Any] = {
        "id": f"eng-{index}",
        "status": "active",
        "priority": index % 7,
        "trigger": dict(trigger),
        "message": {"title": f"Message {index}"},
        "reeligibility": {"after_seconds": 3600},
    }
    kind = index % 4
    if kind == 0:
        document["audience"] = {
            "filters": [{"attribute": "country", "op": "eq", "value": COUNTRIES[index % 20]}]
        }
    elif kind == 1:
        document["audience"] = {
            "filters": [{"attribute": "plan", "op": "in", "value": ["pro", "team"]}],
            "percent": 50,
        }
    elif kind == 2 and trigger["event"] == "custom":
        document["trigger"]["where"] = [{"property": "price", "op": "gt", "value": index % 200}]
        document["audience"] = {"filters": [{"attribute": "app_opens", "op": "gte", "value": 40}]}
    else:
        document["schedule"] = {"start": "2026-01-01T00:00:00Z", "end": "2027-01-01T00:00:00Z"}
        document["audience"] = {
            "filters": [
                {"attribute": "app_opens", "op": "gte", "value": index % 50},
                {"attribute": "country", "op": "ne", "value": COUNTRIES[index % 20]},
            ],
            "percent": 10,
        }
    return document


def _catalog(trigger: dict[str, Any]) -> Catalog:
    return Catalog.build(compile_engagement(_document(i, trigger), 1) for i in range(1_000))


def _users(rng: random.Random, delivered: bool) -> dict[str, UserState]:
    users: dict[str, UserState] = {}
    history = {f"eng-{index}": NOW - 60_000 for index in range(1_000)} if delivered else {}
    for index in range(USERS):
        attributes = {
            "country": rng.choice(COUNTRIES),
            "plan": rng.choice(PLANS),
            "app_opens": rng.randrange(60),
        }
        users[f"user-{index}"] = UserState(attributes, dict.fromkeys(attributes, 0), history)
    return users


def _events(rng: random.Random, custom: bool) -> list[TriggerEvent]:
    events = []
    for index in range(EVENTS):
        timestamp = NOW - (EVENTS - index) * 100
        user_id = f"user-{rng.randrange(USERS)}"
        if custom:
            record = {
                "event_id": f"evt-{index}",
                "user_id": user_id,
                "name": "Added to Favorites",
                "timestamp": timestamp,
                "properties": {"price": rng.randrange(250), "category": "shoes"},
            }
            events.append(custom_event(record))
        else:
            record = {
                "event_id": f"evt-{index}",
                "user_id": user_id,
                "type": "session_start",
                "timestamp": timestamp,
                "device": {"platform": "ios", "timezone": "Europe/Paris"},
            }
            events.append(session_event(record))
    return events


def _measure(custom: bool, replay: bool) -> float:
    trigger = (
        {"event": "custom", "name": "Added to Favorites"} if custom else {"event": "session_start"}
    )
    catalog = _catalog(trigger)
    best = float("inf")
    for run in range(5):
        rng = random.Random(run)
        users = _users(rng, delivered=replay)
        events = _events(rng, custom)
        started = time.perf_counter()
        for event in events:
            evaluate(event, users[event.user_id], catalog, NOW)
        best = min(best, (time.perf_counter() - started) / len(events))
    return best * 1e6


def main() -> None:
    """Print µs/event for a custom event and a session_start."""
    for replay in (False, True):
        shape = "replay" if replay else "mixed"
        custom = _measure(custom=True, replay=replay)
        session = _measure(custom=False, replay=replay)
        print(f"{shape:6} custom event:  {custom:7.1f} µs/event (1,000 candidates)")
        print(f"{shape:6} session_start: {session:7.1f} µs/event (1,000 candidates)")


if __name__ == "__main__":
    main()
