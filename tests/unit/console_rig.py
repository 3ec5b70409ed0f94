"""The console on aiohttp's test server with in-memory data, and a user agent that logs in
and submits forms the way a browser does (the page's own fields and tokens)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer

from engine.console.app import build_app
from engine.console.context import Console
from engine.console.login_limits import LoginLimiter
from engine.console.sessions import SessionStore
from engine.console.users import UsersFile, write_user
from engine.settings import Settings
from tests.unit.console_fakes import MemoryConsoleData

NOW_MS = 1_796_040_000_000  # 2026-11-30T10:00:00Z
PASSWORD = "correct horse battery"
USERS = {"ada": "admin", "erin": "editor", "vic": "viewer"}


class FormFields(HTMLParser):
    """The fields a browser would submit from one form of a page (the first whose action
    matches), as (name, value) pairs: inputs, checked boxes, selected options, textareas."""

    def __init__(self, action: str) -> None:
        super().__init__(convert_charrefs=True)
        self.action = action
        self.pairs: list[tuple[str, str]] = []
        self._inside = False
        self._done = False
        self._select: str | None = None
        self._selected: str | None = None
        self._first_option: str | None = None
        self._textarea: str | None = None
        self._text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {key: value or "" for key, value in attrs}
        if tag == "form" and not self._done and found.get("action") == self.action:
            self._inside = True
        if not self._inside:
            return
        name = found.get("name", "")
        if tag == "input" and name:
            kind = found.get("type", "text")
            if kind in ("checkbox", "radio"):
                if "checked" in found:
                    self.pairs.append((name, found.get("value", "on")))
            elif kind != "submit":
                self.pairs.append((name, _sanitized(kind, found.get("value", ""))))
        elif tag == "select":
            self._select, self._selected, self._first_option = name, None, None
        elif tag == "option" and self._select is not None:
            value = found.get("value", "")
            if self._first_option is None:
                self._first_option = value
            if "selected" in found:
                self._selected = value
        elif tag == "textarea":
            self._textarea, self._text = name, ""

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            self._text += data

    def handle_endtag(self, tag: str) -> None:
        if not self._inside:
            return
        if tag == "select" and self._select:
            chosen = self._selected if self._selected is not None else self._first_option
            self.pairs.append((self._select, chosen or ""))
            self._select = None
        elif tag == "textarea" and self._textarea:
            self.pairs.append((self._textarea, self._text.removeprefix("\n")))
            self._textarea = None
        elif tag == "form":
            self._inside, self._done = False, True


def _sanitized(kind: str, value: str) -> str:
    """A value as the browser sends it: text inputs lose line breaks, URLs their spaces
    too (HTML's value sanitization)."""
    if kind in ("text", "search", "url", "tel", "email", "password"):
        value = value.replace("\r", "").replace("\n", "")
    return value.strip() if kind in ("url", "email") else value


def form_fields(page: str, action: str) -> list[tuple[str, str]]:
    """Return what submitting the form posting to ``action`` on ``page`` would send."""
    parser = FormFields(action)
    parser.feed(page)
    if not parser._done:
        raise AssertionError(f"no form posting to {action} on the page")
    return parser.pairs


@dataclass
class Rig:
    client: TestClient[Any, Any]
    data: MemoryConsoleData
    console: Console
    users_file: Path

    async def log_in(self, user: str, password: str = PASSWORD) -> ClientResponse:
        page = await (await self.client.get("/login")).text()
        token = dict(form_fields(page, "/login"))["login_csrf"]
        return await self.client.post(
            "/login",
            data={"username": user, "password": password, "login_csrf": token, "next": ""},
            allow_redirects=False,
        )

    async def log_out(self) -> None:
        page = await (await self.client.get("/engagements")).text()
        await self.client.post("/logout", data=form_fields(page, "/logout"), allow_redirects=False)

    async def csrf(self, path: str = "/engagements") -> str:
        page = await (await self.client.get(path)).text()
        found = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert found, "the page carries no CSRF token"
        return found.group(1)

    async def submit(
        self, page_path: str, action: str, changes: dict[str, str], button: tuple[str, str]
    ) -> ClientResponse:
        """Load ``page_path``, change fields of its form posting to ``action``, press
        ``button`` (name, value)."""
        page = await (await self.client.get(page_path)).text()
        pairs = [(name, value) for name, value in form_fields(page, action) if name not in changes]
        pairs += [*changes.items(), button]
        return await self.client.post(action, data=pairs, allow_redirects=False)


@asynccontextmanager
async def console_rig(tmp_path: Path, **settings: Any) -> AsyncIterator[Rig]:
    users_file = tmp_path / "users.yaml"
    for name, role in USERS.items():
        write_user(users_file, name, role, PASSWORD)
    data = MemoryConsoleData(NOW_MS)
    console = Console(
        settings=Settings(console_users_file=users_file, **settings),
        data=data,
        sessions=SessionStore(),
        login_limiter=LoginLimiter(),
        users=UsersFile(users_file),
        wall_clock_ms=lambda: data.now_ms,
    )
    client: TestClient[Any, Any] = TestClient(TestServer(build_app(console)))
    await client.start_server()
    try:
        yield Rig(client, data, console, users_file)
    finally:
        await client.close()
