"""The worker: a Faust app hosting the engine service, its web endpoints and lifecycle.

Faust runs the process (signals, graceful stop, web server, service tree);
the engine's hot path is the batch loop of `engine.stream.engine`, started as
a Faust service so it stops, and commits, with the worker.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from typing import Any

import faust
from faust.web import Request, Response, View
from mode import Service
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from engine.metrics import EngineMetrics
from engine.settings import Settings
from engine.stream.engine import Engine
from engine.stream.topics import ensure_topics

log = logging.getLogger(__name__)


class EngineService(Service):
    """Run the engine's batch loop for as long as the worker runs."""

    def __init__(self, engine: Engine, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.engine = engine
        self._task: asyncio.Task[None] | None = None

    async def on_start(self) -> None:
        settings = self.engine.settings
        log.info(
            "declic worker %s starting: %s",
            settings.worker_id,
            ", ".join(f"{name}={value}" for name, value in settings.describe().items()),
        )
        # SIGUSR1 logs every asyncio task's stack: the way to see what a stuck worker awaits.
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, _log_task_stacks)
        await ensure_topics(self.engine.settings)
        self._task = asyncio.create_task(self._run(), name="declic-engine")

    async def _run(self) -> None:
        try:
            await self.engine.run()
        except asyncio.CancelledError:
            raise
        except Exception as error:
            log.exception("engine stopped on an unrecoverable error; stopping the worker")
            # Crash the whole worker, not this service alone: the process exits non-zero
            # and its supervisor restarts it from the last commit.
            await self.crash(error)

    async def on_stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


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


def faust_broker_url(settings: Settings) -> str:
    """Return Faust's broker URL for the configured bootstrap servers."""
    return ";".join(f"kafka://{server.strip()}" for server in settings.kafka_bootstrap.split(","))


def build_app(settings: Settings, registry: EngineMetrics | None = None) -> faust.App:
    """Return a Faust app running the engine, with /metrics, /health and /engagements."""
    metrics = registry if registry is not None else EngineMetrics()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = Engine(settings, metrics)
    credentials = None
    if settings.kafka_sasl_mechanism:
        credentials = faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=(
                settings.kafka_sasl_password.get_secret_value()
                if settings.kafka_sasl_password
                else None
            ),
            mechanism=settings.kafka_sasl_mechanism,
        )
    app = faust.App(
        # Faust's own consumer group must not be the engine's (different assignors).
        f"{settings.topic_prefix}{settings.app_id}-worker",
        broker=faust_broker_url(settings),
        broker_credentials=credentials,
        datadir=str(settings.data_dir / "faust"),
        web_enabled=True,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_port=settings.web_port,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
    )
    # The engine consumes with its own batch consumer: Faust's consumer would only add a
    # second group to join (and to wait for after a crash), so the app runs producer-only.
    app.producer_only = True
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
            body = {
                "catalog_loaded": engine.catalog.ready.is_set(),
                "engagements": len(engine.catalog.catalog),
                "partitions": engine.partitions,
                "worker_id": settings.worker_id,
                "records_committed": dict(engine.records_committed),
            }
            status = 200 if engine.catalog.ready.is_set() else 503
            return self.json(body, status=status)

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
        async def get(self, request: Request, engagement_id: str) -> Response:
            from engine.admin.diagnose import diagnose

            since = request.query.get("since")
            report = await diagnose(
                settings,
                engagement_id,
                int(time.time() * 1000),
                int(since) if since and since.isdigit() else None,
            )
            return self.json(report.to_json_dict())

    return app
