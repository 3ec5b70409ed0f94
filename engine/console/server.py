"""The `declic console` process: serve the console until SIGTERM or Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
import time

from aiohttp import web

from engine.console.app import build_app
from engine.console.context import Console
from engine.console.kafka_data import KafkaConsoleData
from engine.console.login_limits import LoginLimiter
from engine.console.sessions import SessionStore
from engine.console.users import UsersFile
from engine.errors import ConfigError, DeclicError
from engine.settings import CONSOLE_SETTINGS, Settings

log = logging.getLogger("declic.console")
SHUTDOWN_SECONDS = 5.0
_SHOWN = ("kafka_bootstrap", "topic_prefix", *CONSOLE_SETTINGS)


def _wall_clock_ms() -> int:
    return int(time.time() * 1000)


def make_console(settings: Settings) -> Console:
    """Return the console's parts on Kafka; raise ConfigError when no one could log in."""
    settings.check_console()
    settings.kafka_client_options()  # invalid security settings: now, not at connection
    users = UsersFile(settings.console_users_file)
    if not users() and not settings.console_user_header:
        raise ConfigError(
            [
                (
                    "console_users_file",
                    f"no user in {settings.console_users_file}: create one with "
                    "`declic console add-user NAME --role admin`",
                )
            ]
        )
    return Console(
        settings=settings,
        data=KafkaConsoleData(settings),
        sessions=SessionStore(),
        login_limiter=LoginLimiter(),
        users=users,
        wall_clock_ms=_wall_clock_ms,
    )


async def serve(settings: Settings) -> int:
    """Run the console until SIGTERM or SIGINT; return the exit status."""
    app = build_app(make_console(settings))
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_SECONDS)
    await runner.setup()
    host, port = settings.console_host, settings.console_port
    context = None
    if settings.console_ssl_certfile is not None and settings.console_ssl_keyfile is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(settings.console_ssl_certfile, settings.console_ssl_keyfile)
        except (OSError, ssl.SSLError) as error:
            await runner.cleanup()
            raise ConfigError([("console_ssl_certfile", f"cannot be loaded: {error}")]) from None
    site = web.TCPSite(runner, host, port, ssl_context=context, shutdown_timeout=SHUTDOWN_SECONDS)
    try:
        await site.start()
    except OSError as error:
        await runner.cleanup()
        raise DeclicError(
            f"cannot listen on {host}:{port}: {error.strerror or error} "
            "(DECLIC_CONSOLE_HOST, DECLIC_CONSOLE_PORT)"
        ) from None
    described = settings.describe()
    scheme = "https" if context else "http"
    log.info(
        "declic console listening on %s://%s:%d: %s",
        scheme,
        host,
        port,
        ", ".join(f"{name}={described[name]}" for name in _SHOWN),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(RuntimeError, ValueError):
                loop.remove_signal_handler(signum)
    log.info("declic console stopped")
    return 0


def run_console(settings: Settings) -> int:
    """Serve the console (the `declic console` command)."""
    return asyncio.run(serve(settings))
