"""Who is using the console: the middleware that finds the user of every request and
checks its CSRF token, and the check of what their role may do.

Every page but ``/login``, ``/static/...`` and ``/health`` needs a user: one logged in with
a password (a session cookie), or, when ``DECLIC_CONSOLE_USER_HEADER`` is set, one named by
that header on a request from an address of ``DECLIC_CONSOLE_TRUSTED_PROXIES`` (single
sign-on; the header from any other address is ignored). The role is looked up in the users
file on every request: a changed role applies at once, a removed user is logged out.

Every request but GET, HEAD and OPTIONS must carry the session's CSRF token (form field
``csrf_token`` or header ``X-CSRF-Token``), or it is refused (403) before its handler runs.
Logging in and out is in ``login``, the sessions in ``sessions``, who sent a request
(address, TLS, cookies) in ``client``.
"""

from __future__ import annotations

import hmac
import logging

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from yarl import URL

from engine.console.client import COOKIE, from_trusted_proxy, set_session_cookie
from engine.console.context import CONSOLE, Console
from engine.console.sessions import SESSION, SESSION_ID, Session
from engine.console.users import ACTION_WORDS, ConsoleUser, may, valid_name

log = logging.getLogger("declic.console")

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PROXY_ROLE = "viewer"
"""The role of a proxy user the users file does not list."""
CSRF_REFUSED = "invalid or missing CSRF token: reload the page and try again"


def _is_public(request: web.Request) -> bool:
    path = request.path
    return path in ("/login", "/health") or path.startswith("/static/")


class _UntrustedHeaderWarnings:
    """Warn of a user header from an untrusted address at most once per address per hour."""

    def __init__(self, every_seconds: float = 3600.0, max_addresses: int = 10_000) -> None:
        self.every_seconds = every_seconds
        self.max_addresses = max_addresses
        self._last: dict[str, float] = {}

    def warn(self, address: str, header: str, now: float) -> None:
        last = self._last.get(address)
        if last is not None and now - last < self.every_seconds:
            return
        if len(self._last) >= self.max_addresses:
            self._last.clear()
        self._last[address] = now
        log.warning(
            "console: ignored the %s header from %s, not one of DECLIC_CONSOLE_TRUSTED_PROXIES",
            header,
            address,
        )


def _identify(
    request: web.Request, console: Console, warnings: _UntrustedHeaderWarnings
) -> tuple[str, Session, bool] | None:
    """Return who makes the request (session id, session, whether the cookie must be set),
    with the role of the users file now; None if nobody is logged in."""
    settings = console.settings
    users = console.users()
    header = settings.console_user_header
    if header:
        name = request.headers.get(header)
        if name is not None:
            if from_trusted_proxy(request, settings.console_proxies()):
                if valid_name(name):
                    listed = users.get(name)
                    role = listed.role if listed is not None else PROXY_ROLE
                    proxy_id, session, created = console.sessions.proxy_session(name, role)
                    session.role = role
                    return proxy_id, session, created or request.cookies.get(COOKIE) != proxy_id
                # The proxy names someone no user can be: nobody is logged in.
                log.warning("console: refused an invalid %s header from a proxy", header)
                return None
            else:
                warnings.warn(request.remote or "unknown", header, console.sessions.clock())
    session_id = request.cookies.get(COOKIE, "")
    if not session_id:
        return None
    found = console.sessions.get(session_id)
    if found is None:
        return None
    user: ConsoleUser | None = users.get(found.user)
    if found.via_proxy:
        found.role = user.role if user is not None else PROXY_ROLE
        return session_id, found, False
    if user is None or user.password_hash != found.password_hash:
        # Removed from the users file, or given a new password: logged out.
        console.sessions.end(session_id)
        return None
    found.role = user.role
    return session_id, found, False


async def _csrf_token_sent(request: web.Request) -> str:
    token = request.headers.get(CSRF_HEADER)
    if token is None:
        form = await request.post()
        value = form.get(CSRF_FIELD)
        token = value if isinstance(value, str) else None
    return token or ""


def auth_middleware() -> Middleware:
    """Return the middleware requiring a user (and a CSRF token for changes) on every
    route but the public ones; it sets ``request[SESSION]`` and ``request[SESSION_ID]``."""
    warnings = _UntrustedHeaderWarnings()

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        console = request.app[CONSOLE]
        public = _is_public(request)
        if public and request.path != "/login":
            return await handler(request)
        identity = _identify(request, console, warnings)
        if identity is None:
            if public:
                return await handler(request)
            if request.method in ("GET", "HEAD"):
                raise web.HTTPSeeOther(URL("/login").with_query(next=str(request.rel_url)))
            raise web.HTTPSeeOther("/login")
        session_id, session, set_cookie = identity
        request[SESSION] = session
        request[SESSION_ID] = session_id
        if request.method not in SAFE_METHODS and not public:
            sent = await _csrf_token_sent(request)
            if not hmac.compare_digest(sent.encode(), session.csrf_token.encode()):
                log.warning(
                    "console: refused %s %s by %s: %s",
                    request.method,
                    request.path,
                    session.user,
                    "missing CSRF token" if not sent else "wrong CSRF token",
                )
                raise web.HTTPForbidden(text=CSRF_REFUSED)
        if not set_cookie:
            return await handler(request)
        trusted = from_trusted_proxy(request, console.settings.console_proxies())
        try:
            response = await handler(request)
        except web.HTTPException as error:
            set_session_cookie(error, request, session_id, trusted)
            raise
        set_session_cookie(response, request, session_id, trusted)
        return response

    return authenticate


def require(request: web.Request, action: str) -> Session:
    """Return the request's session; raise 403 unless its role may do `action`."""
    session: Session = request[SESSION]
    if not may(session.role, action):
        raise web.HTTPForbidden(
            text=f"{session.user} ({session.role}) may not {ACTION_WORDS[action]}"
        )
    return session
