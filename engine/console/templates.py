"""Render the console's pages: Jinja2 templates, every value escaped (autoescape).

Templates live in ``engine/console/templates/``; every page gets the logged-in user, what
they may do (``may``), the CSRF token its forms carry and the time of the figures.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jinja2
import orjson
from aiohttp import web

from engine.console.sessions import SESSION
from engine.console.users import may
from engine.core.timestamps import format_timestamp

ENVIRONMENT = jinja2.Environment(
    loader=jinja2.PackageLoader("engine.console", "templates"),
    autoescape=True,  # names and messages are user input: everything is escaped
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


def _time_text(epoch_ms: int | None) -> str:
    return "—" if epoch_ms is None else format_timestamp(epoch_ms)[:19].replace("T", " ") + " UTC"


ENVIRONMENT.filters["json_text"] = _json_text
ENVIRONMENT.filters["time_text"] = _time_text


async def render(
    request: web.Request, template: str, context: Mapping[str, Any], status: int = 200
) -> web.Response:
    """Return the page ``template`` rendered with ``context`` and the session's values."""
    session = request.get(SESSION)
    role = None if session is None else session.role
    page = ENVIRONMENT.get_template(template).render(
        **context,
        session=session,
        may=lambda action: role is not None and may(role, action),
        csrf_token="" if session is None else session.csrf_token,
        path=request.path,
    )
    return web.Response(
        text=page,
        status=status,
        content_type="text/html",
        charset="utf-8",
        headers={"Cache-Control": "no-store"},
    )
