"""How many connected SSE streams one `declic gateway` process holds, and at what cost.

`python -m engine.bench.gateway_streams --streams 5000` runs against a running broker
(DECLIC_KAFKA_BOOTSTRAP or --kafka-bootstrap), on topics of its own (prefix
``streambench-<run>-``, deleted at the end). It starts `declic gateway` as a child process
(an HS256 secret of its own, rate limits raised: every stream comes from one address),
signs a token per user with that secret, as an app's backend does (valid for the whole
run: a stream ends when its token expires), and opens one SSE stream per user (N distinct
users) with aiohttp's client, one session, all kept open. The soft limit of open files
(RLIMIT_NOFILE) is raised to the hard limit first, so that the gateway, started after,
inherits it.

Measured: the gateway's resident memory (VmRSS) before and after opening the streams (the
cost of one stream), its CPU while idle with the N streams (a keep-alive every 15 s each),
then, with deliveries written straight to `deliveries` for a sample of the connected users
(a transactional producer, one transaction per delivery, at a modest rate), the time from
each delivery's Kafka timestamp (and from its commit acknowledged) to its arrival on the
client's stream. declic_gateway_streams must equal N throughout. The client runs on the
same machine as the gateway and the broker: its CPU is reported too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import secrets
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaProducer

from engine.bench import kafka_io
from engine.bench.browser import GatewayProcess
from engine.bench.measure import percentile
from engine.core.deliveries import delivery_id
from engine.core.timestamps import format_timestamp
from engine.errors import DeclicError
from engine.gateway.tokens import MAX_TOKEN_SECONDS, sign_token
from engine.log_setup import configure_command_logging
from engine.settings import Settings, load_settings
from engine.stream.topics import ensure_topics

STREAMS_METRIC = "declic_gateway_streams"
# Requests per second allowed per user and per address (the settings' maximum): every
# stream of the bench comes from 127.0.0.1.
GENEROUS_RATE = "100000"
# Descriptors besides the streams' (Kafka clients, the listening socket, logs).
SPARE_DESCRIPTORS = 256
# After the streams are open, before the resident memory is read again.
SETTLE_SECONDS = 5.0
STREAMS_WAIT_SECONDS = 60.0
# Tokens are valid for the idle time and the publishing time, plus this (opening the
# streams, waiting for them, draining).
TOKEN_MARGIN_SECONDS = 1800
# After the last delivery, how long arrivals may keep coming.
DRAIN_SECONDS = 30.0
ENGAGEMENT = "stream-bench"
MESSAGE = {
    "layout": "banner",
    "title": "Back in stock",
    "body": "The item on your list is available again.",
    "buttons": [{"id": "see", "label": "See it", "action": "dismiss"}],
}


@dataclass(frozen=True, slots=True)
class Options:
    """What to measure."""

    streams: int = 5_000
    idle: float = 60.0
    deliveries: int = 300
    rate: float = 10.0
    sample: int = 100
    open_concurrency: int = 100
    partitions: int = 4
    kafka_bootstrap: str | None = None
    keep_topics: bool = False


@dataclass(slots=True)
class Arrivals:
    """What the client's streams received."""

    keepalives: int = 0
    ended: int = 0
    # delivery_id -> epoch ms of its arrival on the stream
    deliveries: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Sent:
    """One delivery written to the topic."""

    delivery_id: str
    kafka_ms: int  # the record's timestamp (CreateTime, set when sent)
    committed_ms: float  # when the commit of its transaction was acknowledged


def _note(text: str) -> None:
    print(f"  {text}", file=sys.stderr, flush=True)


def raise_open_files_limit() -> int:
    """Raise this process's soft limit of open files to its hard limit (children inherit
    it); return the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1_048_576)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def resident_mib(pid: int) -> float:
    """Return a process's resident memory (VmRSS), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise DeclicError(f"no VmRSS in /proc/{pid}/status")


def cpu_seconds(pid: int) -> float:
    """Return the CPU time (user and system) a process used so far."""
    text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    fields = text[text.rindex(")") + 2 :].split()
    # After the name: state is field 3, utime 14 and stime 15 (1-based, proc(5)).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_files_limit(pid: int) -> int:
    """Return a process's soft limit of open files, from /proc/<pid>/limits."""
    for line in Path(f"/proc/{pid}/limits").read_text(encoding="ascii").splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise DeclicError(f"no open files limit in /proc/{pid}/limits")


