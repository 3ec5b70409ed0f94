"""Draw a bench run: throughput over time, and latency over time when --rate was used."""

from __future__ import annotations

import itertools
from collections import defaultdict
from pathlib import Path
from typing import Any

from engine.bench.measure import percentile
from engine.bench.workload import EVENT_TOPICS
from engine.errors import DeclicError


def throughput_points(series: list[dict[str, float]]) -> list[tuple[float, float]]:
    """Return (seconds, events/s) between consecutive samples of the committed counts."""
    points = []
    for before, after in itertools.pairwise(series):
        seconds = after["t"] - before["t"]
        if seconds <= 0:
            continue
        read = sum(after.get(topic, 0.0) - before.get(topic, 0.0) for topic in EVENT_TOPICS)
        points.append((after["t"], read / seconds))
    return points


def latency_points(
    latency_series: list[tuple[float, float]],
) -> list[tuple[float, float, float]]:
    """Return (second, p50 ms, p99 ms) of the deliveries made in each second."""
    by_second: dict[int, list[float]] = defaultdict(list)
    for moment, latency in latency_series:
        by_second[int(moment)].append(latency)
    points = []
    for second in sorted(by_second):
        values = by_second[second]
        points.append((float(second), percentile(values, 0.50), percentile(values, 0.99)))
    return points


def write_plot(results: dict[str, Any], path: Path) -> None:
    """Write a PNG of the run's throughput and, if measured, its latency."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot
    except ImportError:
        raise DeclicError("--plot needs matplotlib: pip install 'declic[plot]'") from None
    engine = results["engine"]
    fixed = engine.get("fixed_rate")
    panels = 2 if fixed and fixed.get("latency_series") else 1
    figure, axes = pyplot.subplots(panels, 1, figsize=(9, 3.5 * panels), squeeze=False)
    options = results["options"]
    figure.suptitle(
        f"declic bench: {options['users']:,} users, {options['engagements']:,} engagements, "
        f"{options['partitions']} partitions, {engine.get('workers', 1)} worker(s)"
    )
    throughput = axes[0][0]
    points = throughput_points(engine["series"])
    throughput.plot([t for t, _ in points], [rate for _, rate in points], label="engine")
    for name, style in (("ceiling", "--"), ("floor", ":")):
        throughput.axhline(results[name]["events_per_second"], linestyle=style, label=name)
    throughput.set_xlabel("seconds since the worker started measuring")
    throughput.set_ylabel("events/s committed")
    throughput.legend()
    if panels == 2:
        latency = axes[1][0]
        seconds = latency_points(fixed["latency_series"])
        latency.plot([s for s, _, _ in seconds], [p50 for _, p50, _ in seconds], label="p50")
        latency.plot([s for s, _, _ in seconds], [p99 for _, _, p99 in seconds], label="p99")
        latency.set_yscale("log")
        latency.set_xlabel(f"seconds since publishing at {fixed['rate']:g} events/s began")
        latency.set_ylabel("event to delivery, ms")
        latency.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    pyplot.close(figure)
