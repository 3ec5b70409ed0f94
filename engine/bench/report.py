"""The benchmark's output: a table for people, a JSON file for machines."""

from __future__ import annotations

import copy
import statistics
from pathlib import Path
from typing import Any

import orjson

MIB = 1024 * 1024
# Issue 15: a worker with an empty disk rebuilds its users' state and serves within this.
REBUILD_TARGET_SECONDS = 30.0


def render_table(results: dict[str, Any]) -> str:
    """Return the headline figures as an aligned two-column table."""
    options = results["options"]
    engine = results["engine"]
    fixed = engine.get("fixed_rate")
    runs = results.get("runs")
    rows: list[tuple[str, str]] = [
        ("engine events/s", _figure(engine["events_per_second"], runs, "engine_events_per_second")),
        (
            "ceiling events/s (raw aiokafka)",
            _figure(results["ceiling"]["events_per_second"], runs, "ceiling_events_per_second"),
        ),
        (
            "floor events/s (plain Faust agent)",
            _figure(results["floor"]["events_per_second"], runs, "floor_events_per_second"),
        ),
        ("engine / floor", _figure(results["engine_over_floor"], runs, "engine_over_floor", 2)),
        (
            "engine / ceiling",
            _figure(results["engine_over_ceiling"], runs, "engine_over_ceiling", 2),
        ),
        # What the throughput includes besides matching: each delivery is several records.
        (
            "deliveries per event",
            _figure(engine.get("deliveries_per_event", 0.0), runs, "deliveries_per_event", 2),
        ),
    ]
    if fixed is None:
        rows.append(("latency p50 / p99 ms", "n/a (use --rate)"))
    elif "latency_ms_p50" in fixed:
        rows.append(
            (
                f"latency p50 / p99 ms at {fixed['rate']:g}/s",
                f"{_figure(fixed['latency_ms_p50'], runs, 'latency_ms_p50')} / "
                f"{_figure(fixed['latency_ms_p99'], runs, 'latency_ms_p99')}"
                f" ({fixed['deliveries']} deliveries)",
            )
        )
    else:
        rows.append(("latency p50 / p99 ms", "n/a (no delivery at fixed rate)"))
    if fixed is not None and "loop_stalls" in fixed:
        stalls = fixed["loop_stalls"]
        rows.append(
            (
                "loop stalls at fixed rate",
                f"{stalls['over_100ms']:,.0f} over 100 ms, the longest under "
                f"{stalls['longest_under_seconds']:g} s",
            )
        )
    loaded = engine.get("fixed_rate_diagnose")
    if loaded is not None:
        rows.append(_diagnose_row(loaded))
    rows += [
        ("peak RSS MiB (worker)", f"{engine['peak_rss_bytes'] / MIB:,.1f}"),
        ("state size MiB (data dir)", f"{engine['state_bytes'] / MIB:,.1f}"),
        *_rebuild_rows(results.get("rebuild")),
        *_cpu_rows(engine, results.get("scaling")),
        ("users", f"{options['users']:,}"),
        ("engagements", _engagements_label(options)),
        ("events", f"{options['events']:,}"),
        ("partitions", f"{options['partitions']}"),
    ]
    if runs:
        rows.append(("runs (figures are medians)", f"{len(runs)}"))
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label:<{width}}  {value}" for label, value in rows)


def _figure(value: float, runs: list[dict[str, float]] | None, name: str, decimals: int = 0) -> str:
    """Return `value`, and with several runs the spread of the runs' own figures."""
    text = f"{value:,.{decimals}f}"
    figures = [run[name] for run in runs or () if name in run]
    if len(figures) > 1:
        text += f" ({min(figures):,.{decimals}f}-{max(figures):,.{decimals}f})"
    return text


def _engagements_label(options: dict[str, Any]) -> str:
    live = options.get("live_engagements")
    if live is None or live >= options["engagements"]:
        return f"{options['engagements']:,}"
    return f"{options['engagements']:,} ({live:,} can deliver)"


def _rebuild_rows(rebuild: dict[str, Any] | None) -> list[tuple[str, str]]:
    """Return the rows of the rebuild phase (none when it was skipped)."""
    if rebuild is None:
        return []
    verdict = "met" if rebuild["target_met"] else "missed"
    return [
        (
            "rebuild s (empty disk to serving)",
            f"{rebuild['seconds']:,.1f} (< {rebuild['target_seconds']:g} s: {verdict})",
        ),
        ("peak RSS MiB (rebuild)", f"{rebuild['peak_rss_bytes'] / MIB:,.1f}"),
        ("changelog records replayed", f"{rebuild['changelog_records']:,.0f}"),
    ]