def delivery_record(user_id: str, event_id: str, created_ms: int) -> dict[str, Any]:
    """Return a delivery record as a worker writes it (valid against its schema)."""
    return {
        "delivery_id": delivery_id(ENGAGEMENT, user_id, event_id),
        "engagement_id": ENGAGEMENT,
        "engagement_version": 1,
        "variant": "default",
        "user_id": user_id,
        "trigger_event_id": event_id,
        "message": MESSAGE,
        "triggered_at": format_timestamp(created_ms - 20),
        "created_at": format_timestamp(created_ms),
        "expires_at": format_timestamp(created_ms + 3_600_000),
        "test": False,
    }


class Bench:
    """The gateway child, the client's session and its streams."""

    def __init__(self, options: Options, settings: Settings, gateway: GatewayProcess) -> None:
        self.options = options
        self.settings = settings
        self.gateway = gateway
        self.arrivals = Arrivals()
        self.responses: list[aiohttp.ClientResponse] = []
        self.readers: list[asyncio.Task[None]] = []
        self.session: aiohttp.ClientSession | None = None

    @property
    def client(self) -> aiohttp.ClientSession:
        if self.session is None:
            raise DeclicError("the client's session is not open")
        return self.session

    def open_session(self) -> None:
        connector = aiohttp.TCPConnector(limit=self.options.streams + 64, limit_per_host=0)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=None)
        self.session = aiohttp.ClientSession(connector=connector, timeout=timeout)

    async def close(self) -> None:
        """Stop reading and close every stream and the session."""
        for reader in self.readers:
            reader.cancel()
        await asyncio.gather(*self.readers, return_exceptions=True)
        for response in self.responses:
            response.close()
        if self.session is not None:
            await self.session.close()
            self.session = None

    async def streams_metric(self) -> float:
        """Return the gateway's declic_gateway_streams."""
        from prometheus_client.parser import text_string_to_metric_families

        async with self.client.get(f"{self.gateway.base_url}/metrics") as reply:
            text = await reply.text()
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == STREAMS_METRIC
        )

    def tokens(self, users: list[str]) -> list[str]:
        """Return a token per user, valid until well after the run's end."""
        options = self.options
        seconds = options.idle + options.deliveries / options.rate + TOKEN_MARGIN_SECONDS
        seconds = min(seconds, MAX_TOKEN_SECONDS - 60)
        secret = self.gateway.token_secret
        return [sign_token(secret, user, seconds=int(seconds)) for user in users]

    async def open_streams(self, users: list[str], tokens: list[str]) -> None:
        """Open one stream per user and read each in a task of its own."""
        limit = asyncio.Semaphore(self.options.open_concurrency)

        async def one(user: str, token: str) -> None:
            async with limit:
                reply = await self.client.get(
                    f"{self.gateway.base_url}/v1/users/{user}/stream",
                    headers={"Authorization": f"Bearer {token}", "Accept": "text/event-stream"},
                )
                if reply.status != 200:
                    body = await reply.text()
                    reply.close()
                    raise DeclicError(f"stream of {user}: {reply.status} {body[:200]}")
                self.responses.append(reply)
                self.readers.append(asyncio.create_task(self._read(reply)))

        await asyncio.gather(*(one(user, token) for user, token in zip(users, tokens, strict=True)))

    async def _read(self, reply: aiohttp.ClientResponse) -> None:
        arrivals = self.arrivals
        try:
            async for line in reply.content:
                if line.startswith(b"data: "):
                    arrived = time.time() * 1000
                    arrivals.deliveries[orjson.loads(line[6:])["delivery_id"]] = arrived
                elif line.startswith(b": keep-alive"):
                    arrivals.keepalives += 1
        except aiohttp.ClientError:
            pass
        arrivals.ended += 1

    async def wait_streams(self, expected: int) -> float:
        """Wait until the gateway counts `expected` streams (or a deadline); return its count."""
        deadline = time.monotonic() + STREAMS_WAIT_SECONDS
        count = await self.streams_metric()
        while count != expected and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            count = await self.streams_metric()
        return count

    async def publish(self, users: list[str]) -> list[Sent]:
        """Write deliveries for `users` (in turn) at the rate asked, one transaction each."""
        producer = AIOKafkaProducer(
            **self.settings.kafka_producer_options(),
            transactional_id=f"{self.settings.topic_prefix}producer-{uuid.uuid4().hex[:6]}",
            linger_ms=0,
        )
        await producer.start()
        topic = self.settings.topic("deliveries")
        interval = 1.0 / self.options.rate
        sent: list[Sent] = []
        try:
            begin = time.monotonic()
            for index in range(self.options.deliveries):
                pause = begin + index * interval - time.monotonic()
                if pause > 0:
                    await asyncio.sleep(pause)
                user = users[index % len(users)]
                now_ms = int(time.time() * 1000)
                record = delivery_record(user, f"e-{uuid.uuid4().hex}", now_ms)
                async with producer.transaction():
                    await producer.send_and_wait(
                        topic, orjson.dumps(record), key=user.encode(), timestamp_ms=now_ms
                    )
                sent.append(Sent(record["delivery_id"], now_ms, time.time() * 1000))
        finally:
            await producer.stop()
        return sent

    async def drain(self, sent: list[Sent]) -> None:
        """Wait until every delivery sent arrived, or DRAIN_SECONDS."""
        deadline = time.monotonic() + DRAIN_SECONDS
        while time.monotonic() < deadline:
            if all(item.delivery_id in self.arrivals.deliveries for item in sent):
                return
            await asyncio.sleep(0.2)


