"""Schedules, counts and sampling decided for all candidates at once equal the scalar rules.

Each index of ``engine.core.checks`` is compared with the rule written candidate by
candidate (as the README states it), on random plans: schedules with bounds the events
fall on, shared and distinct count filters, both hash versions and every sampled-candidate
count around the one where the numpy path takes over.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.core.bucketing import (
    AUDIENCE_SEED,
    in_percent,
    mixed_position,
    salt_of,
    user_hash,
)
from engine.core.checks import (
    VECTOR_MIN_CANDIDATES,
    CountIndex,
    SampleIndex,
    ScheduleIndex,
    mixed_positions,
)
from engine.core.engagements import Engagement, compile_engagement
from engine.core.local_time import MS_PER_DAY
from engine.core.timestamps import format_timestamp
from engine.schemas import apply_engagement_defaults

BASE_MS = 1_795_000_000_000
HOUR_MS = 3_600_000
NAMES = ("viewed", "bought")
U64 = st.integers(min_value=0, max_value=2**64 - 1)


def _compiled(index: int, extra: dict[str, Any]) -> Engagement:
    document: dict[str, Any] = {
        "id": f"e-{index:04d}",
        "status": "active",
        "trigger": {"event": "session_start"},
        "message": {"title": "hello"},
        **extra,
    }
    return compile_engagement(apply_engagement_defaults(document), 1)


# No deadline: the first example imports numpy, which a loaded machine can take over 200 ms.
@settings(deadline=None)
@given(U64, st.lists(U64, max_size=80))
def test_version_2_positions_computed_at_once_equal_mixed_position(
    hashed: int, salts: list[int]
) -> None:
    assert mixed_positions(hashed, salts) == [mixed_position(hashed, salt) for salt in salts]


def test_version_2_positions_at_once_hold_at_the_extremes() -> None:
    # The multiplications wrap modulo 2**64 exactly where Python's ints would grow.
    extremes = [0, 1, 2**63, 2**64 - 1, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB]
    for hashed in extremes:
        assert mixed_positions(hashed, extremes) == [
            mixed_position(hashed, salt) for salt in extremes
        ]


# ---- sampling --------------------------------------------------------------------------

PERCENTS = st.sampled_from([0, 0.001, 5, 20, 50, 99.999, 100])


@st.composite
def _sampled_plans(draw: st.DrawFn) -> tuple[list[tuple[int, Engagement]], int, str]:
    """Sampled candidates at spread indexes, a subset in the running, a user id.

    The number of version 2 candidates in the running is drawn around the count where
    the numpy path takes over, and sometimes far above it.
    """
    wanted = draw(
        st.one_of(
            st.integers(VECTOR_MIN_CANDIDATES - 2, VECTOR_MIN_CANDIDATES + 2),
            st.integers(0, 3 * VECTOR_MIN_CANDIDATES),
        )
    )
    legacy = draw(st.integers(0, 4))
    spare = draw(st.integers(0, 6))  # version 2 candidates out of the running
    candidates = []
    index = draw(st.integers(0, 3))  # the first sampled candidate need not be index 0
    versions = draw(st.permutations([2] * (wanted + spare) + [1] * legacy))
    for version in versions:  # the two versions interleaved
        audience = {"filters": [], "percent": draw(PERCENTS), "hash_version": version}
        candidates.append((index, _compiled(index, {"audience": audience})))
        index += draw(st.integers(1, 3))  # unsampled candidates in between
    v2 = [index for index, item in candidates if item.hash_version == 2]
    running_v2 = draw(st.permutations(v2))[:wanted]
    running = {index for index, item in candidates if item.hash_version == 1} | set(running_v2)
    if draw(st.booleans()):
        running |= set(range(index + 2))  # bits of unsampled candidates are ignored
    bits = sum(1 << index for index in running)
    return candidates, bits, draw(st.text(min_size=1, max_size=12))


def _sampled_out_one_by_one(
    candidates: list[tuple[int, Engagement]], bits: int, user_id: str
) -> int:
    failing = 0
    for index, item in candidates:
        if bits >> index & 1 and not in_percent(
            item.percent, AUDIENCE_SEED, item.id, user_id, item.hash_version
        ):
            failing |= 1 << index
    return failing


@settings(max_examples=300, deadline=None)
@given(_sampled_plans())
def test_sampling_all_at_once_equals_each_candidate_in_percent(
    plan: tuple[list[tuple[int, Engagement]], int, str],
) -> None:
    candidates, bits, user_id = plan
    index = SampleIndex(candidates)
    expected = _sampled_out_one_by_one(candidates, bits, user_id)
    assert index.failing(bits, user_id.encode()) == expected
    # The numpy pass alone, over every version 2 candidate, whatever their number.
    every_v2 = sum(1 << i for i, item in candidates if item.hash_version == 2)
    assert index.mixed_failing(user_hash(user_id.encode())) == _sampled_out_one_by_one(
        candidates, every_v2, user_id
    )


def test_sampling_gives_the_same_answers_on_both_sides_of_the_switch() -> None:
    for running in range(VECTOR_MIN_CANDIDATES - 3, VECTOR_MIN_CANDIDATES + 4):
        candidates = [
            (index, _compiled(index, {"audience": {"percent": 50, "hash_version": 2}}))
            for index in range(running)
        ]
        index = SampleIndex(candidates)
        bits = (1 << running) - 1
        for number in range(200):
            user_id = f"user-{number}"
            assert index.failing(bits, user_id.encode()) == _sampled_out_one_by_one(
                candidates, bits, user_id
            )


def test_salts_are_the_engagements_version_2_salts() -> None:
    item = _compiled(7, {"audience": {"percent": 50, "hash_version": 2}})
    assert item.sample_salt == salt_of(AUDIENCE_SEED, item.id)


# ---- schedules --------------------------------------------------------------------------

# Offsets from BASE_MS: events fall on, just before and just after these bounds.
OFFSETS = [-2 * HOUR_MS, -HOUR_MS, -1, 0, 1, HOUR_MS, 30 * HOUR_MS]
HOURS = ["00:00", "06:00", "09:30", "17:00", "22:00", "23:59"]


@st.composite
def _schedules(draw: st.DrawFn) -> dict[str, Any]:
    schedule: dict[str, Any] = {}
    local = draw(st.booleans())
    bounds = sorted(draw(st.lists(st.sampled_from(OFFSETS), min_size=2, max_size=2, unique=True)))
    for field, offset in zip(("start", "end"), bounds, strict=True):
        if draw(st.booleans()):
            text = format_timestamp(BASE_MS + offset)
            schedule[field] = text[:-1] if local else text
    if draw(st.booleans()):
        start, end = draw(st.lists(st.sampled_from(HOURS), min_size=2, max_size=2, unique=True))
        schedule["hours"] = {"from": start, "to": end}
    if local:
        schedule["local_time"] = True
    return schedule


def _outside_one_by_one(item: Engagement, timestamp_ms: int, wall_ms: int) -> bool:
    """The schedule rule of the README, for one candidate."""
    if not item.window_start_ms <= timestamp_ms < item.window_end_ms:
        return True
    clock = item.clock
    if clock is None:
        return False
    at = wall_ms if clock.local_time else timestamp_ms
    if not clock.start_wall_ms <= at < clock.end_wall_ms:
        return True
    start, end = clock.hours_from_ms, clock.hours_to_ms
    if start < 0:
        return False
    in_day = at % MS_PER_DAY
    inside = start <= in_day < end if start < end else in_day >= start or in_day < end
    return not inside


@settings(max_examples=150, deadline=None)
@given(
    st.lists(_schedules(), min_size=1, max_size=12),
    st.lists(
        st.tuples(
            st.sampled_from(OFFSETS),
            st.integers(-1, 1),
            st.sampled_from([0, -HOUR_MS, 9 * HOUR_MS, -14 * HOUR_MS]),
        ),
        min_size=1,
        max_size=40,
    ),
)
def test_schedules_all_at_once_equal_each_candidate_checked(
    schedules: list[dict[str, Any]], events: list[tuple[int, int, int]]
) -> None:
    candidates = [
        (2 * number, _compiled(number, {"schedule": spec})) for number, spec in enumerate(schedules)
    ]
    index = ScheduleIndex(candidates)
    # Several events per interval: the remembered sets are read back, not only computed.
    for offset, nudge, zone_ms in [*events, *events]:
        timestamp_ms = BASE_MS + offset + nudge
        wall_ms = timestamp_ms + zone_ms
        expected = sum(
            1 << position
            for position, item in candidates
            if _outside_one_by_one(item, timestamp_ms, wall_ms)
        )
        assert index.failing(timestamp_ms, wall_ms) == expected


# ---- event counts ------------------------------------------------------------------------

COUNT_FILTERS = st.fixed_dictionaries(
    {
        "event": st.sampled_from(NAMES),
        "op": st.sampled_from(["eq", "ne", "gt", "gte", "lt", "lte"]),
        "count": st.integers(0, 3),
        "within_seconds": st.sampled_from([1, 60, 3600]),
    }
)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.lists(COUNT_FILTERS, min_size=1, max_size=3), min_size=1, max_size=10),
    st.lists(st.lists(st.tuples(st.sampled_from(NAMES), st.integers(0, 4_000_000)), max_size=8)),
)
def test_counts_all_at_once_equal_each_candidates_filters(
    filters: list[list[dict[str, Any]]], histories: list[list[tuple[str, int]]]
) -> None:
    candidates = [
        (number, _compiled(number, {"audience": {"filters": spec}}))
        for number, spec in enumerate(filters)
    ]
    index = CountIndex(candidates)
    for history in [*histories, *histories]:
        times: dict[str, list[int]] = {}
        for name, back_ms in history:
            times.setdefault(name, []).append(BASE_MS - back_ms)
        for kept in times.values():
            kept.sort()
        expected = 0
        for number, item in candidates:
            for count_filter in item.count_filters:
                kept = times.get(count_filter.event, [])
                count = sum(BASE_MS - count_filter.within_ms < at <= BASE_MS for at in kept)
                if not count_filter.compare(count, count_filter.count):
                    expected |= 1 << number
        assert index.failing(times, BASE_MS) == expected
