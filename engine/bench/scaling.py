"""`declic bench --workers N`: one engine process against N on the same records.

The engine phase ran N processes (one `declic worker --processes N`); this phase runs one
process on the same topics, in a consumer group of its own, and returns both rates, their
ratio, and who used the machine's cores during each (the broker's share said plainly).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.bench import cpu, measure
from engine.bench.workload import EVENT_TOPICS
from engine.child_process import free_port
from engine.settings import Settings
from engine.worker_process import WorkerProcess

if TYPE_CHECKING:
    from engine.bench.runner import BenchOptions

Series = list[tuple[float, dict[str, float]]]
WaitForEvents = Callable[[list[WorkerProcess], float, float, float], Series]


def scaling_phase(
    settings: Settings,
    options: BenchOptions,
    work_dir: Path,
    engine: dict[str, Any],
    wait_for_events: WaitForEvents,
) -> dict[str, Any]:
    """Measure one engine process on the records the engine phase read; return the scaling
    of the input records (events and profiles) read per second.

    After --rate phases the topics hold more events than the backlog: the one-process rate
    counts up to the backlog's count of records read (mostly the backlog's own, each
    partition being read in order), as the engine phase's rate did.
    """
    single = settings.model_copy(
        update={
            "app_id": f"{settings.app_id}-single",
            "worker_id": f"{settings.worker_id}-single",
            "data_dir": work_dir / "single",
            "web_port": free_port(),
        }
    )
    published = options.events + sum(
        engine.get(phase, {}).get("events", 0) for phase in ("fixed_rate", "fixed_rate_diagnose")
    )
    worker = WorkerProcess(single, work_dir / "single.log")
    worker.start()
    try:
        worker.wait_ready()
        print("  scaling: one engine process on the same records", file=sys.stderr, flush=True)
        meter = cpu.CpuMeter(settings.kafka_bootstrap, cpu.pids_of([worker], cpu.all_processes))
        series = wait_for_events([worker], published, options.users, options.timeout)
        usage = meter.stop()
    finally:
        worker.stop()
    inputs = (*EVENT_TOPICS, "profiles")
    backlog = next(
        index
        for index, (_, counts) in enumerate(series)
        if sum(counts.get(topic, 0.0) for topic in EVENT_TOPICS) >= options.events
        and counts.get("profiles", 0.0) >= options.users
    )
    one = measure.sustained_rate(series[: backlog + 1], inputs)["records_per_second"]
    many = engine["input_records_per_second"]
    return {
        "processes": options.workers,
        # Inputs, not events alone: a worker may read a partition's events before its
        # profiles or after, and events matched without profiles cost less.
        "one_process_input_records_per_second": one,
        "input_records_per_second": many,
        "one_process_events_per_second": measure.sustained_rate(
            series[: backlog + 1], EVENT_TOPICS
        )["records_per_second"],
        "events_per_second": engine["events_per_second"],
        "ratio": many / one if one else None,
        "cpu_one_process": usage,
        "cpu": engine["cpu"],
    }
