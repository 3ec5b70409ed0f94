"""Schedules, event counts and sampling decided for all of a plan's candidates at once.

Each index is built once per trigger plan and answers with a set of candidates (bits of
an int, see ``plan``), at a cost per event that depends on the event and the user rather
than on how many candidates are in the running:

* `ScheduleIndex`: a schedule's outcome only changes at its bounds, so the sorted bounds
  of all candidates cut time into intervals over which the failing set is constant; an
  event costs a bisection and a lookup of the interval's set, remembered once computed.
* `CountIndex`: filters on the same event name and window share one count per event, and
  the failing set per count is remembered.
* `SampleIndex`: hash version 2 positions of every candidate from the user's hash at
  once (numpy, whose uint64 arithmetic wraps like the 64-bit finalizer), above a number
  of candidates where that beats the scalar loop. Version 1 (legacy, a SHA-256 per
  candidate) keeps its scalar path.

Every answer is exact: tests/unit/test_vector_checks.py compares each index with the
rule written candidate by candidate.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Final

from engine.core.bucketing import LEGACY_HASH_VERSION, mixed_position, position_of, user_hash
from engine.core.engagements import Engagement
from engine.core.local_time import MS_PER_DAY

# Intervals (schedules) remembered per plan; past it, the set is computed for each event.
MEMO_LIMIT: Final = 1024
# Version 2 sampled candidates in the running from which one numpy pass beats the scalar
# loop: the pass costs about 7 µs whatever the candidates (a dozen numpy calls), a mixing
# step in Python about 0.5 µs (measured on SampleIndex alone, 4 to 1,000 candidates).
VECTOR_MIN_CANDIDATES: Final = 16

if TYPE_CHECKING:  # numpy is imported when a plan first needs it: not by every command
    import numpy as np
    import numpy.typing as npt

    _U64 = npt.NDArray[np.uint64]

_MAX_U64: Final = 2**64 - 1


def _bits(indexes: Sequence[int]) -> int:
    bits = 0
    for index in indexes:
        bits |= 1 << index
    return bits


class ScheduleIndex:
    """The candidates (of those given) outside their schedule at an event's instant."""

    __slots__ = ("_bounds", "_candidates", "_memo")

    def __init__(self, candidates: Sequence[tuple[int, Engagement]]) -> None:
        """Index the schedules of ``candidates``: (index in the plan, engagement) pairs."""
        self._candidates = tuple(candidates)
        utc: set[int] = set()
        utc_hours: set[int] = set()
        wall: set[int] = set()
        wall_hours: set[int] = set()
        for _, engagement in candidates:
            utc.update((engagement.window_start_ms, engagement.window_end_ms))
            clock = engagement.clock
            if clock is None:
                continue
            bounds, hours = (wall, wall_hours) if clock.local_time else (utc, utc_hours)
            bounds.update((clock.start_wall_ms, clock.end_wall_ms))
            if clock.hours_from_ms >= 0:
                hours.update((clock.hours_from_ms, clock.hours_to_ms))
        # Every bound where some candidate's outcome can change, per clock it reads.
        self._bounds = tuple(sorted(values) for values in (utc, utc_hours, wall, wall_hours))
        self._memo: dict[tuple[int, int, int, int], int] = {}

    def failing(self, timestamp_ms: int, wall_ms: int) -> int:
        """Return the candidates outside their schedule for an event at ``timestamp_ms``.

        ``wall_ms`` is the event's wall clock in the user's zone (read by local-time
        schedules). Between two consecutive bounds every comparison of every schedule
        gives the same answer, so the set computed for one instant of an interval is
        the set for all of them.
        """
        utc, utc_hours, wall, wall_hours = self._bounds
        key = (
            bisect_right(utc, timestamp_ms),
            bisect_right(utc_hours, timestamp_ms % MS_PER_DAY),
            bisect_right(wall, wall_ms),
            bisect_right(wall_hours, wall_ms % MS_PER_DAY),
        )
        failing = self._memo.get(key)
        if failing is None:
            failing = self.failing_one_by_one(timestamp_ms, wall_ms)
            if len(self._memo) < MEMO_LIMIT:
                self._memo[key] = failing
        return failing

    def failing_one_by_one(self, timestamp_ms: int, wall_ms: int) -> int:
        """Return what `failing` returns, checking each candidate's schedule in turn."""
        failing = 0
        for index, engagement in self._candidates:
            clock = engagement.clock
            if not engagement.window_start_ms <= timestamp_ms < engagement.window_end_ms or (
                clock is not None and not clock.holds(wall_ms if clock.local_time else timestamp_ms)
            ):
                failing |= 1 << index
        return failing


# (comparison, count, candidates using that filter) for one event name and window.
_CountTest = tuple[Callable[[int, int], bool], int, int]


