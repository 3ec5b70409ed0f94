"""GET /v1/users/{user_id}/stream: the user's new deliveries as server-sent events.

Each delivery is one event::

    id: P-O
    event: delivery
    data: <the Message JSON, on one line>

with a ``: keep-alive`` comment line every 15 s. With ``Last-Event-ID`` (or
``?last_event_id=P-O``) the held deliveries after P-O are replayed first (see
``rules.replay_after``); then the stream is live. A stream opened while the gateway still
reads the topics' history waits (with keep-alives) until it has read it.
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import hdrs, web

from engine.gateway.context import GATEWAY, Gateway
from engine.gateway.errors import ApiError
from engine.gateway.hub import MAX_STREAMS_PER_USER
from engine.gateway.rules import EventId, Held, parse_event_id

LAST_EVENT_ID = "Last-Event-ID"
KEEPALIVE = b": keep-alive\n\n"
# How often a stream waiting for the gateway to catch up checks whether it is stopping.
_WAIT_STEP_SECONDS = 0.5


def event_bytes(held: Held) -> bytes:
    """Return the SSE event of one delivery."""
    return b"id: %s\nevent: delivery\ndata: %s\n\n" % (str(held.event_id).encode(), held.body)


def last_event_id(request: web.Request) -> EventId | None:
    """Return where the client resumes (the header, else the query), None for nowhere;
    raise ApiError 400 for an id the gateway cannot have written."""
    text = request.headers.get(LAST_EVENT_ID) or request.query.get("last_event_id")
    if not text:
        return None
    event_id = parse_event_id(text)
    if event_id is None:
        raise ApiError(400, "invalid_request", "Last-Event-ID: expected P-O, like 0-42")
    return event_id


async def get_stream(request: web.Request) -> web.StreamResponse:
    """Stream the user's deliveries until the client leaves or the gateway stops."""
    gateway = request.app[GATEWAY]
    user_id = gateway.authorize(request, query_token=True)
    cursor = last_event_id(request)
    if gateway.hub.streams_of(user_id) >= MAX_STREAMS_PER_USER:
        raise ApiError(
            429,
            "rate_limited",
            f"this user has {MAX_STREAMS_PER_USER} streams open already",
            {hdrs.RETRY_AFTER: "5"},
        )
    response = web.StreamResponse(
        headers={
            hdrs.CONTENT_TYPE: "text/event-stream; charset=utf-8",
            hdrs.CACHE_CONTROL: "no-store",
            "X-Accel-Buffering": "no",  # nginx: pass events on at once
        }
    )
    await response.prepare(request)
    gateway.metrics.streams.inc()
    try:
        if await _wait_caught_up(gateway, response):
            await _serve(gateway, response, user_id, cursor)
    except ConnectionError:
        pass  # the client left: nothing to say to anyone
    finally:
        gateway.metrics.streams.dec()
    return response


async def _wait_caught_up(gateway: Gateway, response: web.StreamResponse) -> bool:
    """Wait until the gateway read the topics' history; False if it stops meanwhile."""
    hub = gateway.hub
    last_write = time.monotonic()
    while not hub.caught_up.is_set():
        if hub.closing:
            return False
        try:
            await asyncio.wait_for(hub.caught_up.wait(), _WAIT_STEP_SECONDS)
        except TimeoutError:
            if time.monotonic() - last_write >= gateway.keepalive_seconds:
                await response.write(KEEPALIVE)
                last_write = time.monotonic()
    return not hub.closing


async def _serve(
    gateway: Gateway, response: web.StreamResponse, user_id: str, cursor: EventId | None
) -> None:
    hub = gateway.hub
    stream, replay = hub.open(user_id, cursor)
    try:
        for held in replay:
            await response.write(event_bytes(held))
            _sent(gateway, held)
        while True:
            try:
                held_or_end = await asyncio.wait_for(stream.queue.get(), gateway.keepalive_seconds)
            except TimeoutError:
                await response.write(KEEPALIVE)
                continue
            if held_or_end is None:
                return  # the gateway is stopping, or this client fell too far behind
            await response.write(event_bytes(held_or_end))
            _sent(gateway, held_or_end)
    finally:
        hub.close(stream)


def _sent(gateway: Gateway, held: Held) -> None:
    gateway.metrics.messages_pushed.inc()
    latency = max(0.0, (gateway.hub.clock() - held.record_ms) / 1000)
    gateway.metrics.push_latency.observe(latency)
