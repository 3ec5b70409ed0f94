"""The gateway's aiohttp application: routes, middlewares, /health and /metrics.

``build_app`` takes the parts (``context.Gateway``) ready-made: the server plugs in the
Kafka clients, the tests in-memory fakes of them. The routes are those of
``schemas/gateway-api.openapi.yaml`` (a unit test holds the two to the same set).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from engine.gateway.api import MAX_BODY_BYTES, get_messages, post_interaction
from engine.gateway.context import GATEWAY, Gateway, Publisher
from engine.gateway.cors import CorsPolicy
from engine.gateway.demo import add_demo_routes
from engine.gateway.errors import Handler, error_middleware, json_response
from engine.gateway.hub import Hub
from engine.gateway.limits import RateLimiter
from engine.gateway.metrics import GatewayMetrics
from engine.gateway.sse import get_stream
from engine.gateway.static import SDK_FILE, StaticFile
from engine.gateway.tokens import TokenChecker

SDK = StaticFile(SDK_FILE, "application/javascript", "the web SDK (sdk/web/declic.js)")
# Routes no rate limit applies to: the operators' probes and scrapes.
UNLIMITED = frozenset({"/health", "/metrics"})


def make_gateway(
    hub: Hub,
    tokens: TokenChecker,
    publisher: Publisher,
    metrics: GatewayMetrics,
    health: Callable[[], tuple[bool, dict[str, Any]]],
    *,
    rate_per_user: float,
    rate_per_address: float,
    topics: tuple[str, str],
    monotonic: Callable[[], float],
    demo: bool = False,
) -> Gateway:
    """Return the gateway's parts; ``topics``: the full names of `interactions` and
    `custom-events`."""
    return Gateway(
        hub=hub,
        tokens=tokens,
        publisher=publisher,
        metrics=metrics,
        health=health,
        user_limits=RateLimiter(rate_per_user),
        address_limits=RateLimiter(rate_per_address),
        interactions_topic=topics[0],
        custom_events_topic=topics[1],
        monotonic=monotonic,
        demo=demo,
    )


def build_app(gateway: Gateway, origins: Iterable[str] = ()) -> web.Application:
    """Return the aiohttp application serving the gateway's API."""
    cors = CorsPolicy(origins)
    app = web.Application(
        middlewares=[
            error_middleware(
                lambda route, status: gateway.metrics.requests.labels(route, str(status)).inc()
            ),
            cors.middleware(),
            _address_limit,
        ],
        client_max_size=MAX_BODY_BYTES,
    )
    app[GATEWAY] = gateway
    app.on_response_prepare.append(cors.on_prepare)
    # HEAD only for the file: a HEAD of the stream would hold a connection for nothing.
    app.router.add_get("/v1/users/{user_id}/messages", get_messages, allow_head=False)
    app.router.add_get("/v1/users/{user_id}/stream", get_stream, allow_head=False)
    app.router.add_post("/v1/interactions", post_interaction)
    app.router.add_get("/sdk/declic.js", SDK.handle)
    app.router.add_get("/health", _health, allow_head=False)
    app.router.add_get("/metrics", _metrics, allow_head=False)
    if gateway.demo:
        add_demo_routes(app)
    return app


@web.middleware
async def _address_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse (429) a client address past its rate; /health and /metrics are not limited."""
    if request.path not in UNLIMITED:
        gateway = request.app[GATEWAY]
        gateway.limit(gateway.address_limits, f"address:{request.remote}", "this address")
    return await handler(request)


async def _health(request: web.Request) -> web.Response:
    """GET /health: 200 when caught up on the topics and Kafka answers; 503 saying why not."""
    ready, body = request.app[GATEWAY].health()
    return json_response(body, 200 if ready else 503, {"Cache-Control": "no-store"})


async def _metrics(request: web.Request) -> web.Response:
    """GET /metrics: Prometheus' text format."""
    registry = request.app[GATEWAY].metrics.registry
    return web.Response(
        body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )
