"""The web server of a worker running several processes: one /health and one /metrics.

aiohttp, as the gateway and the console: the parent runs no Faust app (Faust would want a
broker URL and a data directory for nothing). Each child serves its own endpoints on
127.0.0.1; this server asks every child and answers for the whole worker:

* /health: 200 only when every child answers 200; the body sums or merges the children's
  figures (partitions, partition states, records committed) and lists each child;
* /metrics: every child's samples with a ``process="<k>"`` label, under one HELP and TYPE
  per family, then the parent's own metrics. Labelled, not summed: a child's restart resets
  only its own series, which ``rate()`` handles as a counter reset, while a sum would drop
  and count the whole worker's total again; and every rule of deploy/prometheus aggregates
  with ``sum by (...)``, so the extra label changes no result;
* /engagements and /diagnose/ID: answered by the first child that answers (every child
  runs the same catalog and reads the same topics).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from engine.errors import DeclicError

if TYPE_CHECKING:
    from engine.supervisor import Supervisor

log = logging.getLogger("declic.supervisor")

# How long the parent's /health and /metrics wait for a child: under the readiness probe's
# 3 s and a scrape's 10 s, so that one stuck child does not take every child's answer with
# it (a single-process worker this late fails its probes too).
CHILD_TIMEOUT_SECONDS = 2.5
# /engagements and /diagnose may compute for a while.
FORWARD_TIMEOUT_SECONDS = 10.0
SHUTDOWN_SECONDS = 5.0
_SUPERVISOR: web.AppKey[Supervisor] = web.AppKey("supervisor")
_SESSION: web.AppKey[aiohttp.ClientSession] = web.AppKey("session")
# One label of a sample (the value with its escapes), and a first look for a `process` one.
_LABEL_PAIR = re.compile(r'\s*(?P<name>[a-zA-Z_]\w*)\s*=\s*"(?P<value>(?:[^"\\]|\\.)*)"\s*,?')
_OWN_PROCESS_LABEL = re.compile(r"(?:^|[,\s])process\s*=")


@dataclass(frozen=True, slots=True)
class ChildAnswer:
    """What one child answered on a path: HTTP status and body, or why it did not."""

    index: int
    status: int | None
    body: bytes
    content_type: str
    error: str | None = None


def combine_health(
    children: Sequence[dict[str, Any]], answers: Sequence[ChildAnswer]
) -> tuple[bool, dict[str, Any]]:
    """Return whether every child is healthy, and the worker's /health body.

    ``children`` describes each child (Supervisor.describe); ``answers`` are their /health.
    """
    problems: list[str] = []
    partitions: set[int] = set()
    states: dict[str, str] = {}
    committed: dict[str, float] = {}
    listed = []
    for child, answer in zip(children, answers, strict=True):
        body: dict[str, Any] = {}
        if answer.status is not None:
            try:
                decoded = orjson.loads(answer.body)
                body = decoded if isinstance(decoded, dict) else {}
            except orjson.JSONDecodeError:
                body = {}
        index = child["process"]
        if child["pid"] is None:
            problems.append(f"process {index}: not running (restarting)")
        elif answer.status is None:
            problems.append(f"process {index}: no answer ({answer.error})")
        elif answer.status != 200:
            reasons = body.get("problems") or [f"HTTP {answer.status}"]
            problems += [f"process {index}: {reason}" for reason in reasons]
        own = [int(p) for p in body.get("partitions") or []]
        partitions.update(own)
        states.update({str(p): str(s) for p, s in (body.get("partition_states") or {}).items()})
        for topic, count in (body.get("records_committed") or {}).items():
            committed[str(topic)] = committed.get(str(topic), 0) + count
        listed.append(
            {
                **child,
                "status": "ok" if answer.status == 200 else "unavailable",
                "partitions": sorted(own),
                "partition_states": body.get("partition_states") or {},
                "problems": body.get("problems") or [],
            }
        )
    ready = not problems
    document = {
        "status": "ok" if ready else "unavailable",
        "problems": problems,
        "processes": len(listed),
        "partitions": sorted(partitions),
        "partition_states": dict(sorted(states.items(), key=lambda item: int(item[0]))),
        "records_committed": committed,
        "children": listed,
    }
    return ready, document


def _labelled(line: str, index: int) -> str:
    """Return a sample line with ``process="<index>"`` as its first label; a ``process``
    label of the child's own becomes ``exported_process`` (as Prometheus renames a target's
    label that collides: a series may not name a label twice)."""
    label = f'process="{index}"'
    cut = min((at for at in (line.find("{"), line.find(" ")) if at >= 0), default=len(line))
    if line[cut : cut + 1] != "{":
        return f"{line[:cut]}{{{label}}}{line[cut:]}"
    rest = line[cut + 1 :]
    if _OWN_PROCESS_LABEL.search(rest):
        pairs, end = [], 0
        while (pair := _LABEL_PAIR.match(rest, end)) is not None:
            name = "exported_process" if pair["name"] == "process" else pair["name"]
            pairs.append(f'{name}="{pair["value"]}"')
            end = pair.end()
        rest = ",".join(pairs) + rest[end:]
    closing = "" if rest.startswith("}") else ","
    return f"{line[: cut + 1]}{label}{closing}{rest}"


def merge_metrics(own: str, children: Sequence[tuple[int, str]]) -> str:
    """Return one Prometheus text page: ``own`` as is, then each child's samples labelled
    with its index, every family's HELP and TYPE once (a family's lines must be together)."""
    headers: dict[str, dict[str, str]] = {}
    samples: dict[str, list[str]] = {}
    for index, text in children:
        family: str | None = None
        for line in text.splitlines():
            if not line.strip():
                continue
            if line.startswith("#"):
                parts = line.split(" ", 3)
                if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                    family = parts[2]
                    headers.setdefault(family, {}).setdefault(parts[1], line)
                    samples.setdefault(family, [])
                continue
            if family is None:  # a sample without HELP or TYPE: untyped, its own family
                family = line.split("{", 1)[0].split(" ", 1)[0]
                samples.setdefault(family, [])
                headers.setdefault(family, {})
            samples[family].append(_labelled(line, index))
    lines = [own.rstrip("\n")] if own.strip() else []
    for family, own_samples in samples.items():
        header = headers.get(family, {})
        lines += [header[kind] for kind in ("HELP", "TYPE") if kind in header]
        lines += own_samples
    return "\n".join(lines) + "\n"


async def _ask(
    session: aiohttp.ClientSession,
    index: int,
    base_url: str | None,
    path: str,
    seconds: float = CHILD_TIMEOUT_SECONDS,
) -> ChildAnswer:
    if base_url is None:
        return ChildAnswer(index, None, b"", "", "not running")
    timeout = aiohttp.ClientTimeout(total=seconds)
    try:
        async with session.get(base_url + path, timeout=timeout) as response:
            return ChildAnswer(
                index,
                response.status,
                await response.read(),
                response.headers.get("Content-Type", "application/octet-stream"),
            )
    except (aiohttp.ClientError, TimeoutError, OSError) as error:
        return ChildAnswer(index, None, b"", "", str(error) or type(error).__name__)


def _urls(supervisor: Supervisor) -> list[str | None]:
    return [child.base_url if child.pid is not None else None for child in supervisor.children]


async def _ask_every(
    supervisor: Supervisor, session: aiohttp.ClientSession, path: str
) -> list[ChildAnswer]:
    """Ask every child; note, for the supervisor's watch, each one that answered."""
    urls = _urls(supervisor)
    pids = [child.pid for child in supervisor.children]
    answers = await asyncio.gather(*(_ask(session, k, url, path) for k, url in enumerate(urls)))
    now = time.monotonic()
    for child, pid, answer in zip(supervisor.children, pids, answers, strict=True):
        if answer.status is not None and child.pid == pid:  # not a predecessor's answer
            child.answered_at = now
    return list(answers)