def _figures(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "p50_ms": round(percentile(values, 0.50), 1),
        "p99_ms": round(percentile(values, 0.99), 1),
        "max_ms": round(max(values), 1),
    }


def _client_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _settings(options: Options, prefix: str) -> Settings:
    overrides: dict[str, Any] = {"topic_prefix": prefix, "partitions": options.partitions}
    if options.kafka_bootstrap:
        overrides["kafka_bootstrap"] = options.kafka_bootstrap
    return load_settings(overrides)


async def _measure(bench: Bench, pid: int) -> dict[str, Any]:
    """Open the streams, keep them idle, then push deliveries; return the figures."""
    options = bench.options
    run_id = bench.settings.topic_prefix.split("-")[1]
    users = [f"streams-{run_id}-u{index:06d}" for index in range(options.streams)]
    bench.open_session()
    tokens = bench.tokens(users)
    await asyncio.sleep(2.0)
    rss_before = resident_mib(pid)
    cpu_open, client_open, started = cpu_seconds(pid), _client_cpu(), time.monotonic()
    _note(f"gateway at {rss_before:,.0f} MiB; opening {options.streams:,} streams")
    await bench.open_streams(users, tokens)
    open_seconds = time.monotonic() - started
    cpu_open, client_open = cpu_seconds(pid) - cpu_open, _client_cpu() - client_open
    counted = await bench.wait_streams(options.streams)
    await asyncio.sleep(SETTLE_SECONDS)
    rss_after = resident_mib(pid)
    _note(
        f"{counted:,.0f} streams counted, gateway at {rss_after:,.0f} MiB; idle {options.idle:g} s"
    )
    keepalives = bench.arrivals.keepalives
    cpu_idle, client_idle, started = cpu_seconds(pid), _client_cpu(), time.monotonic()
    await asyncio.sleep(options.idle)
    idle_seconds = time.monotonic() - started
    cpu_idle, client_idle = cpu_seconds(pid) - cpu_idle, _client_cpu() - client_idle
    keepalives = bench.arrivals.keepalives - keepalives
    counted_idle = await bench.streams_metric()
    sample = random.sample(users, min(options.sample, len(users)))
    _note(f"publishing {options.deliveries} deliveries for {len(sample)} users")
    cpu_push, started = cpu_seconds(pid), time.monotonic()
    sent = await bench.publish(sample)
    await bench.drain(sent)
    cpu_push = (cpu_seconds(pid) - cpu_push) / (time.monotonic() - started)
    arrived = bench.arrivals.deliveries
    counted_end = await bench.streams_metric()
    per_stream_kib = (rss_after - rss_before) * 1024 / options.streams
    return {
        "streams": options.streams,
        "open_files_limit": {"client": resource.getrlimit(resource.RLIMIT_NOFILE)[0]},
        "open_seconds": round(open_seconds, 1),
        "open_gateway_cpu_s": round(cpu_open, 1),
        "open_client_cpu_s": round(client_open, 1),
        "gateway_rss_mib": {
            "before": round(rss_before, 1),
            "after": round(rss_after, 1),
            "end": round(resident_mib(pid), 1),
        },
        "per_stream_kib": round(per_stream_kib, 1),
        "idle_seconds": round(idle_seconds, 1),
        "idle_gateway_cpu_percent": round(100 * cpu_idle / idle_seconds, 2),
        "idle_client_cpu_percent": round(100 * client_idle / idle_seconds, 2),
        "idle_keepalives": keepalives,
        "streams_metric": {"open": counted, "idle": counted_idle, "end": counted_end},
        "streams_ended_early": bench.arrivals.ended,
        "deliveries_sent": len(sent),
        "deliveries_arrived": sum(1 for item in sent if item.delivery_id in arrived),
        "push_gateway_cpu_percent": round(100 * cpu_push, 2),
        "kafka_timestamp_to_arrival": _figures(
            [
                arrived[item.delivery_id] - item.kafka_ms
                for item in sent
                if item.delivery_id in arrived
            ]
        ),
        "commit_acknowledged_to_arrival": _figures(
            [
                arrived[item.delivery_id] - item.committed_ms
                for item in sent
                if item.delivery_id in arrived
            ]
        ),
        "client_rss_mib": round(resident_mib(os.getpid()), 1),
    }