class CountIndex:
    """The candidates (of those given) whose event-count filters fail for a user."""

    __slots__ = ("_groups",)

    def __init__(self, candidates: Sequence[tuple[int, Engagement]]) -> None:
        """Index the count filters of ``candidates``: (index in the plan, engagement) pairs."""
        groups: dict[tuple[str, int], dict[tuple[object, int], _CountTest]] = {}
        for index, engagement in candidates:
            for item in engagement.count_filters:
                tests = groups.setdefault((item.event, item.within_ms), {})
                identity = (item.compare, item.count)
                _, _, using = tests.get(identity, (item.compare, item.count, 0))
                tests[identity] = (item.compare, item.count, using | 1 << index)
        # Per (name, window): its tests, and the failing set per count, remembered.
        self._groups = tuple(
            (name, within_ms, tuple(tests.values()), dict[int, int]())
            for (name, within_ms), tests in groups.items()
        )

    def failing(self, times_by_name: Mapping[str, list[int]], timestamp_ms: int) -> int:
        """Return the candidates with a count filter that fails for an event at ``timestamp_ms``.

        A count is at most the timestamps the user keeps (``counters.MAX_COUNTED_TIMES``),
        which bounds what is remembered per name and window.
        """
        failing = 0
        for name, within_ms, tests, memo in self._groups:
            times = times_by_name.get(name)
            count = 0
            if times:
                count = bisect_right(times, timestamp_ms) - bisect_right(
                    times, timestamp_ms - within_ms
                )
            bits = memo.get(count)
            if bits is None:
                bits = 0
                for compare, threshold, using in tests:
                    if not compare(count, threshold):
                        bits |= using
                memo[count] = bits
            failing |= bits
        return failing


class SampleIndex:
    """The sampled candidates (percent below 100) that a user falls outside of."""

    __slots__ = ("_arrays", "_by_index", "_legacy_bits", "_mixed", "_never", "mixed_bits")

    def __init__(self, candidates: Sequence[tuple[int, Engagement]]) -> None:
        """Index ``candidates``: (index in the plan, engagement) pairs, all sampled."""
        mixed = [item for item in candidates if item[1].hash_version != LEGACY_HASH_VERSION]
        self.mixed_bits = _bits([index for index, _ in mixed])
        self._legacy_bits = _bits([index for index, _ in candidates]) ^ self.mixed_bits
        # Per candidate index: the version 1 prefix or the version 2 salt, and the threshold.
        self._by_index: dict[int, tuple[bytes, int, int]] = {
            index: (item.sample_prefix, item.sample_salt, item.sample_threshold)
            for index, item in candidates
        }
        # Thresholds of 0 (percent 0, or too small for any position): out whatever the user.
        self._never = _bits([index for index, item in mixed if item.sample_threshold == 0])
        self._mixed = tuple(mixed)
        self._arrays: tuple[int, _U64, _U64] | None = None
        if len(mixed) >= VECTOR_MIN_CANDIDATES:
            # Built (and numpy imported) with the plan, not at the event that first needs it.
            self._build_arrays()

    def failing(self, bits: int, user_key: bytes) -> int:
        """Return the candidates of ``bits`` that sample the user ``user_key`` (UTF-8) out."""
        failing = 0
        by_index = self._by_index
        legacy = bits & self._legacy_bits
        while legacy:  # version 1: a SHA-256 per candidate, as ever
            bit = legacy & -legacy
            legacy ^= bit
            prefix, _, threshold = by_index[bit.bit_length() - 1]
            if position_of(prefix, user_key) >= threshold:
                failing |= bit
        mixed = bits & self.mixed_bits
        if not mixed:
            return failing
        hashed = user_hash(user_key)
        if mixed.bit_count() >= VECTOR_MIN_CANDIDATES:
            return failing | (self.mixed_failing(hashed) & mixed)
        while mixed:
            bit = mixed & -mixed
            mixed ^= bit
            _, salt, threshold = by_index[bit.bit_length() - 1]
            if mixed_position(hashed, salt) >= threshold:
                failing |= bit
        return failing

    def mixed_failing(self, hashed: int) -> int:
        """Return every version 2 candidate that the user whose hash is ``hashed`` is outside."""
        import numpy as np

        offset, salts, limits = self._arrays or self._build_arrays()
        out = np.greater(_mix64(salts ^ np.uint64(hashed)), limits)
        packed = np.packbits(out, bitorder="little").tobytes()
        return int.from_bytes(packed, "little") << offset | self._never

    def _build_arrays(self) -> tuple[int, _U64, _U64]:
        """Return the salts and limits of the version 2 candidates, from the lowest index.

        A position fails when the mixed value (before the shift by 11) exceeds the limit
        ``(threshold << 11) - 1``; the other candidates in the span get the largest limit,
        which nothing exceeds (and thresholds of 0 are in ``_never``).
        """
        import numpy as np

        mixed = self._mixed
        offset = mixed[0][0] if mixed else 0
        span = mixed[-1][0] + 1 - offset if mixed else 0
        salts = np.zeros(span, dtype=np.uint64)
        limits = np.full(span, _MAX_U64, dtype=np.uint64)
        for index, item in mixed:
            salts[index - offset] = item.sample_salt
            if item.sample_threshold:
                limits[index - offset] = (item.sample_threshold << 11) - 1
        self._arrays = (offset, salts, limits)
        return self._arrays


def _mix64(z: _U64) -> _U64:
    """Apply the splitmix64 finalizer to every element of ``z``, in place; return ``z``.

    numpy's uint64 arithmetic wraps modulo 2**64, as the finalizer's does.
    """
    z ^= z >> 30
    z *= 0xBF58476D1CE4E5B9
    z ^= z >> 27
    z *= 0x94D049BB133111EB
    z ^= z >> 31
    return z


def mixed_positions(hashed: int, salts: Sequence[int]) -> list[int]:
    """Return ``mixed_position(hashed, salt)`` for every salt, computed with numpy at once."""
    import numpy as np

    mixed = _mix64(np.array(salts, dtype=np.uint64) ^ np.uint64(hashed))
    return [int(value) for value in mixed >> 11]
