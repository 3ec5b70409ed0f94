"""Compile an engagement's schedule: absolute or local-time bounds and daily hours.

* ``local_time`` false: ``start``/``end`` carry an offset and are instants; the event's
  timestamp must be in ``[start, end)``.
* ``local_time`` true: ``start``/``end`` have no offset and are wall-clock times in the
  user's zone (see ``local_time.user_zone``); the event's local wall clock must be in
  ``[start, end)``.
* ``hours`` ``{"from": "HH:MM", "to": "HH:MM"}``: the time of day (local with
  ``local_time``, else UTC) must be in ``[from, to)``; ``from > to`` wraps past midnight
  (22:00-06:00 means from 22:00 to 06:00 the next morning). ``from == to`` is refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from engine.core.fields import InvalidField
from engine.core.local_time import MS_PER_DAY
from engine.core.timestamps import MAX_EPOCH_MS, MIN_EPOCH_MS, parse_timestamp
from engine.errors import InvalidRecord

OPEN_START: Final = MIN_EPOCH_MS
OPEN_END: Final = MAX_EPOCH_MS + 1
_LOCAL_DATE_TIME: Final = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?\Z")
_HOUR_MINUTE: Final = re.compile(r"([01]\d|2[0-3]):([0-5]\d)\Z")


@dataclass(frozen=True, slots=True)
class ClockRules:
    """Wall-clock conditions: local-time bounds and/or daily hours (``hours_from_ms`` -1: none)."""

    local_time: bool
    start_wall_ms: int
    end_wall_ms: int
    hours_from_ms: int
    hours_to_ms: int

    def holds(self, wall_ms: int) -> bool:
        """Return whether wall-clock time ``wall_ms`` is inside the bounds and the hours."""
        if not self.start_wall_ms <= wall_ms < self.end_wall_ms:
            return False
        start = self.hours_from_ms
        if start < 0:
            return True
        in_day = wall_ms % MS_PER_DAY
        end = self.hours_to_ms
        if start < end:
            return start <= in_day < end
        return in_day >= start or in_day < end  # the window wraps past midnight


@dataclass(frozen=True, slots=True)
class Schedule:
    """A compiled schedule; absolute bounds use sentinels for open sides."""

    start_ms: int | None  # absolute bounds as written (None when open or local)
    end_ms: int | None
    window_start_ms: int
    window_end_ms: int
    clock: ClockRules | None  # None: no local time and no hours, the common case
    start_order_ms: int  # for priority ties: the start (wall ms when local), open = earliest


def _instant(value: object, field: str) -> int | None:
    if value is None:
        return None
    try:
        return parse_timestamp(value)
    except InvalidRecord as error:
        raise InvalidField(
            ("schedule", field), f"not a valid schedule {field}: {error.detail}"
        ) from None


def _wall(value: object, field: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _LOCAL_DATE_TIME.match(value):
        raise InvalidField(
            ("schedule", field),
            "must be a date-time without offset when local_time is true, "
            f"e.g. 2026-12-01T09:00:00, got {value!r}",
        )
    # Read as UTC: that is exactly the wall-ms encoding.
    try:
        return parse_timestamp(value + "Z")
    except InvalidRecord as error:
        detail = error.detail.replace(repr(value + "Z"), repr(value))
        raise InvalidField(("schedule", field), f"not a valid schedule {field}: {detail}") from None


def _time_of_day(hours: Mapping[str, object], field: str) -> int:
    value = hours.get(field)
    match = _HOUR_MINUTE.match(value) if isinstance(value, str) else None
    if match is None:
        raise InvalidField(
            ("schedule", "hours", field), f"must be HH:MM (00:00 to 23:59), got {value!r}"
        )
    return (int(match[1]) * 60 + int(match[2])) * 60_000


def _hours(spec: object) -> tuple[int, int]:
    if spec is None:
        return -1, -1
    if not isinstance(spec, Mapping):
        raise InvalidField(("schedule", "hours"), "must be an object")
    start, end = _time_of_day(spec, "from"), _time_of_day(spec, "to")
    if start == end:
        raise InvalidField(
            ("schedule", "hours", "to"), f"from and to must differ, both are {spec.get('to')}"
        )
    return start, end


def compile_schedule(spec: Mapping[str, object]) -> Schedule:
    """Compile a ``schedule`` object (possibly empty)."""
    local_time = spec.get("local_time", False)
    if not isinstance(local_time, bool):
        raise InvalidField(("schedule", "local_time"), "must be a boolean")
    read = _wall if local_time else _instant
    start, end = read(spec.get("start"), "start"), read(spec.get("end"), "end")
    if start is not None and end is not None and start >= end:
        raise InvalidField(
            ("schedule", "start"),
            f"must be before end ({spec.get('start')} is not before {spec.get('end')})",
        )
    hours_from, hours_to = _hours(spec.get("hours"))
    start_bound = OPEN_START if start is None else start
    end_bound = OPEN_END if end is None else end
    clock = None
    if local_time or hours_from >= 0:
        clock = ClockRules(
            local_time,
            start_bound if local_time else OPEN_START,
            end_bound if local_time else OPEN_END,
            hours_from,
            hours_to,
        )
    if local_time:
        return Schedule(None, None, OPEN_START, OPEN_END, clock, start_bound)
    return Schedule(start, end, start_bound, end_bound, clock, start_bound)
