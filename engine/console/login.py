"""The login page, logging in with a password, and logging out.

The login form carries its own token, a double-submit cookie (there is no session yet to
hold one). Failed logins are limited per user name and per client address.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
import re
import secrets

from aiohttp import web

from engine.console.client import (
    COOKIE,
    HOME,
    LOGIN_COOKIE,
    clear_session_cookie,
    client_address,
    from_trusted_proxy,
    safe_next,
    set_private_cookie,
    set_session_cookie,
)
from engine.console.context import CONSOLE
from engine.console.sessions import SESSION, SESSION_ID, Session
from engine.console.users import check_password

log = logging.getLogger("declic.console")

LOGIN_CSRF_FIELD = "login_csrf"
WRONG_CREDENTIALS = "wrong username or password"
LOGIN_FORM_EXPIRED = "the login form expired: try again"
MAX_FORM_USERNAME = 256


_LOGIN_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")


async def _render_login(
    request: web.Request,
    status: int,
    *,
    error: str | None = None,
    username: str = "",
    next_path: str = HOME,
) -> web.Response:
    console = request.app[CONSOLE]
    # The token a login form already open holds stays valid: another tab, or a request the
    # browser makes by itself while logged out, must not make that form fail.
    kept = request.cookies.get(LOGIN_COOKIE, "")
    token = kept if _LOGIN_TOKEN.fullmatch(kept) else secrets.token_urlsafe(32)
    context = {"error": error, "username": username, "next": next_path, "login_csrf": token}
    response: web.Response = await console.extra["render"](request, "login.html", context, status)
    trusted = from_trusted_proxy(request, console.settings.console_proxies())
    set_private_cookie(response, request, (LOGIN_COOKIE, token), "/login", trusted)
    return response


async def login_page(request: web.Request) -> web.StreamResponse:
    """GET /login: the login form (someone logged in goes on to `next`)."""
    next_path = safe_next(request.query.get("next"))
    if SESSION in request:
        raise web.HTTPSeeOther(next_path)
    return await _render_login(request, 200, next_path=next_path)


async def login(request: web.Request) -> web.StreamResponse:
    """POST /login: check the password; start a session and go on to `next`."""
    console = request.app[CONSOLE]
    form = await request.post()

    def field(name: str) -> str:
        value = form.get(name)
        return value if isinstance(value, str) else ""

    username = field("username")[:MAX_FORM_USERNAME]
    password = field("password")
    next_path = safe_next(field("next"))
    proxies = console.settings.console_proxies()
    address = client_address(request, proxies)
    sent = field(LOGIN_CSRF_FIELD)
    expected = request.cookies.get(LOGIN_COOKIE, "")
    if not sent or not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        log.warning("console: refused a login form without its token from %s", address)
        return await _render_login(
            request, 403, error=LOGIN_FORM_EXPIRED, username=username, next_path=next_path
        )
    wait = console.login_limiter.attempt(address, username)
    if wait > 0:
        log.warning("console: refused a login of %r from %s: too many failures", username, address)
        minutes = max(1, math.ceil(wait / 60))
        response = await _render_login(
            request,
            429,
            error=f"too many failed logins: try again in {minutes} "
            + ("minute" if minutes == 1 else "minutes"),
            username=username,
            next_path=next_path,
        )
        response.headers["Retry-After"] = str(max(1, math.ceil(wait)))
        return response
    user = await asyncio.to_thread(check_password, console.users(), username, password)
    if user is None:
        log.warning("console: failed login of %r from %s", username, address)
        return await _render_login(
            request, 401, error=WRONG_CREDENTIALS, username=username, next_path=next_path
        )
    console.login_limiter.succeeded(address, username)
    previous = request.cookies.get(COOKIE)
    if previous:
        console.sessions.end(previous)
    session_id, _ = console.sessions.create(user.name, user.role, password_hash=user.password_hash)
    log.info("console: %s (%s) logged in from %s", user.name, user.role, address)
    response = web.HTTPSeeOther(next_path)
    set_session_cookie(response, request, session_id, from_trusted_proxy(request, proxies))
    response.del_cookie(LOGIN_COOKIE, path="/login")
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    """POST /logout (with the CSRF token): end the session, back to the login page."""
    session: Session | None = request.get(SESSION)
    session_id: str | None = request.get(SESSION_ID)
    if session_id is not None:
        request.app[CONSOLE].sessions.end(session_id)
    if session is not None:
        log.info("console: %s logged out", session.user)
    response = web.HTTPSeeOther("/login")
    clear_session_cookie(response)
    raise response
