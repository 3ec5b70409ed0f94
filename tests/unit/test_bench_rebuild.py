"""`declic bench`'s rebuild phase: its report and its measures, no broker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from engine.bench.measure import metric_total
from engine.bench.report import combine_runs, mark_rebuild_target, render_table, write_json


def _results(rebuild_seconds: float | None) -> dict[str, Any]:
    results: dict[str, Any] = {
        "started_at": "now",
        "options": {"users": 1, "engagements": 1, "events": 1, "partitions": 1},
        "engine": {"events_per_second": 1.0, "peak_rss_bytes": 1, "state_bytes": 1},
        "ceiling": {"events_per_second": 1.0},
        "floor": {"events_per_second": 1.0},
        "engine_over_floor": 1.0,
        "engine_over_ceiling": 1.0,
    }
    if rebuild_seconds is not None:
        rebuild = {
            "seconds": rebuild_seconds,
            "peak_rss_bytes": 300 * 1024 * 1024,
            "changelog_records": 1_000_000.0,
        }
        mark_rebuild_target(rebuild)
        results["rebuild"] = rebuild
    return results


def _row(table: str, label: str) -> str:
    [row] = [line for line in table.splitlines() if line.startswith(label)]
    return row[len(label) :].strip()


def test_the_table_shows_the_rebuild_figures_and_its_target() -> None:
    table = render_table(_results(3.64))
    assert _row(table, "rebuild s (empty disk to serving)") == "3.6 (< 30 s: met)"
    assert _row(table, "peak RSS MiB (rebuild)") == "300.0"
    assert _row(table, "changelog records replayed") == "1,000,000"
    slow = render_table(_results(45.0))
    assert _row(slow, "rebuild s (empty disk to serving)") == "45.0 (< 30 s: missed)"


def test_without_the_rebuild_phase_the_table_has_no_rebuild_row() -> None:
    assert "rebuild" not in render_table(_results(None))


def test_the_json_holds_the_rebuild_figures_and_the_verdict(tmp_path: Path) -> None:
    path = tmp_path / "bench.json"
    write_json(_results(31.0), path)
    rebuild = orjson.loads(path.read_bytes())["rebuild"]
    assert rebuild["seconds"] == 31.0 and rebuild["target_seconds"] == 30.0
    assert rebuild["target_met"] is False


def test_runs_report_the_median_rebuild_and_judge_the_target_on_it() -> None:
    combined = combine_runs([_results(20.0), _results(50.0), _results(25.0)])
    assert combined["rebuild"]["seconds"] == 25.0
    assert combined["rebuild"]["target_met"] is True
    combined = combine_runs([_results(35.0), _results(40.0), _results(10.0)])
    assert combined["rebuild"]["target_met"] is False  # median 35 s, though the last run met it
    assert [run["rebuild_seconds"] for run in combined["runs"]] == [35.0, 40.0, 10.0]


def test_a_counter_is_summed_over_its_labels() -> None:
    page = "\n".join(
        [
            "# HELP declic_state_recovery_records_total Changelog records replayed",
            "# TYPE declic_state_recovery_records_total counter",
            "declic_state_recovery_records_total 120.0",
            'declic_state_recovery_records_total{partition="1"} 5.0',
            "declic_state_recovery_records_created 1.7e+09",
        ]
    )
    assert metric_total(page, "declic_state_recovery_records_total") == 125.0
    assert metric_total(page, "declic_missing_total") == 0.0
