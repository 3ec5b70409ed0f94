"""The benchmark's floor: a plain Faust agent that parses each event and sends one record.

Run as a child process by `declic bench`:

    python -m engine.bench.faust_floor --bootstrap HOST:PORT --app-id ID --data-dir DIR \
        --out-topic TOPIC --limit N TOPIC...

Once the agent has handled N events it prints one line,
`floor-result: {"events": N, "seconds": S, "events_per_second": R}`, and keeps running until
it is sent SIGTERM. It connects as the DECLIC_KAFKA_SECURITY_PROTOCOL, _SASL_* and _SSL_*
variables say (the bench passes its own settings so), never with secrets on its command line.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import Any

import faust
import orjson

from engine.settings import Settings, load_settings

RESULT_MARKER = "floor-result: "


def broker_credentials(settings: Settings) -> faust.SSLCredentials | faust.SASLCredentials | None:
    """Return Faust's credentials for the settings' security protocol (None: PLAINTEXT)."""
    options = settings.kafka_client_options()  # validates; builds the TLS context
    protocol = settings.kafka_security_protocol
    context = options.get("ssl_context")
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    if protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
        return faust.SASLCredentials(
            username=options["sasl_plain_username"],
            password=options["sasl_plain_password"],
            mechanism=options["sasl_mechanism"],
            ssl_context=context,
        )
    return None


def build_floor_app(args: argparse.Namespace) -> faust.App:
    """Return a minimal Faust app: one agent, parse, send one record per event."""
    # The security settings come from the environment; the bootstrap from --bootstrap.
    settings = load_settings({"kafka_bootstrap": args.bootstrap.replace(";", ",")})
    app = faust.App(
        args.app_id,
        broker=";".join(f"kafka://{s.strip()}" for s in args.bootstrap.split(",")),
        broker_credentials=broker_credentials(settings),
        datadir=args.data_dir,
        web_enabled=False,
        topic_partitions=args.partitions,
        consumer_auto_offset_reset="earliest",
    )
    source = app.topic(*args.topics, key_serializer="raw", value_serializer="raw")
    out_topic = app.topic(args.out_topic, key_serializer="raw", value_serializer="raw")
    progress: dict[str, Any] = {"count": 0, "first": 0.0, "done": False}

    @app.agent(source)
    async def floor(stream: faust.StreamT[bytes]) -> None:
        async for value in stream:
            if not progress["first"]:
                progress["first"] = time.monotonic()
            event = orjson.loads(value)
            output = {"user_id": event["user_id"], "event_id": event["event_id"]}
            await out_topic.send(key=event["user_id"].encode(), value=orjson.dumps(output))
            progress["count"] += 1
            if progress["count"] >= args.limit and not progress["done"]:
                progress["done"] = True
                seconds = time.monotonic() - progress["first"]
                result = {
                    "events": progress["count"],
                    "seconds": seconds,
                    "events_per_second": progress["count"] / seconds,
                }
                sys.stdout.write(RESULT_MARKER + orjson.dumps(result).decode() + "\n")
                sys.stdout.flush()

    return app


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Return the child's options."""
    parser = argparse.ArgumentParser(prog="python -m engine.bench.faust_floor")
    parser.add_argument("topics", nargs="+", metavar="TOPIC", help="input topics")
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--app-id", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--out-topic", required=True)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--limit", type=int, required=True, help="events to handle")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the floor agent until SIGTERM."""
    args = parse_args(argv)
    app = build_floor_app(args)
    worker = faust.Worker(app, loglevel="WARNING", quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
