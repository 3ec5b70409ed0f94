"""Engagement changes: what changed between two versions, and the changelog topic's history."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from engine.settings import Settings
from engine.stream.tail import read_to_end

_MISSING = object()


def changed_fields(
    old: Mapping[str, Any] | None, new: Mapping[str, Any] | None
) -> list[dict[str, Any]]:
    """Return each changed field by dotted path with old and new values (lists compared whole)."""
    changes: list[dict[str, Any]] = []
    _compare("", old or {}, new or {}, changes)
    return changes


def _compare(prefix: str, old: Any, new: Any, changes: list[dict[str, Any]]) -> None:
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        for key in sorted({*old, *new}):
            _compare(f"{prefix}{key}.", old.get(key, _MISSING), new.get(key, _MISSING), changes)
        return
    if old == new:
        return
    changes.append(
        {
            "field": prefix.rstrip("."),
            "old": None if old is _MISSING else old,
            "new": None if new is _MISSING else new,
        }
    )


async def read_history(
    settings: Settings, engagement_id: str | None = None
) -> list[dict[str, Any]]:
    """Return the changelog records (of one engagement, or all), oldest first."""
    changes = [
        orjson.loads(record.value)
        for record in await read_to_end(settings, settings.topic("engagement-changelog"))
    ]
    # One partition: already in the order the changes were made.
    return [
        change
        for change in changes
        if engagement_id is None or change["engagement_id"] == engagement_id
    ]