async def _run_async(options: Options, scratch: Path) -> dict[str, Any]:
    run_id = uuid.uuid4().hex[:6]
    prefix = f"streambench-{run_id}-"
    settings = _settings(options, prefix)
    gateway = GatewayProcess(
        settings,
        scratch / "gateway.log",
        token_secret=secrets.token_hex(32),
        demo=False,
        variables={
            "DECLIC_GATEWAY_RATE_PER_ADDRESS": GENEROUS_RATE,
            "DECLIC_GATEWAY_RATE_PER_USER": GENEROUS_RATE,
        },
    )
    bench = Bench(options, settings, gateway)
    try:
        await ensure_topics(settings)
        gateway.start()
        await asyncio.to_thread(gateway.wait_ready)
        pid = gateway.pid
        if pid is None:
            raise DeclicError("the gateway is not running")
        child_limit = open_files_limit(pid)
        if child_limit < options.streams + SPARE_DESCRIPTORS:
            raise DeclicError(
                f"the gateway may open {child_limit} files: too few for {options.streams} streams"
            )
        result = await _measure(bench, pid)
        result["open_files_limit"]["gateway"] = child_limit
        return result
    finally:
        await bench.close()
        await asyncio.to_thread(gateway.stop)
        if not options.keep_topics:
            await kafka_io.delete_topics_with_prefix(settings, prefix)


def run(options: Options) -> dict[str, Any]:
    """Run the measure; return its figures. The gateway's log is kept if it fails."""
    limit = raise_open_files_limit()
    if limit < options.streams + SPARE_DESCRIPTORS:
        raise DeclicError(
            f"this process may open {limit} files (the hard limit, `ulimit -Hn`): too few "
            f"for {options.streams} streams and {SPARE_DESCRIPTORS} more"
        )
    scratch = Path(tempfile.mkdtemp(prefix="declic-gateway-streams-"))
    try:
        result = asyncio.run(_run_async(options, scratch))
    except BaseException:
        _note(f"kept the gateway's log in {scratch}")
        raise
    shutil.rmtree(scratch, ignore_errors=True)
    result["options"] = asdict(options)
    return result


def problems(result: dict[str, Any]) -> list[str]:
    """Return what went wrong: streams not counted, ended early, deliveries missing."""
    found = []
    for moment, count in result["streams_metric"].items():
        if count != result["streams"]:
            found.append(f"{STREAMS_METRIC} was {count:g} ({moment}), not {result['streams']}")
    if result["streams_ended_early"]:
        found.append(f"{result['streams_ended_early']} streams ended before the end")
    missing = result["deliveries_sent"] - result["deliveries_arrived"]
    if missing:
        found.append(f"{missing} deliveries did not arrive within {DRAIN_SECONDS:g} s")
    return found


