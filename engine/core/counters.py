"""Event-count audience filters: "performed event E at least N times in the last T seconds".

A filter ``{"event": E, "op": op, "count": N, "within_seconds": T}`` holds when the number
of custom events named E with a timestamp in ``(t - T, t]`` (t: the current event, which is
itself counted first) compares to N with ``op``. The user state keeps, per counted name,
the most recent ``largest N + 1`` timestamps (enough to decide any comparison with N) and
drops those older than the longest window before the newest one; past
``MAX_COUNTED_TIMES`` timestamps in all, the oldest (by time, then name) are dropped too, so
that a user of a catalog counting many names keeps a bounded history (a count filter may
then undercount). ``MAX_COUNT`` and ``MAX_COUNT_FILTERS`` are stated again in
``schemas/engagement.schema.json``; a unit test holds them equal.
"""

from __future__ import annotations

import operator
from bisect import bisect_right, insort
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from engine.core.durations import duration_seconds
from engine.core.json_values import is_integer
from engine.errors import InvalidRecord

MAX_COUNT: Final = 1_000
# Event-count filters in one engagement's audience.
MAX_COUNT_FILTERS: Final = 10
# Counted event timestamps one user keeps, over every name: one filter at MAX_COUNT fits.
MAX_COUNTED_TIMES: Final = 1_024
_COMPARISONS: Final[dict[str, Callable[[int, int], bool]]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}


@dataclass(frozen=True, slots=True)
class CountFilter:
    """A compiled event-count condition."""

    event: str
    compare: Callable[[int, int], bool]
    count: int
    within_ms: int


@dataclass(frozen=True, slots=True)
class CountSpec:
    """What the state must keep for one counted event name."""

    longest_window_ms: int
    largest_count: int

    @property
    def keep(self) -> int:
        """Return how many recent timestamps decide every filter on this name."""
        return self.largest_count + 1


def _positive_int(spec: Mapping[str, object], field: str, low: int, high: int) -> int:
    value = spec.get(field)
    if not is_integer(value) or value < low:
        raise InvalidRecord(
            "invalid_engagement", f"event count {field} must be an integer >= {low}"
        )
    if value > high:
        raise InvalidRecord("invalid_engagement", f"event count {field} must be <= {high}")
    return value


def compile_count_filter(spec: Mapping[str, object]) -> CountFilter:
    """Compile one ``{"event", "op", "count", "within_seconds"}`` audience filter."""
    event = spec.get("event")
    if not isinstance(event, str) or not event:
        raise InvalidRecord("invalid_engagement", "event count filter needs an event name")
    op = spec.get("op")
    compare = _COMPARISONS.get(op) if isinstance(op, str) else None
    if compare is None:
        raise InvalidRecord(
            "invalid_engagement", f"event count op must be one of {sorted(_COMPARISONS)}"
        )
    count = _positive_int(spec, "count", 0, MAX_COUNT)
    within_seconds = duration_seconds(spec.get("within_seconds"), "event count within_seconds")
    return CountFilter(event, compare, count, within_seconds * 1000)


def check_count_filter_total(count: int) -> None:
    """Raise ``InvalidRecord`` when an audience has more than ``MAX_COUNT_FILTERS``."""
    if count > MAX_COUNT_FILTERS:
        raise InvalidRecord(
            "invalid_engagement",
            f"audience filters hold {count} event count filters, more than the "
            f"{MAX_COUNT_FILTERS} allowed",
        )


def merge_count_specs(filters: Iterable[CountFilter]) -> dict[str, CountSpec]:
    """Return, per event name, the longest window and the largest count of ``filters``."""
    specs: dict[str, CountSpec] = {}
    for item in filters:
        known = specs.get(item.event)
        if known is None:
            specs[item.event] = CountSpec(item.within_ms, item.count)
        else:
            specs[item.event] = CountSpec(
                max(known.longest_window_ms, item.within_ms), max(known.largest_count, item.count)
            )
    return specs


def record_occurrence(
    times_by_name: dict[str, list[int]],
    name: str,
    timestamp_ms: int,
    specs: Mapping[str, CountSpec],
) -> None:
    """Count one event ``name`` at ``timestamp_ms``; prune every name to what ``specs`` need."""
    times = times_by_name.get(name)
    if times is None:
        times = times_by_name[name] = []
    insort(times, timestamp_ms)
    for other in list(times_by_name):
        spec = specs.get(other)
        kept = times_by_name[other]
        if spec is None:
            del times_by_name[other]  # no active filter counts it any more
            continue
        stale = bisect_right(kept, kept[-1] - spec.longest_window_ms)
        excess = max(stale, len(kept) - spec.keep)
        if excess:
            del kept[:excess]
    excess = sum(len(kept) for kept in times_by_name.values()) - MAX_COUNTED_TIMES
    for _ in range(excess):
        _, oldest = min((kept[0], other) for other, kept in times_by_name.items())
        kept = times_by_name[oldest]
        del kept[0]
        if not kept:
            del times_by_name[oldest]


def counts_hold(
    filters: tuple[CountFilter, ...], times_by_name: Mapping[str, list[int]], timestamp_ms: int
) -> bool:
    """Return whether every count filter holds for an event at ``timestamp_ms``."""
    for item in filters:
        times = times_by_name.get(item.event)
        count = 0
        if times:
            count = bisect_right(times, timestamp_ms) - bisect_right(
                times, timestamp_ms - item.within_ms
            )
        if not item.compare(count, item.count):
            return False
    return True
