"""The benchmark's output: a table for people, a JSON file for machines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

MIB = 1024 * 1024


def render_table(results: dict[str, Any]) -> str:
    """Return the headline figures as an aligned two-column table."""
    options = results["options"]
    engine = results["engine"]
    fixed = engine.get("fixed_rate")
    rows: list[tuple[str, str]] = [
        ("engine events/s", f"{engine['events_per_second']:,.0f}"),
        ("ceiling events/s (raw aiokafka)", f"{results['ceiling']['events_per_second']:,.0f}"),
        ("floor events/s (plain Faust agent)", f"{results['floor']['events_per_second']:,.0f}"),
        ("engine / floor", f"{results['engine_over_floor']:.2f}"),
        ("engine / ceiling", f"{results['engine_over_ceiling']:.2f}"),
    ]
    if fixed is None:
        rows.append(("latency p50 / p99 ms", "n/a (use --rate)"))
    elif "latency_ms_p50" in fixed:
        rows.append(
            (
                f"latency p50 / p99 ms at {fixed['rate']:g}/s",
                f"{fixed['latency_ms_p50']:,.0f} / {fixed['latency_ms_p99']:,.0f}"
                f" ({fixed['deliveries']} deliveries)",
            )
        )
    else:
        rows.append(("latency p50 / p99 ms", "n/a (no delivery at fixed rate)"))
    rows += [
        ("peak RSS MiB (worker)", f"{engine['peak_rss_bytes'] / MIB:,.1f}"),
        ("state size MiB (data dir)", f"{engine['state_bytes'] / MIB:,.1f}"),
        ("users", f"{options['users']:,}"),
        ("engagements", f"{options['engagements']:,}"),
        ("events", f"{options['events']:,}"),
        ("partitions", f"{options['partitions']}"),
    ]
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label:<{width}}  {value}" for label, value in rows)


def write_json(results: dict[str, Any], path: Path) -> None:
    """Write the results, time series included, as indented JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2) + b"\n")
