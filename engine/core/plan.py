"""Per trigger key, the candidates as bits of an int, and indexes over their filters.

Candidate ``i`` of a plan (in evaluation order) is bit ``1 << i``: an int is a set of
candidates, and set operations on all candidates at once run in C. The lowest set bit is
the highest priority.

Filters are indexed by the key they read. Every filter reads one key only, so the filters
on a key agree for every event or profile with the same value under it: a `KeyIndex`
computes, once per distinct value, which candidates fail on that key, and remembers it. An
event then costs one lookup per key that the plan's filters read, instead of a call per
candidate and filter. Schedules, event counts and sampling have indexes of their own,
in ``checks``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Final

from engine.core.checks import CountIndex, SampleIndex, ScheduleIndex
from engine.core.counters import CountSpec
from engine.core.engagements import Engagement
from engine.core.operators import Atom, Predicate
from engine.core.schedule import OPEN_END, OPEN_START

# Distinct values remembered per key. Beyond (say, a filter on a user id), the failing
# candidates are still right, only computed for each event.
MEMO_LIMIT: Final = 1024
# Longest string value remembered (the input schemas allow no longer attribute or property
# strings): the memo never holds more than MEMO_LIMIT of these per key.
MEMO_VALUE_CHARS: Final = 256


def bit_indexes(bits: int) -> Iterator[int]:
    """Yield the indexes of the set bits of ``bits``, lowest first."""
    while bits:
        lowest = bits & -bits
        yield lowest.bit_length() - 1
        bits ^= lowest


class BitCounts:
    """How many times each bit index was set, over the masks added: a bit-sliced counter.

    Plane ``w`` holds bit ``w`` of every index's count, so adding a mask is a binary
    addition done on all indexes at once: a few int operations (about two planes on
    average), whatever the number of bits set.
    """

    __slots__ = ("_planes",)

    def __init__(self) -> None:
        """Start with every count at zero."""
        self._planes: list[int] = []

    def add(self, bits: int, weight: int = 0) -> None:
        """Add ``1 << weight`` to the count of every index set in ``bits``."""
        planes = self._planes
        carry = bits
        while carry:
            if weight >= len(planes):
                planes.extend([0] * (weight - len(planes)))
                planes.append(carry)
                return
            plane = planes[weight]
            planes[weight] = plane ^ carry
            carry &= plane
            weight += 1

    def merge(self, other: BitCounts) -> None:
        """Add ``other``'s counts."""
        for weight, plane in enumerate(other._planes):
            self.add(plane, weight)

    def counts(self) -> dict[int, int]:
        """Return the non-zero counts by bit index."""
        totals: dict[int, int] = {}
        for weight, plane in enumerate(self._planes):
            for index in bit_indexes(plane):
                totals[index] = totals.get(index, 0) + (1 << weight)
        return totals


class KeyIndex:
    """The candidates whose filters on one key fail, per value of that key."""

    __slots__ = ("_memo", "_tests", "key")

    def __init__(self, key: str, tests: Sequence[tuple[Predicate, int]]) -> None:
        """Index ``tests``: each distinct filter on ``key`` with the candidates using it."""
        self.key = key
        self._tests = tuple(tests)
        self._memo: dict[tuple[type, object], int] = {}

    def failing(self, values: Mapping[str, object]) -> int:
        """Return the candidates a filter on this key rejects for ``values``.

        Remembered for at most ``MEMO_LIMIT`` distinct values (the first seen), each a
        scalar and a string of at most ``MEMO_VALUE_CHARS``: the memo stays bounded whatever
        the events and profiles, and a plan lives as long as its catalog snapshot.
        """
        value = values.get(self.key)
        # The type is part of the key: 1, 1.0 and True hash alike but filters tell them apart.
        memo_key = (value.__class__, value)
        try:
            return self._memo[memo_key]
        except KeyError:
            failing = self._compute(values)
            if len(self._memo) < MEMO_LIMIT and not (
                value.__class__ is str and len(value) > MEMO_VALUE_CHARS
            ):
                self._memo[memo_key] = failing
            return failing
        except TypeError:  # an array or object: not hashable, not remembered
            return self._compute(values)

    def _compute(self, values: Mapping[str, object]) -> int:
        failing = 0
        for test, candidates in self._tests:
            if not test(values):
                failing |= candidates
        return failing


