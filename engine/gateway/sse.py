"""GET /v1/users/{user_id}/stream: the user's new deliveries as server-sent events.

Each delivery is one event::

    id: P-O
    event: delivery
    data: <the Message JSON, on one line>

with a ``: keep-alive`` comment line every 15 s. With ``Last-Event-ID`` (or
``?last_event_id=P-O``) the held deliveries after P-O are replayed first (see
``rules.replay_after``); then the stream is live. While the gateway still reads the
topics' history, a stream is refused as /messages is (503 with Retry-After): an EventSource
then fails, and the SDK reads /messages before it opens another. A stream ends when its
token expires (a ``: token expired`` comment last), and when the gateway stops. A user holds
at most MAX_STREAMS_PER_USER streams (429 past them).
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import hdrs, web

from engine.gateway.api import require_caught_up
from engine.gateway.context import GATEWAY, Gateway
from engine.gateway.errors import ApiError
from engine.gateway.hub import MAX_STREAMS_PER_USER
from engine.gateway.rules import EventId, Held, parse_event_id

LAST_EVENT_ID = "Last-Event-ID"
KEEPALIVE = b": keep-alive\n\n"
# Written last on a stream whose token expired (a comment: browsers ignore it).
TOKEN_EXPIRED = b": token expired\n\n"


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
    """Stream the user's deliveries until the client leaves, its token expires or the
    gateway stops."""
    gateway = request.app[GATEWAY]
    claims = gateway.authorize_claims(request, query_token=True)
    user_id = claims.user_id
    cursor = last_event_id(request)
    # Like /messages: a stream opened now could replay nothing of what is pending (the
    # client has no position yet), so the client reads /messages first, once this is over.
    require_caught_up(gateway)
    # The place is taken at once (not once the headers are sent): streams requested
    # together cannot all pass the count.
    if not gateway.hub.admit(user_id):
        raise ApiError(
            429,
            "rate_limited",
            f"this user has {MAX_STREAMS_PER_USER} streams open already",
            {hdrs.RETRY_AFTER: "5"},
        )
    try:
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
            if not gateway.hub.closing:
                await _serve(gateway, response, user_id, cursor, claims.accepted_until)
        except ConnectionError:
            pass  # the client left: nothing to say to anyone
        finally:
            gateway.metrics.streams.dec()
    finally:
        gateway.hub.release(user_id)
    return response


async def _serve(
    gateway: Gateway,
    response: web.StreamResponse,
    user_id: str,
    cursor: EventId | None,
    token_until: float,
) -> None:
    """Write the replay, then each delivery as it comes, until the stream must end.

    ``token_until`` (epoch seconds): when the gateway stops accepting the stream's token.
    The stream ends then: the browser's reconnection with that token is refused (401), and
    the SDK asks its getToken for a new one.
    """
    hub = gateway.hub
    loop = asyncio.get_running_loop()
    ends_at = loop.time() + (token_until - time.time())
    stream, replay = hub.open(user_id, cursor)
    try:
        for held in replay:
            await response.write(event_bytes(held))
            _sent(gateway, held)
        while True:
            left = ends_at - loop.time()
            if left <= 0:
                await response.write(TOKEN_EXPIRED)
                return
            try:
                held_or_end = await asyncio.wait_for(
                    stream.queue.get(), min(gateway.keepalive_seconds, left)
                )
            except TimeoutError:
                if loop.time() < ends_at:
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
