"""The console's aiohttp application: routes, error pages, security headers, static files.

``build_app`` takes the parts (``context.Console``) ready-made: the server plugs in the
Kafka-backed data, the tests an in-memory one.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Final

from aiohttp import web

from engine.console.auth import auth_middleware
from engine.console.context import CONSOLE, Console
from engine.console.login import login, login_page, logout
from engine.console.pages_detail import change_status, export_yaml, show_engagement, test_send
from engine.console.pages_form import edit_form, new_form, save_edit, save_new
from engine.console.pages_list import list_engagements
from engine.console.templates import render
from engine.errors import ConfigError, KafkaAccessError
from engine.gateway.errors import Handler
from engine.retry import KAFKA_UNAVAILABLE

log = logging.getLogger("declic.console")

STATIC_DIR: Final = Path(__file__).resolve().parent / "static"
# Forms are small; an engagement record is at most 1 MiB.
MAX_BODY_BYTES: Final = 2 * 1024 * 1024
# Every asset is the console's own; inline SVG needs no exception.
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self'; "
    "style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'; "
    "base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}
_TITLES: Final = {
    400: "Bad request",
    403: "Not allowed",
    404: "Not found",
    405: "Not allowed",
    409: "Not possible now",
    413: "Too large",
    429: "Too many attempts",
}


def build_app(console: Console) -> web.Application:
    """Return the console's application."""
    console.extra.setdefault("render", render)
    app = web.Application(
        middlewares=[_error_pages, auth_middleware()], client_max_size=MAX_BODY_BYTES
    )
    app[CONSOLE] = console
    app.on_response_prepare.append(_security_headers)
    routes = app.router
    routes.add_get("/", _home)
    routes.add_get("/health", _health, allow_head=False)
    routes.add_get("/login", login_page)
    routes.add_post("/login", login)
    routes.add_post("/logout", logout)
    routes.add_get("/engagements", list_engagements)
    routes.add_get("/engagements/new", new_form)
    routes.add_post("/engagements/new", save_new)
    routes.add_get("/engagements/{engagement_id}", show_engagement)
    routes.add_get("/engagements/{engagement_id}/edit", edit_form)
    routes.add_post("/engagements/{engagement_id}/edit", save_edit)
    routes.add_get("/engagements/{engagement_id}/export.yaml", export_yaml)
    routes.add_post("/engagements/{engagement_id}/test-send", test_send)
    routes.add_post("/engagements/{engagement_id}/{action:pause|resume|archive}", change_status)
    routes.add_static("/static", STATIC_DIR, append_version=False)
    return app


async def _home(request: web.Request) -> web.Response:
    raise web.HTTPSeeOther("/engagements")


async def _health(request: web.Request) -> web.Response:
    """GET /health: 200 when Kafka can be read, 503 saying why not."""
    try:
        await request.app[CONSOLE].data.snapshot()
    except (*KAFKA_UNAVAILABLE, ConfigError, KafkaAccessError) as error:
        return web.json_response({"status": "unavailable", "detail": str(error)}, status=503)
    return web.json_response({"status": "ok"})


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)


@web.middleware
async def _error_pages(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer errors with a page in the console's style, never a traceback."""
    try:
        return await handler(request)
    except web.HTTPException as error:
        if error.status < 400 or request.path.startswith("/static/"):
            raise
        title = _TITLES.get(error.status, "Error")
        detail = error.text or title
        if detail.startswith(f"{error.status}: "):
            detail = detail.split(": ", 1)[1]
        return await _error(request, error.status, title, detail, error.headers)
    except (*KAFKA_UNAVAILABLE, ConfigError) as error:
        log.warning("%s %s: cannot reach Kafka: %r", request.method, request.path, error)
        detail = f"cannot read or write the engagement topics: {error or type(error).__name__}"
        return await _error(request, 503, "Kafka is not answering", detail)
    except KafkaAccessError as error:  # credentials or an ACL: the operators' to fix
        log.error("%s %s: %s", request.method, request.path, error)
        return await _error(request, 503, "Kafka refuses the console", str(error))
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return await _error(
            request, 500, "Something went wrong", "the console failed; its log says why"
        )


async def _error(
    request: web.Request,
    status: int,
    title: str,
    detail: str,
    headers: object = None,
) -> web.Response:
    response: web.Response = await request.app[CONSOLE].extra["render"](
        request, "error.html", {"title": title, "detail": detail}, status
    )
    retry = getattr(headers, "get", lambda _: None)("Retry-After")
    if retry:
        response.headers["Retry-After"] = retry
    return response
