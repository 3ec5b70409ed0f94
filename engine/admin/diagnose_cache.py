"""The worker's GET /diagnose: reports built off the worker's event loop, from one shared read.

Why: a diagnosis reads three topics from their start (engagement-stats, engagements,
engagement-changelog) and decodes them, which is CPU work. Done on the worker's own event
loop, it holds up the engine's batch loop, and N concurrent requests do it N times. Here:

* reads and report building run in one thread of their own, off the worker's loop (a read
  runs `asyncio.run` there, with its own event loop and Kafka clients);
* a read is single-flight: requests arriving while one is under way await its result;
* the result of a read (the three topics, the same for every engagement) serves every
  request for DIAGNOSE_CACHE_SECONDS after it finished, and so does each report built
  from it, kept by engagement and `since`. A report is as of its read: its
  `generated_at` is when that read began.

A failed read is not kept: the requests waiting for it get the error, the next request
reads again. `answer` turns errors into HTTP statuses with a JSON body: 400 for a bad
`since`, 503 when Kafka cannot be read.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import orjson

from engine.admin.diagnose import Snapshot, read_snapshot, report_from
from engine.core.timestamps import parse_timestamp
from engine.errors import ConfigError, InvalidRecord
from engine.retry import KAFKA_UNAVAILABLE
from engine.settings import Settings

log = logging.getLogger(__name__)

DIAGNOSE_CACHE_SECONDS = 5.0
# A read that has not finished by then (a broker lost mid-read) fails with 503.
DIAGNOSE_READ_TIMEOUT_SECONDS = 60.0
# Reports kept per read at most: beyond, they are built for each request.
MAX_REPORTS_PER_READ = 1024

_ReportKey = tuple[str, int | None]


@dataclass(slots=True)
class _Read:
    snapshot: asyncio.Future[Snapshot]
    expires: float = float("inf")  # monotonic; set when the read succeeds
    reports: dict[_ReportKey, asyncio.Future[bytes]] = field(default_factory=dict)


class DiagnoseCache:
    """Diagnosis reports as JSON, from a shared, briefly kept read, built in a thread."""

    def __init__(
        self,
        reader: Callable[[], Awaitable[Snapshot]],
        unseen_delivery_seconds: int,
        *,
        kafka: str = "Kafka",
        ttl_seconds: float = DIAGNOSE_CACHE_SECONDS,
        read_timeout_seconds: float = DIAGNOSE_READ_TIMEOUT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._reader = reader
        self._unseen_delivery_seconds = unseen_delivery_seconds
        self._kafka = kafka
        self._ttl = ttl_seconds
        self._read_timeout = read_timeout_seconds
        self._clock = clock
        self._executor: ThreadPoolExecutor | None = None
        self._current: _Read | None = None

    @classmethod
    def for_settings(cls, settings: Settings) -> DiagnoseCache:
        """Return the cache of a worker, reading the topics its settings name."""
        return cls(
            lambda: read_snapshot(settings),
            settings.unseen_delivery_seconds,
            kafka=f"Kafka at {settings.kafka_bootstrap}",
        )

    async def answer(self, engagement_id: str, since: str | None) -> tuple[int, bytes]:
        """Return the HTTP status and JSON body answering GET /diagnose/ID?since=SINCE."""
        try:
            since_ms = parse_since(since)
        except ValueError as error:
            return 400, _error("invalid_since", str(error))
        try:
            return 200, await self.report(engagement_id, since_ms)
        except (*KAFKA_UNAVAILABLE, ConfigError) as error:
            log.warning("diagnose %s: cannot read %s: %r", engagement_id, self._kafka, error)
            detail = f"cannot read the diagnose topics from {self._kafka}: {_describe(error)}"
            return 503, _error("kafka_unavailable", detail)
        except Exception as error:
            log.exception("diagnose %s failed", engagement_id)
            return 500, _error("diagnose_failed", _describe(error))

    async def report(self, engagement_id: str, since_ms: int | None) -> bytes:
        """Return the JSON report of one engagement (as `diagnose` builds it)."""
        loop = asyncio.get_running_loop()
        current = self._current
        if current is None or _failed(current.snapshot) or self._clock() >= current.expires:
            current = self._current = _Read(self._run(loop, self._read))
            current.snapshot.add_done_callback(functools.partial(self._read_done, current))
        snapshot = await asyncio.shield(current.snapshot)
        key = (engagement_id, since_ms)
        built = current.reports.get(key)
        if built is None:
            built = self._run(loop, lambda: self._build(snapshot, engagement_id, since_ms))
            if len(current.reports) < MAX_REPORTS_PER_READ:
                current.reports[key] = built
                built.add_done_callback(functools.partial(_drop_failed, current.reports, key))
        return await asyncio.shield(built)

    def _run(self, loop: asyncio.AbstractEventLoop, job: Callable[[], Any]) -> asyncio.Future[Any]:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="declic-diagnose")
        return loop.run_in_executor(self._executor, job)

    def _read(self) -> Snapshot:
        # In the diagnose thread: an event loop of its own for the read's Kafka clients.
        async def read() -> Snapshot:
            return await asyncio.wait_for(self._reader(), self._read_timeout)

        return asyncio.run(read())

    def _read_done(self, read: _Read, _: asyncio.Future[Snapshot]) -> None:
        if not _failed(read.snapshot):
            read.expires = self._clock() + self._ttl

    def _build(self, snapshot: Snapshot, engagement_id: str, since_ms: int | None) -> bytes:
        report = report_from(
            snapshot, engagement_id, snapshot.read_at_ms, since_ms, self._unseen_delivery_seconds
        )
        return orjson.dumps(report.to_json_dict())


def parse_since(text: str | None) -> int | None:
    """Return `since` in epoch ms: given as epoch ms or RFC 3339; raise ValueError if bad."""
    if not text:
        return None
    try:
        return parse_timestamp(int(text) if text.isascii() and text.isdigit() else text)
    except InvalidRecord:
        raise ValueError(
            f"since: expected epoch milliseconds or an RFC 3339 timestamp, got {text!r}"
        ) from None


def _failed(future: asyncio.Future[Any]) -> bool:
    return future.done() and (future.cancelled() or future.exception() is not None)


def _drop_failed(
    reports: dict[_ReportKey, asyncio.Future[bytes]], key: _ReportKey, done: asyncio.Future[bytes]
) -> None:
    if _failed(done) and reports.get(key) is done:
        del reports[key]


def _describe(error: BaseException) -> str:
    return str(error) or type(error).__name__


def _error(kind: str, detail: str) -> bytes:
    return orjson.dumps({"error": kind, "detail": detail})