class FilterIndex:
    """The candidates whose filters (a conjunction per candidate) fail, over all keys."""

    __slots__ = ("_keys",)

    def __init__(self, atoms_by_candidate: Sequence[Sequence[Atom]]) -> None:
        """Index the filters of each candidate, given in candidate order."""
        by_key: dict[str, dict[bytes, tuple[Predicate, int]]] = {}
        for index, atoms in enumerate(atoms_by_candidate):
            for atom in atoms:
                same_filter = by_key.setdefault(atom.key, {})
                test, candidates = same_filter.get(atom.identity, (atom.test, 0))
                same_filter[atom.identity] = (test, candidates | 1 << index)
        self._keys = tuple(KeyIndex(key, list(tests.values())) for key, tests in by_key.items())

    def failing(self, values: Mapping[str, object]) -> int:
        """Return the candidates with at least one filter that rejects ``values``."""
        failing = 0
        for index in self._keys:
            failing |= index.failing(values)
        return failing


def _bits_where(flags: Iterable[bool]) -> int:
    """Return the int whose bit ``i`` is set when the ``i``-th flag is true."""
    bits = 0
    for index, flag in enumerate(flags):
        if flag:
            bits |= 1 << index
    return bits


def _bits_of(candidates: Iterable[tuple[int, Engagement]]) -> int:
    """Return the int whose bits are the indexes of (index, engagement) pairs."""
    bits = 0
    for index, _ in candidates:
        bits |= 1 << index
    return bits


class TriggerPlan:
    """Everything the matcher needs per trigger key, found with one lookup per event.

    Compared by identity: a plan belongs to one catalog snapshot.
    """

    __slots__ = (
        "audience",
        "candidates",
        "count_index",
        "count_spec",
        "counted",
        "delayed",
        "everyone",
        "inactive",
        "obeys_caps",
        "position",
        "sample_index",
        "sampled",
        "schedule_index",
        "scheduled",
        "uses_local_time",
        "where",
    )

    def __init__(self, candidates: tuple[Engagement, ...], count_spec: CountSpec | None) -> None:
        """Index ``candidates`` (in evaluation order); ``count_spec`` counts these events."""
        self.candidates = candidates
        self.count_spec = count_spec  # set when active event-count filters count these events
        # Some candidate has a local-time schedule: the user's zone is needed.
        self.uses_local_time = any(
            item.clock is not None and item.clock.local_time for item in candidates
        )
        self.everyone = (1 << len(candidates)) - 1
        self.inactive = _bits_where(not item.is_active for item in candidates)
        self.where = FilterIndex([item.where_atoms for item in candidates])
        self.audience = FilterIndex([item.audience_atoms for item in candidates])
        # Candidates whose schedule can exclude an event, their counts and their sampling:
        # each decided for all of them at once (see ``checks``).
        scheduled = [
            (index, item)
            for index, item in enumerate(candidates)
            if item.clock is not None
            or item.window_start_ms > OPEN_START
            or item.window_end_ms < OPEN_END
        ]
        self.scheduled = _bits_of(scheduled)
        self.schedule_index = ScheduleIndex(scheduled)
        counted = [(index, item) for index, item in enumerate(candidates) if item.count_filters]
        self.counted = _bits_of(counted)
        self.count_index = CountIndex(counted)
        self.delayed = _bits_where(item.delay_ms > 0 for item in candidates)
        sampled = [(index, item) for index, item in enumerate(candidates) if item.percent < 100]
        self.sampled = _bits_of(sampled)
        self.sample_index = SampleIndex(sampled)
        self.obeys_caps = _bits_where(not item.ignore_frequency_caps for item in candidates)
        self.position: Mapping[str, int] = {item.id: index for index, item in enumerate(candidates)}


NO_PLAN: Final = TriggerPlan((), None)
