"""The worker: a Faust app hosting the engine service, its web endpoints and lifecycle.

Faust runs the process (signals, graceful stop, web server, service tree);
the engine's hot path is the batch loop of `engine.stream.engine`, started as
a Faust service so it stops, and commits, with the worker.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

import faust
from faust.app.base import BootStrategy
from faust.web import Request, Response, View
from mode import Service
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from engine.admin.diagnose_cache import DiagnoseCache
from engine.loop_stall import LoopStallMonitor
from engine.metrics import EngineMetrics
from engine.retry import access_error
from engine.settings import Settings
from engine.stream.engine import Engine

log = logging.getLogger(__name__)


class EngineService(Service):
    """Run the engine's batch loop for as long as the worker runs."""

    def __init__(self, engine: Engine, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.engine = engine
        self._task: asyncio.Task[None] | None = None
        self.loop_stall = LoopStallMonitor(engine.metrics.loop_stall, engine.metrics.loop_stall_max)

    async def on_start(self) -> None:
        settings = self.engine.settings
        log.info(
            "declic worker %s starting: %s",
            settings.worker_id,
            ", ".join(f"{name}={value}" for name, value in settings.describe().items()),
        )
        # SIGUSR1 logs every asyncio task's stack: the way to see what a stuck worker awaits.
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, _log_task_stacks)
        # Started before the engine: stalls while it waits for Kafka or recovers count too.
        self.loop_stall.start()
        # The engine waits for Kafka itself (creating topics first): /health answers 503
        # meanwhile, and the worker never exits for want of a broker.
        self._task = asyncio.create_task(self._run(), name="declic-engine")

    async def _run(self) -> None:
        try:
            await self.engine.run()
        except asyncio.CancelledError:
            raise
        except Exception as error:
            refused = access_error(error)
            if refused is None:
                log.exception("engine stopped on an unrecoverable error; stopping the worker")
            else:
                # Retrying cannot help: a clear line, and exit status 3 (see `declic worker`).
                settings = self.engine.settings
                user = settings.kafka_sasl_username
                log.error(
                    "engine stopped: Kafka at %s refused this worker%s: %s; stopping the worker",
                    settings.kafka_bootstrap,
                    f" (user {user!r})" if user else "",
                    refused,
                )
            # Crash the whole worker, not this service alone: the process exits non-zero
            # and its supervisor restarts it from the last commit.
            await self.crash(refused or error)

    async def on_stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.loop_stall.stop()


def _log_task_stacks() -> None:
    for task in asyncio.all_tasks():
        frames: list[str] = []
        awaited: Any = task.get_coro()
        while awaited is not None:
            frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
            if frame is not None:
                frames.append(
                    f"  {frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}"
                )
            awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
        log.warning("task %s awaits:\n%s", task.get_name(), "\n".join(frames))


class _WebOnly(BootStrategy):
    """Start Faust's web server and nothing that connects to Kafka."""

    enable_kafka = False


def engine_health(engine: Engine) -> tuple[bool, dict[str, Any]]:
    """Return whether the worker serves (Kafka reached, catalog loaded and followed), and why.

    ``partitions`` lists the partitions being processed; ``partition_states`` every
    partition assigned, with its state (recovering ones are not processed yet).
    """
    catalog = engine.catalog
    problems = []
    if engine.waiting_for is not None:
        problems.append(f"waiting for {engine.waiting_for}")
    if not catalog.ready.is_set():
        problems.append("engagement catalog not loaded")
    elif not catalog.following:
        problems.append(catalog.problem or "engagement catalog not followed")
    body = {
        "status": "ok" if not problems else "unavailable",
        "problems": problems,
        "catalog_loaded": catalog.ready.is_set(),
        "catalog_following": catalog.following,
        "engagements": len(catalog.catalog),
        "partitions": engine.partitions,
        "partition_states": engine.partition_states(),
        "worker_id": engine.settings.worker_id,
        "records_committed": dict(engine.records_committed),
    }
    return not problems, body


def faust_broker_url(settings: Settings) -> str:
    """Return Faust's broker URL for the configured bootstrap servers."""
    return ";".join(f"kafka://{server.strip()}" for server in settings.kafka_bootstrap.split(","))


def build_app(settings: Settings, registry: EngineMetrics | None = None) -> faust.App:
    """Return a Faust app running the engine, with /metrics, /health and /engagements."""
    metrics = registry if registry is not None else EngineMetrics()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = Engine(settings, metrics)
    app = faust.App(
        f"{settings.topic_prefix}{settings.app_id}-worker",
        broker=faust_broker_url(settings),
        datadir=str(settings.data_dir / "faust"),
        web_enabled=True,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_port=settings.web_port,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
    )
    # The engine consumes and produces with its own clients: Faust's consumer would only add
    # a second group to join, and its producer a connection that must succeed at start (a
    # worker must start while a broker, or all of them, are down). Faust runs the process
    # and the web server only, and never connects to Kafka.
    app.producer_only = True
    app.boot_strategy = _WebOnly(app)
    # An instance, not a class: Faust starts it with the app and stops it on shutdown.
    app.service(EngineService(engine))  # type: ignore[arg-type]

    @app.page("/metrics")
    class MetricsView(View):
        async def get(self, request: Request) -> Response:
            engine.fold_committed()  # a scrape sees every count committed so far
            # aiohttp refuses a charset in content_type=, so the header carries it.
            return self.bytes(
                generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
            )

    @app.page("/health")
    class HealthView(View):
        async def get(self, request: Request) -> Response:
            ready, body = engine_health(engine)
            return self.json(body, status=200 if ready else 503)

    @app.page("/engagements")
    class EngagementsView(View):
        async def get(self, request: Request) -> Response:
            return self.json(
                {
                    engagement.id: {"version": engagement.version, "status": engagement.status}
                    for engagement in engine.catalog.catalog
                }
            )

    @app.page("/diagnose/{engagement_id}")
    class DiagnoseView(View):
        # Off the worker's loop, one shared read at a time: see engine.admin.diagnose_cache.
        reports = DiagnoseCache.for_settings(settings)

        async def get(self, request: Request, engagement_id: str) -> Response:
            status, body = await self.reports.answer(engagement_id, request.query.get("since"))
            return self.bytes(body, content_type="application/json", status=status)

    return app
