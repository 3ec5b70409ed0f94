"""The `declic bench` command: its flags, their checks, and the run."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from engine.cli_flags import add_command
from engine.cli_support import settings_from_args
from engine.errors import DeclicError


def add_bench_command(commands: Any) -> None:
    bench = add_command(
        commands,
        "bench",
        "bench",
        epilog="examples:\n  declic bench\n  declic bench --runs 3 --rate 6500 --duration 60\n"
        "  declic bench --workers --events 20000\n"
        "  declic bench --engagements 10000 --events 50000\n"
        "  declic bench --runs 3 --engagements 10000 --live-engagements 10",
        help="measure throughput, latency and footprint",
        description="Benchmark one worker on topics of its own "
        "(<topic prefix>bench-<timestamp>-*): publish a seeded workload of users, "
        "engagements and events, start a worker, and measure its sustained events/s, peak "
        "RSS and state size, against a raw aiokafka pass-through (the ceiling) and a plain "
        "Faust agent (the floor) on the same messages. With --rate, also measure "
        "event-to-delivery latency at a fixed publishing rate. Then restart one worker on an "
        "empty data directory and measure how long it takes to rebuild every user's state from "
        "the changelog and serve, and its peak RSS meanwhile. Prints a table and writes a "
        "JSON file; deletes its topics at the end.",
    )
    bench.add_argument(
        "--users", type=int, default=100_000, metavar="N", help="users (default 100000)"
    )
    bench.add_argument(
        "--engagements",
        type=int,
        default=1_000,
        metavar="N",
        help="active engagements (default 1000)",
    )
    bench.add_argument(
        "--live-engagements",
        type=int,
        default=None,
        metavar="N",
        help="only the first N engagements can deliver; the others are candidates that never "
        "do (an ended schedule, an audience no user is in, a 0%% sample...), so the share of "
        "events that deliver is the same at every --engagements (default: all can deliver)",
    )
    bench.add_argument(
        "--events",
        type=int,
        default=200_000,
        metavar="N",
        help="events published first (default 200000)",
    )
    bench.add_argument("--seed", type=int, default=1, metavar="N", help="workload seed (default 1)")
    bench.add_argument(
        "--rate",
        type=float,
        default=None,
        metavar="EVENTS_PER_S",
        help="then publish this many events/s while the worker runs, to measure latency",
    )
    bench.add_argument(
        "--duration",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="seconds of --rate publishing (default 30)",
    )
    bench.add_argument(
        "--diagnose-clients",
        type=int,
        default=0,
        metavar="N",
        help="with --rate, publish at that rate again for as long while N clients request "
        "GET /diagnose/<engagement> from the worker in a loop, and report both latencies "
        "(default 0: no such phase)",
    )
    bench.add_argument(
        "--floor-events",
        type=int,
        default=20_000,
        metavar="N",
        help="events the Faust floor handles to measure its rate (default 20000)",
    )
    bench.add_argument(
        "--timeout",
        type=float,
        default=1800.0,
        metavar="SECONDS",
        help="seconds allowed to each measured step (default 1800)",
    )
    bench.add_argument(
        "--output",
        type=Path,
        default=None,
        metavar="FILE",
        help="JSON results file (default bench-results/bench-<timestamp>.json)",
    )
    bench.add_argument(
        "--workers",
        type=int,
        nargs="?",
        const=2,
        default=1,
        metavar="N",
        help="run the engine as N processes sharing the partitions (one `declic worker "
        "--processes N`; N is 2 when omitted), then one process on the same records, and "
        "report both rates, their ratio and the cores the broker, the engine and everything "
        "else used meanwhile (default 1: one process, no scaling phase)",
    )
    bench.add_argument(
        "--runs",
        type=int,
        default=1,
        metavar="N",
        help="repeat the whole measure, on fresh topics, and report medians (default 1)",
    )
    bench.add_argument(
        "--plot",
        type=Path,
        default=None,
        metavar="PNG",
        help="also draw throughput (and latency, with --rate) over time (needs matplotlib)",
    )
    bench.add_argument(
        "--no-rebuild",
        dest="rebuild",
        action="store_false",
        help="skip the rebuild phase (a worker restarted on an empty disk)",
    )
    bench.add_argument(
        "--keep-topics", action="store_true", help="do not delete the bench's topics at the end"
    )
    bench.set_defaults(handler=_cmd_bench)


def _cmd_bench(args: argparse.Namespace) -> int:
    from engine.bench.report import combine_runs, render_table, write_json
    from engine.bench.runner import BenchOptions, run_bench

    for name in ("users", "engagements", "events", "floor_events", "workers", "runs"):
        if getattr(args, name) < 1:
            raise DeclicError(f"--{name.replace('_', '-')}: must be at least 1")
    if args.live_engagements is not None and args.live_engagements < 1:
        raise DeclicError("--live-engagements: must be at least 1")
    if args.rate is not None and (args.rate <= 0 or args.duration <= 0):
        raise DeclicError("--rate and --duration must be positive")
    if args.diagnose_clients < 0 or (args.diagnose_clients and args.rate is None):
        raise DeclicError("--diagnose-clients: must be at least 0, and needs --rate")
    if args.plot is not None:
        from engine.bench.plot import write_plot  # fail now, not after the run, without it
    settings = settings_from_args(args)
    if args.workers > settings.partitions:
        raise DeclicError(
            f"--workers {args.workers}: more workers than partitions ({settings.partitions}) "
            "would leave some idle"
        )
    options = BenchOptions(
        users=args.users,
        engagements=args.engagements,
        live_engagements=args.live_engagements,
        events=args.events,
        partitions=settings.partitions,
        seed=args.seed,
        rate=args.rate,
        duration=args.duration,
        floor_events=args.floor_events,
        timeout=args.timeout,
        keep_topics=args.keep_topics,
        workers=args.workers,
        diagnose_clients=args.diagnose_clients,
        rebuild=args.rebuild,
    )
    if threading.current_thread() is threading.main_thread():
        # SIGTERM unwinds like Ctrl-C: the workers and the floor stop, the topics are deleted.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    runs = []
    for number in range(args.runs):
        if args.runs > 1:
            print(f"  run {number + 1} of {args.runs}", file=sys.stderr, flush=True)
        runs.append(run_bench(settings, options))
    results = runs[0] if len(runs) == 1 else combine_runs(runs)
    output = args.output or Path("bench-results") / f"bench-{results['started_at']}.json"
    write_json(results, output)
    print(render_table(results))
    print(f"results: {output}")
    if args.plot is not None:
        write_plot(results, args.plot)
        print(f"plot: {args.plot}")
    return 0
