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
from engine.errors import DeclicError
from engine.settings import DEFAULT_BOOTSTRAP, Settings, load_settings

log = logging.getLogger("declic")

# Flag name -> settings field, for the options every subcommand accepts.
COMMON_FLAGS: dict[str, tuple[str, type, str]] = {
    "--bootstrap": ("kafka_bootstrap", str, "Kafka bootstrap servers (DECLIC_KAFKA_BOOTSTRAP)"),
    "--app-id": ("app_id", str, "application id: consumer group and topic prefix (DECLIC_APP_ID)"),
    "--topic-prefix": ("topic_prefix", str, "prefix of every topic name (DECLIC_TOPIC_PREFIX)"),
    "--partitions": ("partitions", int, "partitions of topics created (DECLIC_PARTITIONS)"),
    "--log-level": ("log_level", str, "DEBUG, INFO, WARNING or ERROR (DECLIC_LOG_LEVEL)"),
}
WORKER_FLAGS: dict[str, tuple[str, type, str]] = {
    "--worker-id": ("worker_id", str, "stable name of this worker (DECLIC_WORKER_ID)"),
    "--data-dir": ("data_dir", Path, "local state directory (DECLIC_DATA_DIR)"),
    "--web-host": ("web_host", str, "address of the HTTP server (DECLIC_WEB_HOST)"),
    "--web-port": ("web_port", int, "port of /metrics and /health (DECLIC_WEB_PORT)"),
    "--max-event-age": (
        "max_event_age_seconds",
        float,
        "older events trigger nothing (DECLIC_MAX_EVENT_AGE_SECONDS)",
    ),
    "--checkpoint-interval": (
        "checkpoint_interval_seconds",
        float,
        "seconds between commits (DECLIC_CHECKPOINT_INTERVAL_SECONDS)",
    ),
}


def _add_flags(parser: argparse.ArgumentParser, flags: dict[str, tuple[str, type, str]]) -> None:
    for flag, (field, kind, help_text) in flags.items():
        parser.add_argument(flag, dest=f"setting_{field}", type=kind, default=None, help=help_text)


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {
        name.removeprefix("setting_"): value
        for name, value in vars(args).items()
        if name.startswith("setting_")
    }
    return load_settings(overrides)


