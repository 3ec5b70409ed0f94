"""What every handler shares: the hub, the token checker, the producer, the limits; and
the checks every /v1 request goes through (token, user, rate)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import hdrs, web

from engine.gateway.errors import ApiError
from engine.gateway.hub import Hub
from engine.gateway.limits import RateLimiter, retry_after
from engine.gateway.metrics import GatewayMetrics
from engine.gateway.tokens import TokenChecker, TokenClaims, TokenRefused

KEEPALIVE_SECONDS = 15.0


class Publisher(Protocol):
    """Where interactions and demo events go: Kafka (``kafka_io.KafkaPublisher``), or an
    in-memory fake in the tests."""

    async def publish(self, topic: str, key: str, value: bytes) -> None:
        """Send one record; raise ``kafka_io.PublishFailed`` when it was not acknowledged."""


@dataclass
class Gateway:
    """The gateway's parts, shared by the handlers (``request.app[GATEWAY]``)."""

    hub: Hub
    tokens: TokenChecker
    publisher: Publisher
    metrics: GatewayMetrics
    health: Callable[[], tuple[bool, dict[str, Any]]]
    user_limits: RateLimiter
    address_limits: RateLimiter
    interactions_topic: str
    custom_events_topic: str
    monotonic: Callable[[], float]
    demo: bool = False
    keepalive_seconds: float = KEEPALIVE_SECONDS

    def authenticate(self, request: web.Request, query_token: bool = False) -> str:
        """Return the user of the request's token (rate-limited per user); raise ApiError
        401 without a valid one, 429 past the user's rate. ``query_token``: the token may
        come as ``?token=`` (the SSE stream: EventSource cannot set headers)."""
        return self.authenticate_claims(request, query_token).user_id

    def authenticate_claims(self, request: web.Request, query_token: bool = False) -> TokenClaims:
        """Return what the request's token says (its user, until when it is accepted); as
        ``authenticate`` otherwise."""
        token = bearer_token(request)
        if token is None and query_token:
            token = request.query.get("token")
        if token is None:
            raise ApiError(
                401,
                "unauthorized",
                "no token: send Authorization: Bearer <token>"
                + (" or ?token=<token>" if query_token else ""),
                {hdrs.WWW_AUTHENTICATE: 'Bearer realm="declic"'},
            )
        try:
            claims = self.tokens.check(token)
        except TokenRefused as refused:
            raise ApiError(
                401,
                "unauthorized",
                str(refused),
                {hdrs.WWW_AUTHENTICATE: 'Bearer realm="declic", error="invalid_token"'},
            ) from None
        self.limit(self.user_limits, f"user:{claims.user_id}", "this user")
        return claims

    def authorize(self, request: web.Request, query_token: bool = False) -> str:
        """Return the user of the token, which must be the path's {user_id} (else 403)."""
        return self.authorize_claims(request, query_token).user_id

    def authorize_claims(self, request: web.Request, query_token: bool = False) -> TokenClaims:
        """Return what the token says; its user must be the path's {user_id} (else 403)."""
        claims = self.authenticate_claims(request, query_token)
        if request.match_info["user_id"] != claims.user_id:
            raise ApiError(403, "forbidden", "the token is for another user")
        return claims

    def limit(self, limiter: RateLimiter, key: str, who: str) -> None:
        """Raise ApiError 429 with Retry-After if ``key`` is past its rate."""
        wait = limiter.take(key, self.monotonic())
        if wait > 0:
            raise ApiError(
                429,
                "rate_limited",
                f"too many requests from {who}; retry after {retry_after(wait)} s",
                {hdrs.RETRY_AFTER: retry_after(wait)},
            )


def bearer_token(request: web.Request) -> str | None:
    """Return the token of an ``Authorization: Bearer`` header, None if there is none."""
    header = request.headers.get(hdrs.AUTHORIZATION)
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


GATEWAY = web.AppKey("gateway", Gateway)
