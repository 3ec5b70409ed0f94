"""An in-memory ConsoleData for the console's handler tests: the catalog's rules of
`engine.admin.engagements`, applied to dicts instead of topics."""

from __future__ import annotations

import uuid
from typing import Any

from engine.admin.diagnose import Snapshot
from engine.admin.engagements import (
    STATUS_ACTIONS,
    Change,
    EngagementRejected,
    _check_unique_names,
    _prepared,
    _version_records,
    check_versions,
    with_hash_version,
)
from engine.core.timestamps import format_timestamp
from engine.errors import DeclicError


class MemoryConsoleData:
    """Engagements, figures and changelog in memory; test sends answered at once."""

    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms
        self.records: dict[str, dict[str, Any]] = {}
        self.stats: dict[str, dict[str, Any]] = {}
        self.history: list[dict[str, Any]] = []
        self.names = ["checkout", "add_to_cart"]
        self.test_sends: list[tuple[str, str, str | None, str]] = []
        self.worker_running = True

    async def snapshot(self) -> Snapshot:
        return Snapshot(dict(self.stats), dict(self.records), list(self.history), self.now_ms)

    async def event_names(self) -> list[str]:
        return list(self.names)

    async def apply(
        self,
        document: dict[str, Any],
        author: str,
        now_ms: int,
        expected_version: int | None,
    ) -> Change:
        engagement = _prepared(document)
        check_versions({engagement["id"]: expected_version}, self.records)
        _check_unique_names([engagement], self.records)
        existing = self.records.get(engagement["id"])
        engagement = with_hash_version(engagement, existing)
        if existing is not None and existing["engagement"] == engagement:
            return Change(engagement["id"], "unchanged", existing["version"])
        return self._publish(
            existing, engagement, "create" if existing is None else "update", author, now_ms
        )

    async def change_status(
        self, engagement_id: str, action: str, author: str, now_ms: int
    ) -> Change:
        allowed, status = STATUS_ACTIONS[action]
        existing = self.records.get(engagement_id)
        if existing is None:
            raise EngagementRejected([f"no engagement {engagement_id!r}"])
        if existing["engagement"]["status"] not in allowed:
            raise EngagementRejected([f"cannot {action} {engagement_id!r}"])
        return self._publish(
            existing, {**existing["engagement"], "status": status}, action, author, now_ms
        )

    async def test_send(
        self, engagement_id: str, user_id: str, variant: str | None, author: str
    ) -> dict[str, Any]:
        if not self.worker_running:
            raise DeclicError("no worker produced the test delivery within 30s")
        self.test_sends.append((engagement_id, user_id, variant, author))
        engagement = self.records[engagement_id]["engagement"]
        return {
            "delivery_id": uuid.uuid4().hex,
            "engagement_id": engagement_id,
            "user_id": user_id,
            "variant": variant or "default",
            "message": engagement.get("message", {}),
            "test": True,
        }

    def _publish(
        self,
        existing: dict[str, Any] | None,
        engagement: dict[str, Any],
        action: str,
        author: str,
        now_ms: int,
    ) -> Change:
        version = 1 if existing is None else existing["version"] + 1
        record, change = _version_records(
            existing,
            engagement,
            action,
            version=version,
            author=author,
            at=format_timestamp(now_ms),
        )
        self.records[engagement["id"]] = record
        self.history.append(change)
        return Change(engagement["id"], action, version)
