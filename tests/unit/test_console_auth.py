"""The console's logins, sessions, CSRF tokens, rate limits and proxy single sign-on, on
aiohttp's test server with a fake clock."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request
from yarl import URL

from engine.console.auth import CSRF_REFUSED, auth_middleware, require
from engine.console.client import COOKIE, LOGIN_COOKIE, client_address, safe_next
from engine.console.context import CONSOLE, Console
from engine.console.login import login, login_page, logout
from engine.console.login_limits import LoginLimiter
from engine.console.sessions import SessionStore
from engine.console.users import (
    ConsoleUser,
    UsersFile,
    load_users,
    remove_user,
    render_users,
    write_user,
)
from engine.settings import Settings

PASSWORD = "correct horse battery"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def render(
    request: web.Request, template: str, context: Mapping[str, Any], status: int
) -> web.Response:
    return web.Response(text=f"{template}:{dict(context)}", status=status)


@dataclass
class Rig:
    client: TestClient[Any, Any]
    console: Console
    clock: Clock
    users_file: Path
    changes: list[tuple[str, str]]

    async def login_form(self, next_path: str | None = None) -> str:
        """GET /login from a fresh browser; return the form's login_csrf (its cookie is in
        the jar)."""
        self.client.session.cookie_jar.clear()
        query = {"next": next_path} if next_path is not None else {}
        response = await self.client.get("/login", params=query, allow_redirects=False)
        assert response.status == 200
        match = re.search(r"'login_csrf': '([^']+)'", await response.text())
        assert match
        return match.group(1)

    async def login_form_again(self, next_path: str) -> str:
        """GET /login again in the same browser; return the form's login_csrf."""
        response = await self.client.get("/login", params={"next": next_path})
        match = re.search(r"'login_csrf': '([^']+)'", await response.text())
        assert match
        return match.group(1)

    async def login(
        self, username: str, password: str = PASSWORD, next_path: str = ""
    ) -> web.Response | Any:
        token = await self.login_form()
        return await self.client.post(
            "/login",
            data={
                "username": username,
                "password": password,
                "next": next_path,
                "login_csrf": token,
            },
            allow_redirects=False,
        )

    async def page(self, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
        """GET /engagements, which shows the session (as a page would)."""
        response = await self.client.get("/engagements", headers=headers, allow_redirects=False)
        assert response.status == 200, response.status
        result: dict[str, Any] = await response.json()
        return result

    def sessions(self) -> int:
        return len(self.console.sessions)


@pytest.fixture(scope="module")
def users_text(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The users file every test starts from (hashing once: argon2 takes its time)."""
    path = tmp_path_factory.mktemp("users") / "console-users.yaml"
    write_user(path, "alice", "admin", PASSWORD)
    write_user(path, "vera", "viewer", PASSWORD)
    write_user(path, "eddie", "editor", PASSWORD)
    write_user(path, "sso-admin", "admin", None)
    return path.read_text()


@pytest.fixture
def users_file(tmp_path: Path, users_text: str) -> Path:
    path = tmp_path / "console-users.yaml"
    path.write_text(users_text)
    return path


async def make_rig(users_file: Path, **settings: Any) -> Rig:
    clock = Clock()
    console = Console(
        settings=Settings(console_users_file=users_file, **settings),
        data=object(),  # type: ignore[arg-type]  # the routes here never touch it
        sessions=SessionStore(clock=clock),
        login_limiter=LoginLimiter(clock=clock),
        users=UsersFile(users_file),
        wall_clock_ms=lambda: 0,
        extra={"render": render},
    )
    changes: list[tuple[str, str]] = []

    async def show(request: web.Request) -> web.Response:
        session = require(request, "view")
        return web.json_response(
            {"user": session.user, "role": session.role, "csrf": session.csrf_token}
        )

    async def pause(request: web.Request) -> web.Response:
        session = require(request, "pause")
        changes.append((session.user, request.match_info["engagement_id"]))
        return web.Response(text="paused")

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application(middlewares=[auth_middleware()])
    app[CONSOLE] = console
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_get("/engagements", show)
    app.router.add_post("/engagements/{engagement_id}/pause", pause)
    app.router.add_get("/health", health)
    app.router.add_get("/static/app.css", health)
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    return Rig(client, console, clock, users_file, changes)


@pytest.fixture
async def rig(users_file: Path) -> AsyncIterator[Rig]:
    made = await make_rig(users_file)
    try:
        yield made
    finally:
        await made.client.close()


# --- logging in ---------------------------------------------------------------------------------


async def test_every_page_but_the_public_ones_needs_a_login(rig: Rig) -> None:
    response = await rig.client.get("/engagements?status=active", allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == "/login?next=/engagements?status%3Dactive"
    assert URL(response.headers["Location"]).query["next"] == "/engagements?status=active"
    response = await rig.client.post("/engagements/welcome/pause", allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/login"
    assert rig.changes == []
    for path in ("/health", "/static/app.css"):
        assert (await rig.client.get(path)).status == 200, path
    assert (await rig.client.get("/login")).status == 200


async def test_login_then_pages_know_the_user(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="declic.console"):
        response = await rig.login("alice", next_path="/engagements?status=paused")
    assert response.status == 303
    assert response.headers["Location"] == "/engagements?status=paused"
    assert (await rig.page())["user"] == "alice"
    assert "alice (admin) logged in from 127.0.0.1" in caplog.text
    assert PASSWORD not in caplog.text
    # Logged in, the login page goes on.
    response = await rig.client.get("/login?next=/engagements/x", allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/engagements/x"


async def test_wrong_password_and_unknown_user_get_the_same_answer(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    answers = []
    with caplog.at_level(logging.INFO, logger="declic.console"):
        for username, password in (
            ("alice", "not her password"),
            ("mallory", PASSWORD),
            ("sso-admin", PASSWORD),
        ):
            response = await rig.login(username, password)
            assert response.status == 401
            text = await response.text()
            assert "'error': 'wrong username or password'" in text
            answers.append(text.replace(username, "NAME"))
    assert len({re.sub(r"'login_csrf': '[^']+'", "", a) for a in answers}) == 1
    assert "failed login of 'mallory' from 127.0.0.1" in caplog.text
    assert "not her password" not in caplog.text
    assert COOKIE not in {c.key for c in rig.client.session.cookie_jar}
    assert rig.sessions() == 0


async def test_login_form_needs_its_token(rig: Rig) -> None:
    for token in (None, "forged"):
        data = {"username": "alice", "password": PASSWORD}
        if token:
            data["login_csrf"] = token
        response = await rig.client.post("/login", data=data, allow_redirects=False)
        assert response.status == 403
        assert "the login form expired" in await response.text()
    assert rig.sessions() == 0


async def test_failed_logins_are_limited_per_user_then_forgiven(rig: Rig) -> None:
    for _ in range(5):
        assert (await rig.login("alice", "wrong password!")).status == 401
    response = await rig.login("alice")  # the right password, too late
    assert response.status == 429
    assert "too many failed logins: try again in 15 minutes" in await response.text()
    assert response.headers["Retry-After"] == "900"
    assert rig.sessions() == 0
    # Others are not locked out.
    assert (await rig.login("eddie")).status == 303
    rig.clock.now += 14 * 60
    response = await rig.login("alice")
    assert response.status == 429 and "try again in 1 minute'" in await response.text()
    rig.clock.now += 60
    assert (await rig.login("alice")).status == 303


async def test_failed_logins_are_limited_per_address() -> None:
    clock = Clock()
    limiter = LoginLimiter(clock=clock)
    for n in range(20):
        assert limiter.wait_seconds("10.0.0.1", f"user-{n}") == 0
        limiter.failed("10.0.0.1", f"user-{n}")
    assert limiter.wait_seconds("10.0.0.1", "anyone") == 900
    assert limiter.wait_seconds("10.0.0.2", "anyone") == 0
    clock.now += 900
    assert limiter.wait_seconds("10.0.0.1", "anyone") == 0


async def test_a_success_forgets_the_users_failures() -> None:
    limiter = LoginLimiter(clock=Clock())
    for _ in range(4):
        limiter.failed("10.0.0.1", "alice")
    limiter.succeeded("10.0.0.1", "alice")
    for _ in range(4):
        limiter.failed("10.0.0.1", "alice")
    assert limiter.wait_seconds("10.0.0.1", "alice") == 0


def test_login_limiter_memory_is_bounded() -> None:
    limiter = LoginLimiter(clock=Clock(), max_keys=100)
    for n in range(1000):
        limiter.failed(f"10.0.{n // 256}.{n % 256}", f"user-{n}")
    assert len(limiter._users) == 100 and len(limiter._addresses) == 100


@pytest.mark.parametrize(
    ("next_path", "location"),
    [
        ("//evil.example", "/engagements"),
        ("https://evil.example", "/engagements"),
        ("/\\evil.example", "/engagements"),
        ("javascript:alert(1)", "/engagements"),
        ("", "/engagements"),
        ("/engagements/welcome?tab=history", "/engagements/welcome?tab=history"),
    ],
)
async def test_next_is_never_another_site(rig: Rig, next_path: str, location: str) -> None:
    response = await rig.login("alice", next_path=next_path)
    assert response.status == 303
    assert response.headers["Location"] == location


def test_safe_next() -> None:
    assert safe_next(None) == "/engagements"
    assert safe_next("/x\r\nSet-Cookie: a=b") == "/engagements"
    assert safe_next("/engagements/new") == "/engagements/new"


async def test_login_rotates_the_session_and_logout_ends_it(rig: Rig) -> None:
    await rig.login("alice")
    jar = rig.client.session.cookie_jar
    first = jar.filter_cookies(rig.client.make_url("/"))[COOKIE].value
    # Logged in, the form is not shown; a form posted all the same ends the old session.
    assert (await rig.client.get("/login", allow_redirects=False)).status == 303
    jar.update_cookies({LOGIN_COOKIE: "token"}, rig.client.make_url("/login"))
    form = {"username": "eddie", "password": PASSWORD, "login_csrf": "token"}
    assert (await rig.client.post("/login", data=form, allow_redirects=False)).status == 303
    assert rig.console.sessions.get(first) is None
    assert rig.sessions() == 1
    page = await rig.page()
    assert page["user"] == "eddie"
    # Logging out is a change: it needs the token too.
    response = await rig.client.post("/logout", allow_redirects=False)
    assert response.status == 403
    response = await rig.client.post(
        "/logout", data={"csrf_token": page["csrf"]}, allow_redirects=False
    )
    assert response.status == 303 and response.headers["Location"] == "/login"
    assert rig.sessions() == 0
    response = await rig.client.get("/engagements", allow_redirects=False)
    assert response.status == 303


# --- sessions -----------------------------------------------------------------------------------


async def test_sessions_expire_when_idle_and_when_old(rig: Rig) -> None:
    await rig.login("alice")
    rig.clock.now += 8 * 3600 - 1
    await rig.page()  # seen: idle again from now
    rig.clock.now += 8 * 3600 + 1
    response = await rig.client.get("/engagements", allow_redirects=False)
    assert response.status == 303
    assert rig.sessions() == 0

    store = SessionStore(clock=rig.clock)
    session_id, _ = store.create("alice", "admin")
    for _ in range(4):
        rig.clock.now += 6 * 3600
        assert store.get(session_id) is not None
    rig.clock.now += 1
    assert store.get(session_id) is None


def test_sessions_are_bounded_and_end_per_user() -> None:
    store = SessionStore(clock=Clock(), max_sessions=3)
    ids = [store.create(f"user-{n % 2}", "viewer")[0] for n in range(5)]
    assert len(store) == 3
    assert store.get(ids[0]) is None and store.get(ids[4]) is not None
    assert store.end_user("user-0") == 2
    assert len(store) == 1


async def test_a_removed_user_is_logged_out(rig: Rig) -> None:
    await rig.login("eddie")
    await rig.page()
    remove_user(rig.users_file, "eddie")
    response = await rig.client.get("/engagements", allow_redirects=False)
    assert response.status == 303
    assert rig.sessions() == 0


async def test_a_changed_role_applies_at_the_next_request(rig: Rig) -> None:
    await rig.login("eddie")
    page = await rig.page()
    assert page["role"] == "editor"
    pause = {"csrf_token": page["csrf"]}
    response = await rig.client.post("/engagements/welcome/pause", data=pause)
    assert response.status == 200
    users = load_users(rig.users_file)
    users["eddie"] = ConsoleUser("eddie", "viewer", users["eddie"].password_hash)
    rig.users_file.write_text(render_users(users))
    response = await rig.client.post("/engagements/welcome/pause", data=pause)
    assert response.status == 403
    assert await response.text() == "eddie (viewer) may not pause engagements"
    assert (await rig.page())["role"] == "viewer"
    assert rig.changes == [("eddie", "welcome")]


async def test_a_new_password_logs_the_user_out(rig: Rig) -> None:
    await rig.login("eddie")
    write_user(rig.users_file, "eddie", "editor", "a brand new password")
    response = await rig.client.get("/engagements", allow_redirects=False)
    assert response.status == 303


# --- CSRF and roles -----------------------------------------------------------------------------


async def test_changes_need_the_sessions_csrf_token(rig: Rig) -> None:
    await rig.login("alice")
    token = (await rig.page())["csrf"]
    url = "/engagements/welcome/pause"
    for data, headers in (
        ({}, {}),
        ({"csrf_token": ""}, {}),
        ({"csrf_token": token + "x"}, {}),
        ({"csrf_token": token}, {"X-CSRF-Token": "wrong"}),
    ):
        response = await rig.client.post(url, data=data, headers=headers)
        assert response.status == 403
        assert await response.text() == CSRF_REFUSED
    assert rig.changes == []
    assert (await rig.client.post(url, data={"csrf_token": token})).status == 200
    assert (await rig.client.post(url, headers={"X-CSRF-Token": token})).status == 200
    assert rig.changes == [("alice", "welcome"), ("alice", "welcome")]


async def test_another_sessions_token_is_refused(rig: Rig, users_file: Path) -> None:
    await rig.login("eddie")
    other = await make_rig(users_file)
    try:
        await other.login("alice")
        alices_token = (await other.page())["csrf"]
    finally:
        await other.client.close()
    response = await rig.client.post(
        "/engagements/welcome/pause", data={"csrf_token": alices_token}
    )
    assert response.status == 403 and rig.changes == []


async def test_a_viewer_gets_403_on_any_change(rig: Rig) -> None:
    await rig.login("vera")
    token = (await rig.page())["csrf"]
    response = await rig.client.post("/engagements/welcome/pause", data={"csrf_token": token})
    assert response.status == 403
    assert await response.text() == "vera (viewer) may not pause engagements"
    assert rig.changes == []


# --- cookies ------------------------------------------------------------------------------------


def cookie_line(response: Any, name: str) -> str:
    lines = [line for line in response.headers.getall("Set-Cookie") if line.startswith(name)]
    assert len(lines) == 1, lines
    return str(lines[0])


async def test_session_cookie_flags(rig: Rig) -> None:
    response = await rig.login("alice")
    line = cookie_line(response, f"{COOKIE}=")
    assert "HttpOnly" in line and "SameSite=Lax" in line and "Path=/" in line
    assert "Secure" not in line  # plain HTTP, no trusted proxy
    # X-Forwarded-Proto from an address that is no trusted proxy changes nothing.
    token = await rig.login_form()
    response = await rig.client.post(
        "/login",
        data={"username": "alice", "password": PASSWORD, "login_csrf": token},
        headers={"X-Forwarded-Proto": "https"},
        allow_redirects=False,
    )
    assert "Secure" not in cookie_line(response, f"{COOKIE}=")


async def test_session_cookie_is_secure_behind_a_trusted_tls_proxy(users_file: Path) -> None:
    rig = await make_rig(users_file, console_trusted_proxies="127.0.0.0/8")
    try:
        token = await rig.login_form()
        response = await rig.client.post(
            "/login",
            data={"username": "alice", "password": PASSWORD, "login_csrf": token},
            headers={"X-Forwarded-Proto": "https"},
            allow_redirects=False,
        )
        assert response.status == 303
        line = cookie_line(response, f"{COOKIE}=")
        assert "Secure" in line and "HttpOnly" in line and "SameSite=Lax" in line
    finally:
        await rig.client.close()


# --- proxy single sign-on -----------------------------------------------------------------------

HEADER = "X-Forwarded-User"


async def test_the_user_header_of_a_trusted_proxy_logs_in(users_file: Path) -> None:
    rig = await make_rig(
        users_file, console_user_header=HEADER, console_trusted_proxies="10.0.0.0/8,127.0.0.1"
    )
    try:
        page = await rig.page({HEADER: "sso-admin"})
        assert page["user"] == "sso-admin" and page["role"] == "admin"  # listed: its role
        response = await rig.client.get("/engagements", headers={HEADER: "sso-admin"})
        assert response.status == 200
        rig.client.session.cookie_jar.clear()
        assert (await rig.page({HEADER: "sso-admin"}))["csrf"] == page["csrf"]
        assert rig.sessions() == 1  # one session per proxy user
        # The token of the page works for changes.
        response = await rig.client.post(
            "/engagements/welcome/pause",
            headers={HEADER: "sso-admin", "X-CSRF-Token": page["csrf"]},
        )
        assert response.status == 200
        response = await rig.client.post(
            "/engagements/welcome/pause", headers={HEADER: "sso-admin"}
        )
        assert response.status == 403
        assert rig.changes == [("sso-admin", "welcome")]
        # Not listed: a viewer.
        page = await rig.page({HEADER: "zoe@example.com"})
        assert page["user"] == "zoe@example.com" and page["role"] == "viewer"
        response = await rig.client.post(
            "/engagements/welcome/pause",
            headers={HEADER: "zoe@example.com", "X-CSRF-Token": page["csrf"]},
        )
        assert response.status == 403
        # An invalid name logs nobody in, whatever the cookie.
        for name in ("x" * 257, "bad\tname"):
            response = await rig.client.get(
                "/engagements", headers={HEADER: name}, allow_redirects=False
            )
            assert response.status == 303, name
    finally:
        await rig.client.close()


async def test_the_user_header_from_elsewhere_is_ignored(
    users_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rig = await make_rig(
        users_file, console_user_header=HEADER, console_trusted_proxies="10.0.0.0/8"
    )
    try:
        with caplog.at_level(logging.WARNING, logger="declic.console"):
            for _ in range(3):
                response = await rig.client.get(
                    "/engagements", headers={HEADER: "sso-admin"}, allow_redirects=False
                )
                assert response.status == 303
        warnings = [r for r in caplog.records if HEADER in r.getMessage()]
        assert len(warnings) == 1 and "127.0.0.1" in warnings[0].getMessage()
        assert rig.sessions() == 0
        # A password login still works, and the header cannot change who it is.
        await rig.login("vera")
        assert (await rig.page({HEADER: "sso-admin"}))["user"] == "vera"
    finally:
        await rig.client.close()


def test_client_address_behind_trusted_proxies() -> None:
    proxies = Settings(console_trusted_proxies="10.0.0.0/8").console_proxies()

    def address(peer: str, forwarded: str | None) -> str:
        headers = {"X-Forwarded-For": forwarded} if forwarded else {}
        request = make_mocked_request("POST", "/login", headers=headers)
        request = request.clone(remote=peer)
        return client_address(request, proxies)

    assert address("10.0.0.5", "198.51.100.7, 10.0.0.9") == "198.51.100.7"
    assert address("10.0.0.5", None) == "10.0.0.5"
    assert address("203.0.113.1", "198.51.100.7") == "203.0.113.1"  # not from a proxy
    assert address("10.0.0.5", "evil, 198.51.100.7") == "198.51.100.7"


async def test_a_second_login_page_does_not_expire_the_first(rig: Rig) -> None:
    token = await rig.login_form()
    # Another tab, or the browser fetching /favicon.ico while logged out.
    assert await rig.login_form_again("/favicon.ico") == token
    form = {"username": "alice", "password": PASSWORD, "login_csrf": token}
    response = await rig.client.post("/login", data=form, allow_redirects=False)
    assert response.status == 303


async def test_logins_sent_at_once_are_each_counted(rig: Rig) -> None:
    token = await rig.login_form()
    form = {"username": "alice", "password": "wrong password!", "login_csrf": token}
    answers = await asyncio.gather(
        *(rig.client.post("/login", data=form, allow_redirects=False) for _ in range(12))
    )
    statuses = sorted(answer.status for answer in answers)
    assert statuses == [401] * 5 + [429] * 7
    # The right password too waits for the window to pass.
    right = await rig.client.post(
        "/login", data={**form, "password": PASSWORD}, allow_redirects=False
    )
    assert right.status == 429
