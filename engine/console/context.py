"""What every console handler reaches through ``request.app[CONSOLE]``.

``build_app`` takes the parts ready-made: the server plugs in the Kafka-backed data
source, the tests an in-memory one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web

from engine.admin.diagnose import Snapshot
from engine.admin.engagements import Change
from engine.console.login_limits import LoginLimiter
from engine.console.sessions import SessionStore
from engine.console.users import ConsoleUser
from engine.settings import Settings


class ConsoleData(Protocol):
    """Where the console reads and writes: Kafka in production, memory in tests. Writes go
    through the code of the `declic engagements` commands, with the author given."""

    async def snapshot(self) -> Snapshot:
        """Return the engagements, their figures and their changelog, as one read found
        them (a read at most a few seconds old)."""
        ...

    async def event_names(self) -> list[str]:
        """Return the custom event names seen recently, most frequent first."""
        ...

    async def apply(
        self, document: dict[str, Any], author: str, now_ms: int, expected_version: int | None
    ) -> Change:
        """Publish a new or changed engagement (as `declic engagements apply`), unless its
        current version is not ``expected_version`` (None: unless it exists)."""
        ...

    async def change_status(
        self, engagement_id: str, action: str, author: str, now_ms: int
    ) -> Change:
        """Pause, resume or archive (as `declic engagements pause|resume|archive`)."""
        ...

    async def test_send(
        self, engagement_id: str, user_id: str, variant: str | None, author: str
    ) -> dict[str, Any]:
        """Ask the worker owning the user for a test delivery; return it."""
        ...


Render = Callable[[web.Request, str, Mapping[str, Any], int], Awaitable[web.Response]]


@dataclass(slots=True)
class Console:
    """The console's parts."""

    settings: Settings
    data: ConsoleData
    sessions: SessionStore
    login_limiter: LoginLimiter
    # Read again when the file changes: `declic console add-user` needs no restart.
    users: Callable[[], Mapping[str, ConsoleUser]]
    wall_clock_ms: Callable[[], int]
    extra: dict[str, Any] = field(default_factory=dict)


CONSOLE = web.AppKey("console", Console)
