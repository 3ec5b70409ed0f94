"""The demo routes (`declic gateway --demo` only): a fake shop page using the SDK, tokens
for any user, and custom events sent for the token's user so that a worker triggers on
them. Never on a gateway facing real users: /demo/token hands out tokens to anyone."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from aiohttp import hdrs, web

from engine.core.timestamps import format_timestamp
from engine.gateway.api import UNAVAILABLE_RETRY_SECONDS, read_json_object
from engine.gateway.context import GATEWAY
from engine.gateway.errors import ApiError, json_response
from engine.gateway.kafka_io import PublishFailed
from engine.gateway.static import DEMO_FILE, StaticFile
from engine.gateway.tokens import MAX_SUBJECT_LENGTH
from engine.schemas import validator

DEMO_PAGE = StaticFile(DEMO_FILE, "text/html", "the demo page (sdk/web/demo.html)")
EVENT_FIELDS = ("name", "properties")


async def get_demo_page(request: web.Request) -> web.Response:
    """GET /demo: the demo shop page."""
    return await DEMO_PAGE.handle(request)


async def get_demo_token(request: web.Request) -> web.Response:
    """GET /demo/token?user=U: an HS256 token for U, valid 10 minutes."""
    gateway = request.app[GATEWAY]
    user_id = request.query.get("user", "")
    if not 1 <= len(user_id) <= MAX_SUBJECT_LENGTH:
        raise ApiError(
            400,
            "invalid_request",
            f"user: expected a user id of 1 to {MAX_SUBJECT_LENGTH} characters",
        )
    token = gateway.tokens.sign_demo_token(user_id)
    return json_response({"token": token}, headers={hdrs.CACHE_CONTROL: "no-store"})


def custom_event(body: dict[str, Any], user_id: str, now_ms: int) -> dict[str, Any]:
    """Return the `custom-events` record of a demo event; raise ValueError saying why not."""
    unknown = sorted(set(body) - set(EVENT_FIELDS))
    if unknown:
        raise ValueError(f"unknown field {unknown[0]!r} (allowed: {', '.join(EVENT_FIELDS)})")
    record: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "user_id": user_id,
        "name": body.get("name"),
        "timestamp": format_timestamp(now_ms),
    }
    if body.get("properties") is not None:
        record["properties"] = body["properties"]
    problems = validator("custom-event").problems(record)
    if problems:
        raise ValueError("; ".join(str(problem) for problem in problems))
    return record


async def post_demo_event(request: web.Request) -> web.Response:
    """POST /demo/events: publish a custom event for the token's user."""
    gateway = request.app[GATEWAY]
    user_id = gateway.authenticate(request)
    body = await read_json_object(request, "invalid_event")
    try:
        record = custom_event(body, user_id, gateway.hub.clock())
    except ValueError as error:
        raise ApiError(400, "invalid_event", str(error)) from None
    try:
        await gateway.publisher.publish(gateway.custom_events_topic, user_id, orjson.dumps(record))
    except PublishFailed as error:
        raise ApiError(
            503, "unavailable", str(error), {hdrs.RETRY_AFTER: UNAVAILABLE_RETRY_SECONDS}
        ) from None
    return json_response({"event_id": record["event_id"]}, 202)


def add_demo_routes(app: web.Application) -> None:
    """Add the demo's routes."""
    app.router.add_get("/demo", get_demo_page)
    app.router.add_get("/demo/token", get_demo_token, allow_head=False)
    app.router.add_post("/demo/events", post_demo_event)
