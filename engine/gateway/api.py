"""The /v1 routes but the stream: a user's pending messages, and the app's interactions."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import hdrs, web

from engine.core.timestamps import format_timestamp
from engine.gateway.context import GATEWAY, Gateway
from engine.gateway.errors import ApiError, json_response
from engine.gateway.kafka_io import PublishFailed
from engine.gateway.records import Shown
from engine.gateway.rules import MAX_LIMIT, parse_limit
from engine.schemas import validator

# Largest request body read (an interaction is a few hundred bytes; a demo event with its
# properties at most a few KiB).
MAX_BODY_BYTES = 64 * 1024
INTERACTION_FIELDS = ("delivery_id", "kind", "element", "event_id", "timestamp")
CATCHING_UP_RETRY_SECONDS = "2"
UNAVAILABLE_RETRY_SECONDS = "5"


def require_caught_up(gateway: Gateway) -> None:
    """Raise ApiError 503 while the gateway is still reading the topics' history: what it
    would answer could offer messages already shown, or miss some."""
    if not gateway.hub.caught_up.is_set():
        raise ApiError(
            503,
            "unavailable",
            "the gateway is reading the recent deliveries and impressions; retry shortly",
            {hdrs.RETRY_AFTER: CATCHING_UP_RETRY_SECONDS},
        )


async def get_messages(request: web.Request) -> web.Response:
    """GET /v1/users/{user_id}/messages: the deliveries not shown nor expired, newest first."""
    gateway = request.app[GATEWAY]
    user_id = gateway.authorize(request)
    limit = parse_limit(request.query.get("limit"))
    if limit is None:
        raise ApiError(
            400, "invalid_request", f"limit: expected a whole number from 1 to {MAX_LIMIT}"
        )
    require_caught_up(gateway)
    messages = gateway.hub.messages(user_id, limit)
    last = str(messages.last_event_id) if messages.last_event_id is not None else None
    # Each message is kept as its JSON already: the answer is put together, not re-encoded.
    body = b"".join(
        (
            b'{"user_id":',
            orjson.dumps(user_id),
            b',"messages":[',
            b",".join(held.body for held in messages.offered),
            b'],"last_event_id":',
            orjson.dumps(last),
            b"}",
        )
    )
    return web.Response(
        body=body, content_type="application/json", headers={hdrs.CACHE_CONTROL: "no-store"}
    )


async def read_json_object(request: web.Request, error: str) -> dict[str, Any]:
    """Return the request's JSON object body; raise ApiError 400 (code ``error``) otherwise."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise ApiError(413, "too_large", f"the body is over {MAX_BODY_BYTES} bytes")
    raw = await request.content.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError(413, "too_large", f"the body is over {MAX_BODY_BYTES} bytes")
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ApiError(400, error, "the body is not JSON") from None
    if not isinstance(document, dict):
        raise ApiError(400, error, "the body must be a JSON object")
    return document


def interaction_record(body: Mapping[str, Any], user_id: str, now_ms: int) -> dict[str, Any]:
    """Return the `interactions` record of a posted interaction, for the token's user;
    event_id (a uuid4) and timestamp (now) filled in when absent. Raise ValueError saying
    what is wrong, field by field."""
    unknown = sorted(set(body) - set(INTERACTION_FIELDS))
    if unknown:
        raise ValueError(
            f"unknown field {unknown[0]!r} (allowed: {', '.join(INTERACTION_FIELDS)}; "
            "the user comes from the token)"
        )
    record: dict[str, Any] = {
        "event_id": body["event_id"] if body.get("event_id") is not None else str(uuid.uuid4()),
        "user_id": user_id,
        "delivery_id": body.get("delivery_id"),
        "kind": body.get("kind"),
        "timestamp": (
            body["timestamp"] if body.get("timestamp") is not None else format_timestamp(now_ms)
        ),
    }
    if "element" in body:
        record["element"] = body["element"]
    if "delivery_id" not in body:
        raise ValueError("delivery_id: required field missing")
    if "kind" not in body:
        raise ValueError("kind: required field missing (impression, click or dismiss)")
    problems = validator("interaction").problems(record)
    if problems:
        raise ValueError("; ".join(str(problem) for problem in problems))
    return record


async def post_interaction(request: web.Request) -> web.Response:
    """POST /v1/interactions: publish an impression, click or dismiss of the token's user."""
    gateway = request.app[GATEWAY]
    metrics = gateway.metrics
    user_id = gateway.authenticate(request)
    try:
        body = await read_json_object(request, "invalid_interaction")
        record = interaction_record(body, user_id, gateway.hub.clock())
    except ApiError:
        metrics.interaction("invalid_interaction")
        raise
    except ValueError as error:
        metrics.interaction("invalid_interaction")
        raise ApiError(400, "invalid_interaction", str(error)) from None
    require_caught_up(gateway)
    delivery_id = record["delivery_id"]
    # A delivery the gateway no longer holds (evicted, or older than its history) is still
    # the app's to report: the worker, which knows every delivery it made and whose it is,
    # joins the interaction or dead-letters it (unknown_delivery). Refusing here lost them.
    held = gateway.hub.find(user_id, delivery_id) is not None
    try:
        await gateway.publisher.publish(gateway.interactions_topic, user_id, orjson.dumps(record))
    except PublishFailed as error:
        metrics.interaction("unavailable")
        raise ApiError(
            503, "unavailable", str(error), {hdrs.RETRY_AFTER: UNAVAILABLE_RETRY_SECONDS}
        ) from None
    # Offered no more, at once: the impression the worker joins comes back a little later.
    if held:
        gateway.hub.mark_shown(Shown(user_id, delivery_id))
    metrics.interaction("none" if held else "not_held")
    return json_response({"event_id": record["event_id"]}, 202)
