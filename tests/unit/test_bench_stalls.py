"""The bench reports the loop stalls of its fixed-rate phase, from the worker's histogram."""

from __future__ import annotations

import math

from engine.bench.measure import stall_buckets_in, stalls_between

BEFORE = {0.05: 100.0, 0.1: 100.0, 0.25: 102.0, 0.5: 103.0, 1.0: 103.0, math.inf: 103.0}


def test_stalls_are_counted_from_the_growth_of_the_histogram_only() -> None:
    # During the phase: 500 ticks on time, 4 between 100 and 250 ms, 1 between 0.5 and 1 s.
    after = {0.05: 600.0, 0.1: 600.0, 0.25: 606.0, 0.5: 607.0, 1.0: 608.0, math.inf: 608.0}
    assert stalls_between(BEFORE, after) == {"over_100ms": 5.0, "longest_under_seconds": 1.0}


def test_a_phase_without_a_long_stall_says_so() -> None:
    after = {bound: count + 50 for bound, count in BEFORE.items()}
    assert stalls_between(BEFORE, after) == {"over_100ms": 0.0, "longest_under_seconds": 0.05}


def test_a_stall_past_the_last_bound_is_longest_under_infinity() -> None:
    after = {**BEFORE, math.inf: 104.0}
    assert stalls_between(BEFORE, after) == {
        "over_100ms": 1.0,
        "longest_under_seconds": math.inf,
    }


def test_the_histogram_is_summed_over_the_processes_of_a_worker() -> None:
    page = "\n".join(
        [
            "# TYPE declic_loop_stall_seconds histogram",
            'declic_loop_stall_seconds_bucket{le="0.1"} 7.0',
            'declic_loop_stall_seconds_bucket{le="+Inf"} 8.0',
            'declic_loop_stall_seconds_bucket{process="0",le="0.1"} 3.0',
            'declic_loop_stall_seconds_bucket{le="+Inf",process="1"} 5.0',
            "declic_loop_stall_seconds_count 8.0",
        ]
    )
    assert stall_buckets_in(page) == {0.1: 10.0, math.inf: 13.0}
