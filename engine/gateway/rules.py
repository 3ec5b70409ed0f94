"""The gateway's pure rules: which deliveries are offered, and what a resumed stream replays.

No Kafka, aiohttp or clock here: the time is passed in (epoch milliseconds).

A delivery is *offered* while it is not shown (no interaction seen for its delivery_id)
and not expired (``expires_at`` absent or still ahead). ``/messages`` lists the offered
ones newest first, at most ``limit``.

Event ids are ``P-O``: the partition and offset of the delivery on the `deliveries`
topic. Deliveries are keyed by user id, so all of one user's deliveries are on one
partition, in offset order: a stream resumed after ``P-O`` replays the user's held
deliveries of partition ``P`` with an offset above ``O``, oldest first. Only if the topic
were repartitioned could a user's deliveries be on another partition; those are replayed
when their record is later (Kafka timestamp) than the one of ``P-O`` (all of them, if the
gateway does not hold ``P-O``): a possible repeat, never a loss.
"""

from __future__ import annotations

import re
from collections.abc import Container, Iterable
from dataclasses import dataclass

# Event ids the gateway writes: "partition-offset", both non-negative integers.
_EVENT_ID = re.compile(r"^(0|[1-9][0-9]{0,8})-(0|[1-9][0-9]{0,18})$")
DEFAULT_LIMIT = 20
MAX_LIMIT = 50


@dataclass(frozen=True, slots=True, order=True)
class EventId:
    """Where a delivery is on the `deliveries` topic."""

    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.partition}-{self.offset}"


def parse_event_id(text: str) -> EventId | None:
    """Return the event id written as ``P-O``, or None if ``text`` is no such id."""
    match = _EVENT_ID.match(text.strip())
    if match is None:
        return None
    return EventId(int(match[1]), int(match[2]))


@dataclass(frozen=True, slots=True)
class Held:
    """One delivery the gateway holds: what the rules need, and the Message JSON to send."""

    event_id: EventId
    delivery_id: str
    created_ms: int  # created_at
    expires_ms: int | None  # expires_at, if any
    record_ms: int  # the record's Kafka timestamp
    body: bytes  # the delivery record plus "event_id", compact JSON on one line

    @property
    def order(self) -> tuple[int, int, int]:
        """Sort key, oldest first: creation time, then position on the topic."""
        return (self.created_ms, self.event_id.partition, self.event_id.offset)


def is_expired(held: Held, now_ms: int) -> bool:
    """Return whether the delivery's expires_at has passed."""
    return held.expires_ms is not None and held.expires_ms <= now_ms


def is_offered(held: Held, shown: Container[str], now_ms: int) -> bool:
    """Return whether the delivery may be shown: not shown yet, not expired."""
    return held.delivery_id not in shown and not is_expired(held, now_ms)


def pending(held: Iterable[Held], shown: Container[str], now_ms: int, limit: int) -> list[Held]:
    """Return the offered deliveries, newest first, at most ``limit``."""
    offered = [entry for entry in held if is_offered(entry, shown, now_ms)]
    offered.sort(key=lambda entry: entry.order, reverse=True)
    return offered[: max(limit, 0)]


def newest_event_id(held: Iterable[Held]) -> EventId | None:
    """Return the event id of the newest delivery held (offered or not), None if none.

    A stream opened with it as its last event id misses nothing /messages did not list.
    """
    newest = max(held, key=lambda entry: entry.order, default=None)
    return newest.event_id if newest is not None else None


def is_after(held: Held, cursor: EventId, cursor_record_ms: int | None) -> bool:
    """Return whether a delivery comes after the cursor (see the module's docstring)."""
    if held.event_id.partition == cursor.partition:
        return held.event_id.offset > cursor.offset
    return cursor_record_ms is None or held.record_ms > cursor_record_ms


def replay_after(
    held: Iterable[Held], cursor: EventId, shown: Container[str], now_ms: int
) -> list[Held]:
    """Return what a stream resumed after ``cursor`` is sent first: the offered deliveries
    after it, oldest first."""
    entries = list(held)
    at_cursor = next((entry for entry in entries if entry.event_id == cursor), None)
    cursor_ms = at_cursor.record_ms if at_cursor is not None else None
    replay = [
        entry
        for entry in entries
        if is_after(entry, cursor, cursor_ms) and is_offered(entry, shown, now_ms)
    ]
    replay.sort(key=lambda entry: entry.order)
    return replay


def parse_limit(text: str | None) -> int | None:
    """Return the number of messages asked for (default 20, at most 50), None if invalid."""
    if text is None or text == "":
        return DEFAULT_LIMIT
    if not text.isascii() or not text.isdigit() or len(text) > 6 or int(text) < 1:
        return None
    return min(int(text), MAX_LIMIT)


class Cursor:
    """What one stream has sent: the highest offset per partition, so that a delivery is
    never sent twice on it, whether replayed or pushed live."""

    __slots__ = ("_sent",)

    def __init__(self, start: EventId | None = None) -> None:
        self._sent: dict[int, int] = {}
        if start is not None:
            self._sent[start.partition] = start.offset

    def admits(self, held: Held) -> bool:
        """Return whether ``held`` was not sent yet (it is past what was sent)."""
        return held.event_id.offset > self._sent.get(held.event_id.partition, -1)

    def advance(self, held: Held) -> None:
        """Record that ``held`` was sent."""
        partition, offset = held.event_id.partition, held.event_id.offset
        if offset > self._sent.get(partition, -1):
            self._sent[partition] = offset
