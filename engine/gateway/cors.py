"""CORS: the app's pages, on other origins, may call the API.

Origins listed in DECLIC_GATEWAY_ALLOWED_ORIGINS (``*``: any) and the gateway's own
origin are allowed. A preflight (OPTIONS with Access-Control-Request-Method) is answered
204 with the methods and the headers Authorization, Content-Type and Last-Event-ID; a
request to the API (/v1/, /demo/) from another origin is refused with 403, preflight or
not, so that a "simple" cross-origin POST cannot act either.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aiohttp import hdrs, web

from engine.gateway.errors import ApiError, Handler

ALLOWED_METHODS = "GET, POST, OPTIONS"
ALLOWED_HEADERS = "Authorization, Content-Type, Last-Event-ID"
EXPOSED_HEADERS = "Retry-After, ETag"
MAX_AGE_SECONDS = "600"
# Paths whose cross-origin requests are refused when the origin is not allowed.
API_PREFIXES = ("/v1/", "/demo/")


class CorsPolicy:
    """Which origins may call the gateway."""

    def __init__(self, origins: Iterable[str]) -> None:
        listed = set(origins)
        self.any_origin = "*" in listed
        self.origins = frozenset(listed - {"*"})

    def allows(self, origin: str, request: web.Request) -> bool:
        """Return whether ``origin`` may call: listed, any, or the gateway's own."""
        return (
            self.any_origin
            or origin in self.origins
            or origin == f"{request.scheme}://{request.host}"
        )

    def middleware(self) -> Any:
        """Return the middleware answering preflights and refusing other origins."""

        @web.middleware
        async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
            origin = request.headers.get(hdrs.ORIGIN)
            preflight = request.method == "OPTIONS" and (
                hdrs.ACCESS_CONTROL_REQUEST_METHOD in request.headers
            )
            if origin is not None and not self.allows(origin, request):
                if preflight or request.path.startswith(API_PREFIXES):
                    raise ApiError(403, "forbidden", "origin not allowed (CORS)")
            elif preflight:
                return web.Response(
                    status=204,
                    headers={
                        hdrs.ACCESS_CONTROL_ALLOW_METHODS: ALLOWED_METHODS,
                        hdrs.ACCESS_CONTROL_ALLOW_HEADERS: ALLOWED_HEADERS,
                        hdrs.ACCESS_CONTROL_MAX_AGE: MAX_AGE_SECONDS,
                    },
                )
            return await handler(request)

        return cors

    async def on_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        """Add the CORS headers to every response to an allowed origin, streams included
        (their headers leave before any middleware sees the response)."""
        origin = request.headers.get(hdrs.ORIGIN)
        if origin is None or not self.allows(origin, request):
            return
        response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = origin
        response.headers[hdrs.ACCESS_CONTROL_EXPOSE_HEADERS] = EXPOSED_HEADERS
        vary = response.headers.get(hdrs.VARY)
        response.headers[hdrs.VARY] = f"{vary}, Origin" if vary else "Origin"
