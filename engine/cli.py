"""The `declic` command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from engine import __version__
from engine.cli_bench import add_bench_command
from engine.cli_console import add_console_commands
from engine.cli_doctor import add_doctor_command
from engine.cli_engagements import add_engagement_commands
from engine.cli_errors import DeclicArgumentParser, print_warning, report
from engine.cli_flags import HelpFormatter, add_command, unknown_variables, user_names
from engine.cli_support import now_ms, settings_from_args
from engine.cli_users import add_user_commands
from engine.errors import DeclicError, KafkaAccessError
from engine.log_setup import configure_command_logging, quiet_libraries

log = logging.getLogger("declic")

# The examples ending each command's --help (tests/unit/test_cli.py parses them).
_EXAMPLES = {
    "worker": """examples:
  declic worker --worker-id worker-1 --web-port 6066
  declic worker --processes 4 --data-dir /var/lib/declic
  DECLIC_KAFKA_BOOTSTRAP=kafka-1:9092,kafka-2:9092 declic worker --data-dir /var/lib/declic""",
    "topics": """examples:
  declic topics
  declic topics --kafka-bootstrap kafka-1:9092 --partitions 12 --replication-factor 3""",
    "diagnose": """examples:
  declic diagnose welcome-back
  declic diagnose welcome-back --since 7d --json
  declic diagnose --all""",
    "publish": """examples:
  declic publish custom-events my-events.ndjson
  declic publish profiles profiles.ndjson --kafka-bootstrap kafka-1:9092""",
    "demo": """examples:
  declic demo
  declic demo --users 1000 --kafka-bootstrap 127.0.0.1:19092""",
    "gateway": """examples:
  DECLIC_GATEWAY_TOKEN_SECRET=... declic gateway --gateway-allowed-origins https://shop.example
  declic gateway --gateway-jwks-file /etc/declic/app-keys.jwks --gateway-port 8080
  DECLIC_GATEWAY_TOKEN_SECRET=... declic gateway --demo --gateway-port 6080""",
}


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of every subcommand."""
    parser = DeclicArgumentParser(
        prog="declic",
        description="Declic: match events on Kafka against in-app message engagements.",
        epilog="Every setting is a flag of the commands that use it and a DECLIC_* variable "
        "(flags win). Exit status: 0 done, 2 invalid input or settings, 3 Kafka unreachable "
        "or refusing, 1 a bug.\n\nexamples:\n  declic topics\n"
        "  declic engagements apply deploy/examples/*.yaml\n  declic worker --worker-id w1",
        formatter_class=HelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"declic {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, kind: str, **options: Any) -> argparse.ArgumentParser:
        return add_command(commands, name, kind, **options)

    worker = command(
        "worker",
        "worker",
        help="run an engine worker",
        description="Run an engine worker: consume the input topics, produce deliveries and "
        "impressions, serve /metrics and /health. With --processes N (default: the CPUs it may "
        "use) it runs N engine processes in the one consumer group, each with its own "
        "partitions and state (worker id <id>-<k>, data dir <dir>/<k>), restarts one that "
        "dies, and serves one /health and /metrics for all. Stop with SIGTERM or Ctrl-C.",
        epilog=_EXAMPLES["worker"],
    )
    worker.set_defaults(handler=_cmd_worker)

    topics = command(
        "topics",
        "topics",
        help="create the topics the engine uses",
        description="Create every topic Declic uses, if missing: the input topics, deliveries, "
        "impressions, conversions, dead-letters and the state changelog with DECLIC_PARTITIONS "
        "partitions; engagements, engagement-changelog, engagement-stats and user-audit with "
        "one.",
        epilog=_EXAMPLES["topics"],
    )
    topics.set_defaults(handler=_cmd_topics)

    add_engagement_commands(commands)

    diagnose = command(
        "diagnose",
        "diagnose",
        help="explain why an engagement gets few impressions",
        description="Report an engagement's segment size, trigger frequency, funnel by outcome, "
        "impressions and changes since launch, with verdicts ranked by how many impressions "
        "they explain. Figures come from what the workers publish (every "
        "DECLIC_STATS_INTERVAL_SECONDS).",
        epilog=_EXAMPLES["diagnose"],
    )
    diagnose.add_argument("engagement_id", metavar="ENGAGEMENT", nargs="?")
    diagnose.add_argument(
        "--all", action="store_true", help="rank every active engagement by its shortfall"
    )
    diagnose.add_argument(
        "--since",
        default=None,
        metavar="WHEN",
        help="list changes since: RFC 3339, or a duration like 24h or 7d",
    )
    diagnose.add_argument("--json", action="store_true", help="print the report as JSON")
    diagnose.set_defaults(handler=_cmd_diagnose)

    from engine.publish import PUBLISHABLE

    publish = command(
        "publish",
        "publish",
        help="publish an NDJSON file to an input topic",
        description="Publish one JSON record per line to an input topic, keyed by user_id. "
        "Every line is checked against the topic's schema first; one bad line refuses the file.",
        epilog=_EXAMPLES["publish"],
    )
    publish.add_argument(
        "topic", choices=PUBLISHABLE, metavar="TOPIC", help=f"one of: {', '.join(PUBLISHABLE)}"
    )
    publish.add_argument("file", type=Path, metavar="FILE")
    publish.add_argument(
        "--no-validate",
        action="store_true",
        help="send lines as they are (to exercise dead letters)",
    )
    publish.set_defaults(handler=_cmd_publish)

    demo = command(
        "demo",
        "demo",
        help="run the example end to end",
        description="Apply the example engagements, start a worker, publish a sample event "
        "stream and interactions, and print what the engine produced.",
        epilog=_EXAMPLES["demo"],
    )
    demo.add_argument(
        "--users", type=int, default=200, metavar="N", help="users in the sample stream"
    )
    demo.add_argument(
        "--examples",
        type=Path,
        default=None,
        metavar="DIR",
        help="directory of example engagements (default: deploy/examples)",
    )
    demo.set_defaults(handler=_cmd_demo)

    gateway = command(
        "gateway",
        "gateway",
        help="serve deliveries to apps over HTTP and server-sent events",
        description="Run the delivery gateway: follow the deliveries and impressions topics, "
        "serve each user's pending messages (/v1/users/ID/messages) and a live stream of new "
        "ones (/v1/users/ID/stream), publish the app's interactions, serve the web SDK "
        "(/sdk/declic.js), /health and /metrics. Tokens are checked with the HS256 key in "
        "DECLIC_GATEWAY_TOKEN_SECRET (a variable only) or the public keys of "
        "DECLIC_GATEWAY_JWKS_FILE: exactly one. Stop with SIGTERM or Ctrl-C.",
        epilog=_EXAMPLES["gateway"],
    )
    gateway.add_argument(
        "--demo",
        action="store_true",
        help="also serve the demo shop page (/demo), demo tokens for any user (/demo/token) "
        "and custom events (/demo/events); needs DECLIC_GATEWAY_TOKEN_SECRET. Never in "
        "production: anyone gets a token. Open http://127.0.0.1:6080/demo",
    )
    gateway.set_defaults(handler=_cmd_gateway)
    add_console_commands(commands)
    add_bench_command(commands)
    add_doctor_command(commands)
    add_user_commands(commands)
    return parser


def _cmd_worker(args: argparse.Namespace) -> int:
    from faust import Worker

    from engine.app import build_app

    settings = settings_from_args(args)
    # Invalid security settings, or certificates that do not load: exit 2 now, not at the
    # first connection.
    settings.kafka_client_options()
    from engine.supervisor import follow_supervisor, run_supervisor

    if settings.worker_processes > 1:
        return run_supervisor(settings)
    follow_supervisor()  # a child of `declic worker --processes N`: dies with it
    app = build_app(settings)
    quiet_libraries(settings.log_level)
    worker = Worker(app, loglevel=settings.log_level, quiet=True, redirect_stdouts=False)
    try:
        worker.execute_from_commandline()
    except SystemExit:
        # Faust exits with status 1 whatever stopped the worker. Kafka refusing its
        # credentials or an ACL is no crash to restart from: status 3, as for the commands.
        # The engine logged why ("engine stopped: Kafka at ... refused this worker ...").
        if isinstance(worker.crash_reason, KafkaAccessError):
            return 3
        raise
    return 0


def _cmd_topics(args: argparse.Namespace) -> int:
    from engine.stream.topics import ensure_topics

    created = asyncio.run(ensure_topics(settings_from_args(args)))
    print(f"created {len(created)} topics" + (f": {', '.join(created)}" if created else ""))
    return 0


def _cmd_diagnose(args: argparse.Namespace) -> int:
    from engine.admin.diagnose import diagnose, diagnose_active
    from engine.diagnose.render import render_ranking, render_text

    if bool(args.all) == bool(args.engagement_id):
        raise DeclicError("name one ENGAGEMENT, or use --all")
    settings = settings_from_args(args)
    moment = now_ms()
    if args.all:
        reports = asyncio.run(diagnose_active(settings, moment))
        if args.json:
            sys.stdout.write(orjson.dumps([r.to_json_dict() for r in reports]).decode() + "\n")
        else:
            print(render_ranking(reports))
        return 0
    since_ms = _since_ms(args.since, moment) if args.since else None
    report = asyncio.run(diagnose(settings, args.engagement_id, moment, since_ms))
    if args.json:
        sys.stdout.write(orjson.dumps(report.to_json_dict()).decode() + "\n")
    else:
        print(render_text(report))
    return 0


def _since_ms(text: str, moment_ms: int) -> int:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text[:-1].isdigit() and text[-1:] in units:
        return moment_ms - int(text[:-1]) * units[text[-1]] * 1000
    from engine.core.timestamps import parse_timestamp
    from engine.errors import InvalidRecord

    try:
        return parse_timestamp(text)
    except InvalidRecord:
        raise DeclicError(
            f"--since: expected RFC 3339 or a duration like 24h, got {text!r}"
        ) from None


def _cmd_publish(args: argparse.Namespace) -> int:
    from engine.publish import publish_lines, read_ndjson

    settings = settings_from_args(args)
    lines = read_ndjson(args.file, args.topic, validate=not args.no_validate)
    sent = asyncio.run(publish_lines(settings, args.topic, lines))
    print(f"published {sent} records to {settings.topic(args.topic)}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from engine.demo import run_demo

    if args.users < 1:
        raise DeclicError(f"--users: must be at least 1, got {args.users}")

    examples = args.examples or Path(__file__).resolve().parent.parent / "deploy" / "examples"
    return run_demo(settings_from_args(args), examples, users=args.users)


def _cmd_gateway(args: argparse.Namespace) -> int:
    from engine.gateway.server import check_settings, serve

    settings = settings_from_args(args)
    check_settings(settings, args.demo)  # exit 2 before anything starts
    # A server logs what it does, like a worker: INFO unless asked otherwise.
    logging.getLogger().setLevel(settings.log_level)
    quiet_libraries(settings.log_level)
    return asyncio.run(serve(settings, demo=args.demo))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_command_logging(_log_level(args))
    for warning in unknown_variables(os.environ):
        print_warning(warning)
    args.started_at = time.monotonic()
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        return 130
    except Exception as error:
        return report(error, args, user_names(args))


def _log_level(args: argparse.Namespace) -> str:
    """Return the level asked for by flag or variable; WARNING if none (or an invalid one,
    which the settings then refuse by name)."""
    asked = getattr(args, "setting_log_level", None) or os.environ.get("DECLIC_LOG_LEVEL")
    level = (asked or "WARNING").upper()
    return level if level in ("DEBUG", "INFO", "WARNING", "ERROR") else "WARNING"


if __name__ == "__main__":
    sys.exit(main())