def _cpu_rows(engine: dict[str, Any], scaling: dict[str, Any] | None) -> list[tuple[str, str]]:
    """Return who used the cores while events were read, and the scaling of --workers."""
    from engine.bench.cpu import describe

    rows = []
    processes = engine.get("workers", 1)
    if scaling is not None:
        one = scaling["one_process_input_records_per_second"]
        many = scaling["input_records_per_second"]
        ratio = f"{scaling['ratio']:.2f}x" if scaling["ratio"] else "n/a"
        rows.append(
            (
                f"input records/s, 1 -> {processes} processes",
                f"{one:,.0f} -> {many:,.0f} ({ratio})",
            )
        )
        rows.append(("cores used, 1 process", describe(scaling["cpu_one_process"])))
    if "cpu" in engine:
        rows.append((f"cores used, {processes} process(es)", describe(engine["cpu"])))
    return rows


def mark_rebuild_target(rebuild: dict[str, Any]) -> None:
    """Record in ``rebuild`` the target on its seconds and whether it was met."""
    rebuild["target_seconds"] = REBUILD_TARGET_SECONDS
    rebuild["target_met"] = rebuild["seconds"] < REBUILD_TARGET_SECONDS


def _diagnose_row(fixed: dict[str, Any]) -> tuple[str, str]:
    """Return the row of the fixed-rate phase run while clients requested /diagnose."""
    diagnose = fixed["diagnose"]
    label = f"latency p50 / p99 ms at {fixed['rate']:g}/s"
    label += f", {diagnose['clients']} /diagnose clients"
    served = f"{diagnose['requests']:,} diagnose requests served"
    if "request_ms_p50" in diagnose:
        p50, p99 = diagnose["request_ms_p50"], diagnose["request_ms_p99"]
        served += f", each {p50:,.0f} / {p99:,.0f} ms"
    errors = sum(diagnose["errors"].values())
    if errors:
        served += f", {errors:,} failed"
    if "latency_ms_p50" not in fixed:
        return label, f"n/a (no delivery; {served})"
    return (
        label,
        f"{fixed['latency_ms_p50']:,.0f} / {fixed['latency_ms_p99']:,.0f}"
        f" ({fixed['deliveries']} deliveries; {served})",
    )


# Headline figures: name in the per-run list, and path in the results.
HEADLINE_FIGURES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("engine_events_per_second", ("engine", "events_per_second")),
    ("ceiling_events_per_second", ("ceiling", "events_per_second")),
    ("floor_events_per_second", ("floor", "events_per_second")),
    ("engine_over_floor", ("engine_over_floor",)),
    ("engine_over_ceiling", ("engine_over_ceiling",)),
    ("deliveries_per_event", ("engine", "deliveries_per_event")),
    ("peak_rss_bytes", ("engine", "peak_rss_bytes")),
    ("state_bytes", ("engine", "state_bytes")),
    ("latency_ms_p50", ("engine", "fixed_rate", "latency_ms_p50")),
    ("latency_ms_p99", ("engine", "fixed_rate", "latency_ms_p99")),
    ("diagnose_load_latency_ms_p50", ("engine", "fixed_rate_diagnose", "latency_ms_p50")),
    ("diagnose_load_latency_ms_p99", ("engine", "fixed_rate_diagnose", "latency_ms_p99")),
    ("diagnose_requests", ("engine", "fixed_rate_diagnose", "diagnose", "requests")),
    ("rebuild_seconds", ("rebuild", "seconds")),
    (
        "scaling_one_process_input_records_per_second",
        ("scaling", "one_process_input_records_per_second"),
    ),
    ("scaling_ratio", ("scaling", "ratio")),
    ("rebuild_peak_rss_bytes", ("rebuild", "peak_rss_bytes")),
    ("rebuild_changelog_records", ("rebuild", "changelog_records")),
)


def _parent(results: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any] | None:
    """Return the mapping that holds the figure at ``path``, or None if it is absent."""
    node: Any = results
    for part in path[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
    return node if isinstance(node, dict) and path[-1] in node else None


def _headline(results: dict[str, Any]) -> dict[str, float]:
    return {
        name: parent[path[-1]]
        for name, path in HEADLINE_FIGURES
        if (parent := _parent(results, path)) is not None
    }


def combine_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Return the last run's results with each headline figure replaced by its median.

    ``runs`` in the result lists every run's own headline figures.
    """
    headlines = [_headline(run) for run in runs]
    combined = copy.deepcopy(runs[-1])
    for name, path in HEADLINE_FIGURES:
        parent = _parent(combined, path)
        if parent is not None and all(name in figures for figures in headlines):
            parent[path[-1]] = statistics.median(figures[name] for figures in headlines)
    if "rebuild" in combined:  # judged on the median, not on the last run
        mark_rebuild_target(combined["rebuild"])
    combined["runs"] = headlines
    return combined


def write_json(results: dict[str, Any], path: Path) -> None:
    """Write the results, time series included, as indented JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2) + b"\n")
