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

import orjson

from engine import __version__
from engine.cli_bench import add_bench_command
from engine.cli_engagements import add_engagement_commands
from engine.cli_support import now_ms, settings_from_args
from engine.errors import DeclicError, KafkaAccessError
from engine.settings import DEFAULT_BOOTSTRAP

log = logging.getLogger("declic")

# Flag name -> settings field, for the options every subcommand accepts.
COMMON_FLAGS: dict[str, tuple[str, type, str]] = {
    "--bootstrap": ("kafka_bootstrap", str, "Kafka bootstrap servers (DECLIC_KAFKA_BOOTSTRAP)"),
    "--app-id": ("app_id", str, "application id: consumer group and topic prefix (DECLIC_APP_ID)"),
    "--topic-prefix": ("topic_prefix", str, "prefix of every topic name (DECLIC_TOPIC_PREFIX)"),
    "--partitions": ("partitions", int, "partitions of topics created (DECLIC_PARTITIONS)"),
    "--log-level": ("log_level", str, "DEBUG, INFO, WARNING or ERROR (DECLIC_LOG_LEVEL)"),
    "--kafka-security-protocol": (
        "kafka_security_protocol",
        str,
        "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL (DECLIC_KAFKA_SECURITY_PROTOCOL)",
    ),
    "--kafka-sasl-mechanism": (
        "kafka_sasl_mechanism",
        str,
        "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (DECLIC_KAFKA_SASL_MECHANISM); the password "
        "comes from DECLIC_KAFKA_SASL_PASSWORD only",
    ),
    "--kafka-sasl-username": (
        "kafka_sasl_username",
        str,
        "SASL user (DECLIC_KAFKA_SASL_USERNAME)",
    ),
    "--kafka-ssl-cafile": (
        "kafka_ssl_cafile",
        Path,
        "PEM file of the CA of the brokers' certificates (DECLIC_KAFKA_SSL_CAFILE)",
    ),
    "--kafka-ssl-certfile": (
        "kafka_ssl_certfile",
        Path,
        "PEM client certificate, for brokers requiring one (DECLIC_KAFKA_SSL_CERTFILE)",
    ),
    "--kafka-ssl-keyfile": (
        "kafka_ssl_keyfile",
        Path,
        "PEM private key of the client certificate (DECLIC_KAFKA_SSL_KEYFILE); its password "
        "comes from DECLIC_KAFKA_SSL_KEY_PASSWORD only",
    ),
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
    "--max-record-bytes": (
        "max_record_bytes",
        int,
        "largest record produced; larger outputs become dead letters (DECLIC_MAX_RECORD_BYTES)",
    ),
    "--max-input-bytes": (
        "max_input_bytes",
        int,
        "largest input record parsed; larger ones are dead-lettered unread "
        "(DECLIC_MAX_INPUT_BYTES)",
    ),
}


def _add_flags(parser: argparse.ArgumentParser, flags: dict[str, tuple[str, type, str]]) -> None:
    for flag, (field, kind, help_text) in flags.items():
        parser.add_argument(flag, dest=f"setting_{field}", type=kind, default=None, help=help_text)


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

    add_engagement_commands(commands, common)

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
    add_bench_command(commands, common)
    return parser


def _cmd_worker(args: argparse.Namespace) -> int:
    from faust import Worker

    from engine.app import build_app

    settings = settings_from_args(args)
    # Invalid security settings, or certificates that do not load: exit 2 now, not at the
    # first connection.
    settings.kafka_client_options()
    app = build_app(settings)
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

    examples = args.examples or Path(__file__).resolve().parent.parent / "deploy" / "examples"
    return run_demo(settings_from_args(args), examples, users=args.users)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = getattr(args, "setting_log_level", None) or "WARNING"
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from aiokafka.errors import KafkaError

    from engine.retry import access_error

    started = time.monotonic()
    try:
        return int(args.handler(args))
    except KafkaAccessError as error:
        print(f"declic: error: {_kafka_at(args)}: {error}", file=sys.stderr)
        return 3
    except DeclicError as error:
        print(f"declic: error: {error}", file=sys.stderr)
        return 2
    except KafkaError as error:
        refused = access_error(error, since=started)
        print(f"declic: error: {_kafka_at(args)}: {refused or error}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        return 130


def _kafka_at(args: argparse.Namespace) -> str:
    """Return "Kafka at <bootstrap>", with the SASL user when there is one."""

    def setting(name: str) -> str | None:
        value = getattr(args, f"setting_{name}", None)
        return str(value) if value is not None else os.environ.get(f"DECLIC_{name.upper()}")

    bootstrap = setting("kafka_bootstrap") or DEFAULT_BOOTSTRAP
    user = setting("kafka_sasl_username")
    return f"Kafka at {bootstrap}" + (f" (user {user!r})" if user else "")


if __name__ == "__main__":
    sys.exit(main())
