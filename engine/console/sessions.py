"""The console's logged-in users: sessions in memory, by the id their cookie carries."""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web


@dataclass(slots=True)
class Session:
    """One logged-in user. ``role`` is refreshed from the users file on every request."""

    user: str
    role: str
    csrf_token: str
    created: float
    last_seen: float
    via_proxy: bool = False
    # The password hash at login: a changed password ends the session.
    password_hash: str | None = None


SESSION = web.RequestKey("session", Session)
SESSION_ID = web.RequestKey("session_id", str)


class SessionStore:
    """Sessions in memory, by id: ended after ``idle_seconds`` unused or ``max_age_seconds``
    in all; past ``max_sessions`` the least recently used is ended."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        idle_seconds: float = 8 * 3600,
        max_age_seconds: float = 24 * 3600,
        max_sessions: int = 10_000,
    ) -> None:
        self.clock = clock
        self.idle_seconds = idle_seconds
        self.max_age_seconds = max_age_seconds
        self.max_sessions = max_sessions
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._proxy_sessions: dict[str, str] = {}  # proxy user -> their session's id

    def __len__(self) -> int:
        return len(self._sessions)

    def create(
        self, user: str, role: str, via_proxy: bool = False, password_hash: str | None = None
    ) -> tuple[str, Session]:
        """Start a session; return its id (the cookie's value) and the session."""
        now = self.clock()
        session_id = secrets.token_urlsafe(32)
        session = Session(user, role, secrets.token_urlsafe(32), now, now, via_proxy, password_hash)
        self._sessions[session_id] = session
        if via_proxy:
            self._proxy_sessions[user] = session_id
        while len(self._sessions) > self.max_sessions:
            oldest = next(iter(self._sessions))
            self.end(oldest)
        return session_id, session

    def get(self, session_id: str) -> Session | None:
        """Return the live session of this id (seen now), or None."""
        session = self._sessions.get(session_id)
        if session is None:
            return None
        now = self.clock()
        if now - session.last_seen > self.idle_seconds or now - session.created > (
            self.max_age_seconds
        ):
            self.end(session_id)
            return None
        session.last_seen = now
        self._sessions.move_to_end(session_id)
        return session

    def proxy_session(self, user: str, role: str) -> tuple[str, Session, bool]:
        """Return the one session of a proxy user (id, session, whether just created)."""
        session_id = self._proxy_sessions.get(user)
        session = self.get(session_id) if session_id is not None else None
        if session_id is not None and session is not None:
            return session_id, session, False
        session_id, session = self.create(user, role, via_proxy=True)
        return session_id, session, True

    def end(self, session_id: str) -> None:
        """End a session (nothing if there is none of that id)."""
        session = self._sessions.pop(session_id, None)
        if session is not None and self._proxy_sessions.get(session.user) == session_id:
            del self._proxy_sessions[session.user]

    def end_user(self, name: str) -> int:
        """End every session of a user; return how many."""
        ended = [key for key, session in self._sessions.items() if session.user == name]
        for session_id in ended:
            self.end(session_id)
        return len(ended)