async def _ask_all(request: web.Request, path: str) -> list[ChildAnswer]:
    return await _ask_every(request.app[_SUPERVISOR], request.app[_SESSION], path)


async def watch_children(supervisor: Supervisor, session: aiohttp.ClientSession) -> None:
    """Ask every child's /health now and then, so that the supervisor knows when each last
    answered (any status), and kills one silent too long (RestartPolicy)."""
    while True:
        try:
            await _ask_every(supervisor, session, "/health")
        except Exception:  # a bug here must not silently end the watch
            log.exception("cannot ask the engine processes for /health")
        await asyncio.sleep(supervisor.policy.probe_seconds)


async def _health(request: web.Request) -> web.Response:
    supervisor = request.app[_SUPERVISOR]
    children = supervisor.describe()  # before asking: the pids the answers come from
    ready, body = combine_health(children, await _ask_all(request, "/health"))
    body["worker_id"] = supervisor.settings.worker_id
    return web.json_response(body, status=200 if ready else 503, dumps=_dumps)


async def _metrics(request: web.Request) -> web.Response:
    supervisor = request.app[_SUPERVISOR]
    answers = await _ask_all(request, "/metrics")
    pages = [(a.index, a.body.decode()) for a in answers if a.status == 200]
    own = generate_latest(supervisor.metrics.registry).decode()
    return web.Response(
        body=merge_metrics(own, pages).encode(), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


async def _first_answer(request: web.Request) -> web.Response:
    """Answer with the first child that answers the same path and query."""
    supervisor = request.app[_SUPERVISOR]
    session = request.app[_SESSION]
    reasons = []
    for index, url in enumerate(_urls(supervisor)):
        answer = await _ask(session, index, url, request.path_qs, FORWARD_TIMEOUT_SECONDS)
        if answer.status is not None:
            return web.Response(
                body=answer.body,
                status=answer.status,
                headers={"Content-Type": answer.content_type},
            )
        reasons.append(f"process {index}: {answer.error}")
    return web.json_response(
        {"error": "no engine process answers", "problems": reasons}, status=503
    )


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def build_web_app(supervisor: Supervisor) -> web.Application:
    """Return the parent's web application."""
    app = web.Application()
    app[_SUPERVISOR] = supervisor

    async def session_context(app: web.Application) -> Any:
        async with aiohttp.ClientSession() as session:
            app[_SESSION] = session
            watch = asyncio.create_task(watch_children(supervisor, session))
            yield
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch

    app.cleanup_ctx.append(session_context)
    app.router.add_get("/health", _health)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/engagements", _first_answer)
    app.router.add_get("/diagnose/{engagement_id}", _first_answer)
    return app


async def start_web(supervisor: Supervisor) -> web.AppRunner:
    """Start serving on the configured web host and port; return the runner to clean up."""
    runner = web.AppRunner(
        build_web_app(supervisor), access_log=None, shutdown_timeout=SHUTDOWN_SECONDS
    )
    await runner.setup()
    host, port = supervisor.settings.web_host, supervisor.settings.web_port
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as error:
        await runner.cleanup()
        raise DeclicError(
            f"cannot listen on {host}:{port}: {error.strerror or error} "
            "(DECLIC_WEB_HOST, DECLIC_WEB_PORT)"
        ) from None
    return runner
