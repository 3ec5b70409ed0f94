"""The benchmark's workload: users, engagements and events, generated from a seed."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

COUNTRIES = ("FR", "BE", "DE", "US", "ES", "IT", "GB", "JP")
PLANS = ("free", "free", "free", "plus", "premium")
EVENT_NAMES = tuple(f"bench_event_{number:02d}" for number in range(50))
CATEGORIES = ("shoes", "books", "games", "music", "garden")
# Input topic kinds the events go to (profiles go to "profiles").
EVENT_TOPICS = ("sessions", "custom-events")
SESSION_SHARE_OF_ENGAGEMENTS = 0.10
CUSTOM_SHARE_OF_EVENTS = 0.70
# What makes an engagement beyond --live-engagements never deliver (see `engagements`).
ENDED = "2020-01-01T00:00:00Z"
MAX_AGE = 80
NEVER_SENT = "bench_never_sent"


@dataclass(frozen=True, slots=True)
class Message:
    """One Kafka record to publish: topic kind (sessions, custom-events, profiles), key, value."""

    kind: str
    key: bytes
    value: bytes


def user_id(index: int) -> str:
    """Return the id of the bench user number `index`."""
    return f"bench-user-{index}"


def profiles(users: int, now_ms: int, seed: int) -> Iterator[Message]:
    """Yield one profile record per user, with country, plan and age, as it is consumed.

    A generator: the bench publishes millions of users, which as a list would not fit in
    memory. The records are the same as a list's, in the same order, for a given seed."""
    rng = random.Random(f"{seed}:profiles")
    for index in range(users):
        user = user_id(index)
        record = {
            "user_id": user,
            "timestamp": now_ms - 60_000,
            "attributes": {
                "country": rng.choice(COUNTRIES),
                "plan": rng.choice(PLANS),
                "age": rng.randint(16, MAX_AGE),
            },
        }
        yield Message("profiles", user.encode(), orjson.dumps(record))


def engagements(count: int, seed: int, live: int | None = None) -> list[dict[str, Any]]:
    """Return `count` active engagements: ~10% on session_start, the rest on custom events.

    With `live` below `count`, only the first `live` can deliver: they are the same
    documents whatever `count`. The others are candidates like them (triggers, property and
    attribute filters drawn alike) that the matching gives an outcome and never a delivery,
    each failing one check in turn (an ended schedule, an audience no user is in, an event
    count never reached, a 0% sample). The share of events that deliver is then the same
    at every catalog size, so that throughput across sizes measures the matching alone.
    """
    live = count if live is None else min(live, count)
    rng = random.Random(f"{seed}:engagements")
    documents = [_engagement(rng, index) for index in range(live)]
    crowd_rng = random.Random(f"{seed}:never-delivering")
    for index in range(live, count):
        document = _engagement(crowd_rng, index)
        _never_deliver(document, index)
        documents.append(document)
    return documents


def _engagement(rng: random.Random, index: int) -> dict[str, Any]:
    document: dict[str, Any] = {
        "id": f"bench-{index:05d}",
        "name": f"Bench engagement {index}",
        "status": "active",
        "priority": rng.randint(0, 100),
        "message": {"title": f"Bench message {index}", "body": "Hello from the benchmark"},
    }
    if rng.random() < SESSION_SHARE_OF_ENGAGEMENTS:
        document["trigger"] = {"event": "session_start"}
    else:
        trigger: dict[str, Any] = {"event": "custom", "name": rng.choice(EVENT_NAMES)}
        if rng.random() < 0.6:
            trigger["where"] = [_property_filter(rng)]
        document["trigger"] = trigger
    filters = [_attribute_filter(rng) for _ in range(rng.choice((0, 1, 1, 2)))]
    document["audience"] = {"filters": filters, "percent": rng.choice((100, 100, 50, 20, 5))}
    if rng.random() < 0.2:
        document["ignore_frequency_caps"] = True
    if rng.random() < 0.5:
        document["reeligibility"] = {"after_seconds": rng.choice((60, 600, 3600))}
    return document


def _never_deliver(document: dict[str, Any], index: int) -> None:
    """Make `document` fail one check for every event, the check chosen by `index`."""
    audience = document["audience"]
    cause = index % 4
    if cause == 0:
        document["schedule"] = {"end": ENDED}
    elif cause == 1:
        audience["filters"].append({"attribute": "age", "op": "gt", "value": MAX_AGE})
    elif cause == 2:
        # Nobody sends this event: its count stays 0, and no user's state grows with it.
        count = {"event": NEVER_SENT, "op": "gte", "count": 1, "within_seconds": 3600}
        audience["filters"].append(count)
    else:
        audience["percent"] = 0


def _property_filter(rng: random.Random) -> dict[str, Any]:
    if rng.random() < 0.5:
        return {"property": "price", "op": "gte", "value": rng.choice((10, 50, 100, 200))}
    return {"property": "category", "op": "in", "value": rng.sample(CATEGORIES, 2)}


def _attribute_filter(rng: random.Random) -> dict[str, Any]:
    choice = rng.randrange(3)
    if choice == 0:
        return {"attribute": "country", "op": "in", "value": rng.sample(COUNTRIES, 3)}
    if choice == 1:
        return {"attribute": "plan", "op": "eq", "value": rng.choice(PLANS)}
    return {"attribute": "age", "op": "gte", "value": rng.choice((18, 25, 40))}


class EventSource:
    """Events for the bench users: ~70% custom events over 50 names, the rest session_start."""

    def __init__(self, users: int, seed: int) -> None:
        self._users = users
        self._rng = random.Random(f"{seed}:events")
        self._count = 0

    def next(self, now_ms: int) -> Message:
        """Return the next event, stamped `now_ms`."""
        rng = self._rng
        number = self._count
        self._count += 1
        user = user_id(rng.randrange(self._users))
        if rng.random() < CUSTOM_SHARE_OF_EVENTS:
            record: dict[str, Any] = {
                "event_id": f"bench-e{number}",
                "user_id": user,
                "name": rng.choice(EVENT_NAMES),
                "timestamp": now_ms,
                "properties": {
                    "price": rng.choice((5, 20, 80, 150, 400)),
                    "category": rng.choice(CATEGORIES),
                },
            }
            return Message("custom-events", user.encode(), orjson.dumps(record))
        record = {
            "event_id": f"bench-e{number}",
            "user_id": user,
            "type": "session_start",
            "timestamp": now_ms,
            "session_id": f"bench-s{number}",
        }
        return Message("sessions", user.encode(), orjson.dumps(record))

    def batch(self, count: int, now_ms: int) -> list[Message]:
        """Return the next `count` events, all stamped `now_ms`."""
        return [self.next(now_ms) for _ in range(count)]

    def stream(self, count: int, now_ms: int) -> Iterator[Message]:
        """Yield the next `count` events, all stamped `now_ms`, as they are consumed."""
        for _ in range(count):
            yield self.next(now_ms)