def _add_engagement_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    engagements = commands.add_parser(
        "engagements",
        help="manage engagements",
        description="Manage engagements. Every change increments the engagement's version and "
        "is recorded, with its author, on the engagement-changelog topic.",
    )
    actions = engagements.add_subparsers(dest="action", required=True, metavar="ACTION")
    author = argparse.ArgumentParser(add_help=False)
    author.add_argument(
        "--author",
        dest="setting_author",
        default=None,
        help="who makes the change (DECLIC_AUTHOR; default: the OS user)",
    )
    apply = actions.add_parser(
        "apply",
        parents=[common, author],
        help="validate and publish engagement files",
        description="Validate YAML or JSON engagement files and publish the new or changed ones. "
        "An invalid file is refused with the field and the reason; nothing is published then.",
    )
    apply.add_argument("files", nargs="+", type=Path, metavar="FILE")
    apply.add_argument("--dry-run", action="store_true", help="validate only, publish nothing")
    apply.set_defaults(handler=_cmd_apply)
    listing = actions.add_parser("list", parents=[common], help="list the engagements")
    listing.add_argument("--json", action="store_true", help="print JSON records")
    listing.set_defaults(handler=_cmd_list)
    for action, help_text in (
        ("pause", "stop an active engagement from delivering"),
        ("resume", "make a paused (or draft) engagement active"),
        ("archive", "retire an engagement for good (it frees its name)"),
        ("delete", "remove an engagement from the topic"),
    ):
        command = actions.add_parser(
            action,
            parents=[common, author],
            help=help_text,
            description=help_text[0].upper() + help_text[1:] + ".",
        )
        command.add_argument("engagement_id", metavar="ID")
        command.set_defaults(handler=_cmd_change_status, change=action)
    history = actions.add_parser(
        "history", parents=[common], help="show who changed an engagement, when and what"
    )
    history.add_argument(
        "engagement_id", metavar="ID", nargs="?", help="one engagement (default: all)"
    )
    history.add_argument("--json", action="store_true", help="print JSON records")
    history.set_defaults(handler=_cmd_history)
    test_send = actions.add_parser(
        "test-send",
        parents=[common, author],
        help="send one test delivery of an engagement to a user",
        description="Produce one delivery marked test: true for a user, whatever the schedule, "
        "audience, percentage, caps and re-eligibility. A running worker answers; the delivery "
        "is printed. Test deliveries never count towards re-eligibility, caps or real metrics.",
    )
    test_send.add_argument("engagement_id", metavar="ID")
    test_send.add_argument("--user", required=True, help="the user who receives it")
    test_send.add_argument("--variant", default=None, help="the variant (default: the user's)")
    test_send.add_argument(
        "--wait",
        type=float,
        default=30.0,
        help="seconds to wait for the worker's answer (default 30)",
    )
    test_send.set_defaults(handler=_cmd_test_send)


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of every subcommand."""
    common = argparse.ArgumentParser(add_help=False)
    _add_flags(common, COMMON_FLAGS)
    worker_common = argparse.ArgumentParser(add_help=False)
    _add_flags(worker_common, WORKER_FLAGS)

    parser = argparse.ArgumentParser(
        prog="declic",
        description="Declic: match events on Kafka against in-app message engagements.",
        epilog="Every flag can also be set with its DECLIC_* environment variable.",
    )
    parser.add_argument("--version", action="version", version=f"declic {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    worker = commands.add_parser(
        "worker",
        parents=[common, worker_common],
        help="run an engine worker",
        description="Run an engine worker: consume the input topics, produce deliveries and "
        "impressions, serve /metrics and /health. Stop with SIGTERM or Ctrl-C.",
    )
    worker.set_defaults(handler=_cmd_worker)

    topics = commands.add_parser(
        "topics",
        parents=[common],
        help="create the topics the engine uses",
        description="Create every topic with the configured partition count, if missing.",
    )
    topics.set_defaults(handler=_cmd_topics)

    _add_engagement_commands(commands, common)

    diagnose = commands.add_parser(
        "diagnose",
        parents=[common],
        help="explain why an engagement gets few impressions",
        description="Report an engagement's segment size, trigger frequency, funnel by outcome, "
        "impressions and changes since launch, with verdicts ranked by how many impressions "
        "they explain. Figures come from what the workers publish (every "
        "DECLIC_STATS_INTERVAL_SECONDS).",
    )
    diagnose.add_argument("engagement_id", metavar="ENGAGEMENT", nargs="?")
    diagnose.add_argument(
        "--all", action="store_true", help="rank every active engagement by its shortfall"
    )
    diagnose.add_argument(
        "--since", default=None, help="list changes since: RFC 3339, or a duration like 24h or 7d"
    )
    diagnose.add_argument("--json", action="store_true", help="print the report as JSON")
    diagnose.set_defaults(handler=_cmd_diagnose)

    publish = commands.add_parser(
        "publish",
        parents=[common],
        help="publish an NDJSON file to an input topic",
        description="Publish one JSON record per line to an input topic, keyed by user_id. "
        "Every line is checked against the topic's schema first; one bad line refuses the file.",
    )
    from engine.publish import PUBLISHABLE

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

    demo = commands.add_parser(
        "demo",
        parents=[common, worker_common],
        help="run the example end to end",
        description="Apply the example engagements, start a worker, publish a sample event "
        "stream and interactions, and print what the engine produced.",
    )
    demo.add_argument("--users", type=int, default=200, help="users in the sample stream")
    demo.add_argument(
        "--examples",
        type=Path,
        default=None,
        help="directory of example engagements (default: deploy/examples)",
    )
    demo.set_defaults(handler=_cmd_demo)
    return parser


def _cmd_worker(args: argparse.Namespace) -> int:
    from faust import Worker

    from engine.app import build_app

    settings = _settings(args)
    app = build_app(settings)
    worker = Worker(app, loglevel=settings.log_level, quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()
    return 0


def _cmd_topics(args: argparse.Namespace) -> int:
    from engine.stream.topics import ensure_topics

    created = asyncio.run(ensure_topics(_settings(args)))
    print(f"created {len(created)} topics" + (f": {', '.join(created)}" if created else ""))
    return 0


def _cmd_apply(args: argparse.Namespace) -> int:
    from engine.admin.engagements import apply_engagements, load_and_validate

    documents = load_and_validate(args.files)
    if args.dry_run:
        for document in documents:
            print(f"{document['id']}: valid")
        return 0
    settings = _settings(args)
    from engine.stream.topics import ensure_topics

    async def run() -> list[Any]:
        await ensure_topics(settings)
        return await apply_engagements(settings, documents, _now_ms())

    for change in asyncio.run(run()):
        print(f"{change.engagement_id}: {change.action} (version {change.version})")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from engine.admin.engagements import read_catalog

    records = asyncio.run(read_catalog(_settings(args)))
    if args.json:
        for record in records.values():
            sys.stdout.write(orjson.dumps(record).decode() + "\n")
        return 0
    print(f"{'ID':<24} {'STATUS':<9} {'VER':>4} {'TRIGGER':<28} {'UPDATED':<25} NAME")
    for engagement_id in sorted(records):
        record = records[engagement_id]
        engagement = record["engagement"]
        trigger = engagement["trigger"]
        trigger_text = trigger.get("name") or trigger["event"]
        print(
            f"{engagement_id:<24} {engagement['status']:<9} {record['version']:>4} "
            f"{trigger_text:<28.28} {record['updated_at']:<25} {engagement['name']}"
        )
    return 0


def _cmd_change_status(args: argparse.Namespace) -> int:
    from engine.admin.engagements import change_status, delete_engagement

    settings = _settings(args)
    if args.change == "delete":
        change = asyncio.run(delete_engagement(settings, args.engagement_id, _now_ms()))
    else:
        change = asyncio.run(change_status(settings, args.engagement_id, args.change, _now_ms()))
    print(f"{change.engagement_id}: {change.action} (version {change.version})")
    return 0


def _cmd_history(args: argparse.Namespace) -> int:
    from engine.admin.history import read_history

    changes = asyncio.run(read_history(_settings(args), args.engagement_id))
    if args.json:
        for change in changes:
            sys.stdout.write(orjson.dumps(change).decode() + "\n")
        return 0
    if args.engagement_id and not changes:
        raise DeclicError(f"no history for engagement {args.engagement_id!r}")
    for change in changes:
        print(
            f"{change['at']}  v{change['version']:<3} {change['action']:<8} "
            f"{change['engagement_id']}  by {change['author']}"
        )
        for field in change["changes"]:
            old = orjson.dumps(field["old"]).decode()
            new = orjson.dumps(field["new"]).decode()
            print(f"    {field['field']}: {_shorten(old)} -> {_shorten(new)}")
    return 0


def _shorten(text: str, width: int = 70) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _cmd_test_send(args: argparse.Namespace) -> int:
    from engine.admin.test_send import request_test_send

    settings = _settings(args)
    delivery = asyncio.run(
        request_test_send(settings, args.engagement_id, args.user, args.variant, args.wait)
    )
    sys.stdout.write(orjson.dumps(delivery, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


def _cmd_diagnose(args: argparse.Namespace) -> int:
    from engine.admin.diagnose import diagnose, diagnose_active
    from engine.diagnose.render import render_ranking, render_text

    if bool(args.all) == bool(args.engagement_id):
        raise DeclicError("name one ENGAGEMENT, or use --all")
    settings = _settings(args)
    now_ms = _now_ms()
    if args.all:
        reports = asyncio.run(diagnose_active(settings, now_ms))
        if args.json:
            sys.stdout.write(orjson.dumps([r.to_json_dict() for r in reports]).decode() + "\n")
        else:
            print(render_ranking(reports))
        return 0
    since_ms = _since_ms(args.since, now_ms) if args.since else None
    report = asyncio.run(diagnose(settings, args.engagement_id, now_ms, since_ms))
    if args.json:
        sys.stdout.write(orjson.dumps(report.to_json_dict()).decode() + "\n")
    else:
        print(render_text(report))
    return 0


def _since_ms(text: str, now_ms: int) -> int:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text[:-1].isdigit() and text[-1:] in units:
        return now_ms - int(text[:-1]) * units[text[-1]] * 1000
    from engine.core.timestamps import parse_timestamp
    from engine.errors import InvalidRecord

    try:
        return parse_timestamp(text)
    except InvalidRecord:
        raise DeclicError(
            f"--since: expected RFC 3339 or a duration like 24h, got {text!r}"
        ) from None


def _now_ms() -> int:
    return int(time.time() * 1000)


def _cmd_publish(args: argparse.Namespace) -> int:
    from engine.publish import publish_lines, read_ndjson

    settings = _settings(args)
    lines = read_ndjson(args.file, args.topic, validate=not args.no_validate)
    sent = asyncio.run(publish_lines(settings, args.topic, lines))
    print(f"published {sent} records to {settings.topic(args.topic)}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from engine.demo import run_demo

    examples = args.examples or Path(__file__).resolve().parent.parent / "deploy" / "examples"
    return run_demo(_settings(args), examples, users=args.users)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = getattr(args, "setting_log_level", None) or "WARNING"
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from aiokafka.errors import KafkaError

    try:
        return int(args.handler(args))
    except DeclicError as error:
        print(f"declic: error: {error}", file=sys.stderr)
        return 2
    except KafkaError as error:
        bootstrap = (
            getattr(args, "setting_kafka_bootstrap", None)
            or os.environ.get("DECLIC_KAFKA_BOOTSTRAP")
            or DEFAULT_BOOTSTRAP
        )
        print(f"declic: error: Kafka at {bootstrap}: {error}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
