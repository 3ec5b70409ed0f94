"""Error answers: every refusal is JSON ``{"error": CODE, "detail": ...}``, and no request,
whatever its input, gets anything else (an unexpected exception is a 500 saying so)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
from aiohttp import web

log = logging.getLogger("declic.gateway")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# What aiohttp's own HTTP errors (unknown path, wrong method, body too large) are called.
_HTTP_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
}


class ApiError(Exception):
    """Raise in a handler to answer with a JSON error."""

    def __init__(
        self,
        status: int,
        error: str,
        detail: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {error}: {detail}")
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = dict(headers or {})

    def response(self) -> web.Response:
        body: dict[str, Any] = {"error": self.error}
        if self.detail is not None:
            body["detail"] = self.detail
        return json_response(body, self.status, self.headers)


def json_response(
    body: object, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """Return a JSON response."""
    return web.Response(
        body=orjson.dumps(body),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def route_of(request: web.Request) -> str:
    """Return the route template a request matched ("other" if none): a bounded label."""
    info = request.match_info
    resource = info.route.resource if info.http_exception is None else None
    return resource.canonical if resource is not None else "other"


def error_middleware(count: Callable[[str, int], None]) -> Any:
    """Return a middleware answering every error as JSON and counting every answer with
    ``count(route, status)``."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except ApiError as error:
            response = error.response()
        except web.HTTPException as error:
            if error.status < 400:
                raise
            code = _HTTP_CODES.get(error.status, "http_error")
            headers = {"Allow": error.headers["Allow"]} if "Allow" in error.headers else None
            response = ApiError(error.status, code, error.reason, headers).response()
        except Exception:
            # Never the request's query or headers: they may hold a token.
            log.exception("unexpected error answering %s %s", request.method, route_of(request))
            response = ApiError(500, "internal", "unexpected error; see the log").response()
        count(route_of(request), response.status)
        return response

    return middleware
