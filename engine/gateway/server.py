"""The `declic gateway` process: start the HTTP server at once, Kafka when it answers;
stop cleanly on SIGTERM or Ctrl-C.

The server answers from the start: /health says 503 (and why) while Kafka is waited for
or the history read. On a signal, every stream is ended (its client reconnects, to this
instance or another, with Last-Event-ID), in-flight requests are given a few seconds, and
the Kafka clients are closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from engine.errors import ConfigError, DeclicError
from engine.gateway.app import build_app, make_gateway
from engine.gateway.hub import Hub
from engine.gateway.index import DeliveryIndex
from engine.gateway.kafka_io import Follower, KafkaPublisher
from engine.gateway.metrics import GatewayMetrics
from engine.gateway.tokens import TokenChecker
from engine.settings import GATEWAY_SETTINGS, Settings
from engine.stream.topics import InputKind

log = logging.getLogger("declic.gateway")
# How long requests under way are given to end when the gateway stops.
SHUTDOWN_SECONDS = 5.0
# The settings the start line shows (secrets masked).
_SHOWN = ("kafka_bootstrap", "topic_prefix", "gateway_token_secret", *GATEWAY_SETTINGS)


class _AccessLogger(AbstractAccessLogger):
    """One line per request at DEBUG: method, path, status, time. Never the query string,
    which may hold a token."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.debug(
            "%s %s %d %.1f ms", request.method, request.path, response.status, time * 1000
        )

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.DEBUG)


def now_ms() -> int:
    return int(time.time() * 1000)


def check_settings(settings: Settings, demo: bool) -> TokenChecker:
    """Return the token checker; raise ConfigError (exit 2) for settings the gateway cannot
    start with: no way, or two ways, to check tokens; --demo without the HS256 secret."""
    settings.kafka_client_options()  # invalid security settings: now, not at connection
    tokens = TokenChecker.from_settings(settings)
    if demo and not tokens.signs_demo_tokens:
        raise ConfigError(
            [("gateway_token_secret", "required by --demo: /demo/token signs HS256 tokens")]
        )
    return tokens


async def serve(settings: Settings, demo: bool = False) -> int:
    """Run the gateway until SIGTERM or SIGINT; return the exit status.

    Raise DeclicError if the port cannot be listened on, KafkaAccessError if Kafka refuses
    the gateway's credentials or an ACL.
    """
    tokens = check_settings(settings, demo)
    metrics = GatewayMetrics()
    index = DeliveryIndex(settings.gateway_max_messages_per_user, settings.gateway_max_users)
    hub = Hub(index, metrics, now_ms)
    follower = Follower(settings, hub, metrics, now_ms)
    publisher = KafkaPublisher(settings)
    gateway = make_gateway(
        hub,
        tokens,
        publisher,
        metrics,
        follower.health,
        rate_per_user=settings.gateway_rate_per_user,
        rate_per_address=settings.gateway_rate_per_address,
        topics=(
            settings.topic(InputKind.INTERACTIONS.value),
            settings.topic(InputKind.CUSTOM_EVENTS.value),
        ),
        monotonic=time.monotonic,
        demo=demo,
    )
    app = build_app(gateway, settings.gateway_origins())
    runner = web.AppRunner(
        app,
        access_log=logging.getLogger("declic.gateway.access"),
        access_log_class=_AccessLogger,
        shutdown_timeout=SHUTDOWN_SECONDS,
        # A stream's handler waits on its queue: cancel it when its client leaves.
        handler_cancellation=True,
    )
    await runner.setup()
    host, port = settings.gateway_host, settings.gateway_port
    site = web.TCPSite(runner, host, port, shutdown_timeout=SHUTDOWN_SECONDS)
    try:
        await site.start()
    except OSError as error:
        await runner.cleanup()
        raise DeclicError(
            f"cannot listen on {host}:{port}: {error.strerror or error} "
            "(DECLIC_GATEWAY_HOST, DECLIC_GATEWAY_PORT)"
        ) from None
    described = settings.describe()
    log.info(
        "declic gateway listening on http://%s:%d%s: %s",
        host,
        port,
        " (demo at /demo)" if demo else "",
        ", ".join(f"{name}={described[name]}" for name in _SHOWN),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    tasks = [
        asyncio.create_task(follower.run(), name="declic-gateway-follower"),
        asyncio.create_task(publisher.run(), name="declic-gateway-producer"),
    ]
    stopping = asyncio.create_task(stop.wait(), name="declic-gateway-stop")
    try:
        waiting: set[asyncio.Task[Any]] = {stopping, *tasks}
        while not stopping.done():
            _, waiting = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            _raise_failure(tasks)  # the producer's task ends once it started: no failure
        log.info("stopping: closing %d streams", hub.stream_count)
    finally:
        hub.close_all()
        await runner.cleanup()
        for task in (stopping, *tasks):
            task.cancel()
        await asyncio.gather(stopping, *tasks, return_exceptions=True)
        await publisher.stop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(RuntimeError, ValueError):
                loop.remove_signal_handler(signum)
    log.info("declic gateway stopped")
    return 0


def _raise_failure(tasks: list[asyncio.Task[Any]]) -> None:
    """Raise the error a Kafka task ended with (a refusal: retrying cannot help)."""
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
