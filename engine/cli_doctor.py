"""The `declic doctor` command: check a deployment from where it runs."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from engine.cli_flags import add_command
from engine.cli_support import settings_from_args
from engine.errors import DeclicError

EXAMPLES = """examples:
  declic doctor
  declic doctor --json --timeout 10
  declic doctor --kafka-bootstrap kafka-1:9092 --replication-factor 3 --strict"""


def add_doctor_command(commands: Any) -> None:
    doctor = add_command(
        commands,
        "doctor",
        "topics",
        help="check a deployment: broker, topics, ACLs, group, clock, catalog",
        description="Check a deployment from where it runs, one line per check: the broker "
        "answers (and its version); every topic exists; the input topics and the state "
        "changelog share one partition count; replicas and min.insync.replicas against "
        "DECLIC_REPLICATION_FACTOR; compaction and retention; the principal's ACLs for what a "
        "worker does; the worker group's members and lag; this host's clock against the "
        "cluster's; the engagement catalog loads. Nothing is written. Exit status: 0 if no "
        "check failed (warnings and skipped checks pass, unless --strict), 1 if one did, 2 "
        "for invalid settings.",
        epilog=EXAMPLES,
    )
    doctor.add_argument("--json", action="store_true", help="print one JSON document")
    doctor.add_argument(
        "--timeout",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="longest wait for each check (default 5)",
    )
    doctor.add_argument("--strict", action="store_true", help="warnings fail too (exit 1)")
    doctor.set_defaults(handler=_cmd_doctor)


def _cmd_doctor(args: argparse.Namespace) -> int:
    from engine.doctor.checks import passed, render_json, render_text
    from engine.doctor.run import run_doctor

    if not 0 < args.timeout <= 600:
        raise DeclicError(f"--timeout: expected seconds in (0, 600], got {args.timeout:g}")
    settings = settings_from_args(args)
    settings.kafka_client_options()  # invalid security settings: exit 2, not a check
    checks = asyncio.run(run_doctor(settings, args.timeout))
    if args.json:
        sys.stdout.write(render_json(checks, args.strict) + "\n")
    else:
        print(render_text(checks))
    return 0 if passed(checks, args.strict) else 1