def render(result: dict[str, Any]) -> str:
    """Return the figures as a few lines of text."""
    rss = result["gateway_rss_mib"]

    def latency(name: str, figures: dict[str, float]) -> str:
        if not figures:
            return f"{name:<38} no data"
        return (
            f"{name:<38} p50 {figures['p50_ms']:>7.1f} ms   p99 {figures['p99_ms']:>7.1f} ms"
            f"   max {figures['max_ms']:>7.1f} ms"
        )

    metric = result["streams_metric"]
    return "\n".join(
        [
            f"streams: {result['streams']:,} (open files limit: client "
            f"{result['open_files_limit']['client']:,}, gateway "
            f"{result['open_files_limit'].get('gateway', 0):,})",
            f"opened in {result['open_seconds']:g} s (gateway CPU {result['open_gateway_cpu_s']:g}"
            f" s, client CPU {result['open_client_cpu_s']:g} s)",
            f"{STREAMS_METRIC}: {metric['open']:g} open, {metric['idle']:g} after idling, "
            f"{metric['end']:g} at the end",
            f"gateway RSS: {rss['before']:,.1f} -> {rss['after']:,.1f} MiB "
            f"({result['per_stream_kib']:.1f} KiB per stream), {rss['end']:,.1f} MiB at the end",
            f"idle {result['idle_seconds']:g} s: gateway CPU {result['idle_gateway_cpu_percent']:g}"
            f"% of a core, client CPU {result['idle_client_cpu_percent']:g}%, "
            f"{result['idle_keepalives']:,} keep-alives received",
            f"deliveries: {result['deliveries_arrived']} of {result['deliveries_sent']} arrived; "
            f"gateway CPU {result['push_gateway_cpu_percent']:g}% meanwhile",
            latency("Kafka timestamp -> on the client", result["kafka_timestamp_to_arrival"]),
            latency(
                "commit acknowledged -> on the client", result["commit_acknowledged_to_arrival"]
            ),
            f"client RSS: {result['client_rss_mib']:,.1f} MiB",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    """Parse the options, run, print the figures; 1 if a check failed, 2 if it could not run."""
    parser = argparse.ArgumentParser(
        prog="python -m engine.bench.gateway_streams",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="example: python -m engine.bench.gateway_streams --streams 5000 --idle 60",
    )
    parser.add_argument(
        "--streams", type=int, default=5_000, help="SSE streams, one user each (default 5000)"
    )
    parser.add_argument(
        "--idle", type=float, default=60.0, help="seconds idle with every stream open (default 60)"
    )
    parser.add_argument(
        "--deliveries", type=int, default=300, help="deliveries written, in all (default 300)"
    )
    parser.add_argument(
        "--rate", type=float, default=10.0, help="deliveries per second (default 10)"
    )
    parser.add_argument(
        "--sample", type=int, default=100, help="connected users they go to (default 100)"
    )
    parser.add_argument(
        "--open-concurrency",
        type=int,
        default=100,
        help="streams being opened at once (default 100)",
    )
    parser.add_argument(
        "--partitions", type=int, default=4, help="partitions of the topics (default 4)"
    )
    parser.add_argument(
        "--kafka-bootstrap",
        help="the broker (default: DECLIC_KAFKA_BOOTSTRAP, else 127.0.0.1:19092)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--keep-topics", action="store_true", help="do not delete the topics")
    args = parser.parse_args(argv)
    numbers = (args.streams, args.deliveries, args.sample, args.open_concurrency, args.partitions)
    if min(numbers) < 1 or args.rate <= 0 or args.idle < 0:
        parser.error("every number must be positive")
    if args.idle + args.deliveries / args.rate + TOKEN_MARGIN_SECONDS > MAX_TOKEN_SECONDS - 60:
        parser.error("--idle and --deliveries / --rate must leave the run under a day")
    options = Options(
        streams=args.streams,
        idle=args.idle,
        deliveries=args.deliveries,
        rate=args.rate,
        sample=args.sample,
        open_concurrency=args.open_concurrency,
        partitions=args.partitions,
        kafka_bootstrap=args.kafka_bootstrap,
        keep_topics=args.keep_topics,
    )
    configure_command_logging("WARNING")
    try:
        result = run(options)
    except (DeclicError, aiohttp.ClientError, OSError) as error:
        print(f"gateway_streams: error: {error}", file=sys.stderr)
        return 2
    print(render(result))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    found = problems(result)
    for problem in found:
        print(f"gateway_streams: {problem}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
