"""Read an engagement's changelog: its current life, its launch, the changes made since.

An engagement's *life* is the run of changelog records since it was last deleted (a
delete ends one; a later create starts the next). Its *launch* is the first record of
that life that made it active: a create or update setting ``status`` to ``active``, or a
resume.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from engine.core.timestamps import parse_timestamp
from engine.errors import InvalidRecord

# Actions that set a status whatever their listed changes say.
_STATUS_OF_ACTION: Final = {"pause": "paused", "resume": "active", "archive": "archived"}


@dataclass(frozen=True, slots=True)
class FieldChange:
    """One field's old and new value, by dotted path."""

    field: str
    old: Any
    new: Any

    def to_json_dict(self) -> dict[str, Any]:
        """Return the change as JSON-ready values."""
        return {"field": self.field, "old": self.old, "new": self.new}


@dataclass(frozen=True, slots=True)
class ChangeEntry:
    """One changelog record: who did what to the engagement, and when."""

    version: int
    action: str
    author: str
    at: str
    at_ms: int
    changes: tuple[FieldChange, ...]

    def sets_status(self, status: str) -> bool:
        """Return whether this record left the engagement in ``status``."""
        if _STATUS_OF_ACTION.get(self.action) == status:
            return True
        return any(item.field == "status" and item.new == status for item in self.changes)

    def to_json_dict(self) -> dict[str, Any]:
        """Return the record as JSON-ready values."""
        return {
            "version": self.version,
            "action": self.action,
            "author": self.author,
            "at": self.at,
            "changes": [item.to_json_dict() for item in self.changes],
        }


def _entry(record: Mapping[str, Any]) -> ChangeEntry | None:
    try:
        at_ms = parse_timestamp(record.get("at"))
    except InvalidRecord:
        return None
    changes = tuple(
        FieldChange(str(item.get("field", "")), item.get("old"), item.get("new"))
        for item in record.get("changes") or ()
        if isinstance(item, Mapping)
    )
    version = record.get("version")
    return ChangeEntry(
        version=version if isinstance(version, int) else 0,
        action=str(record.get("action", "")),
        author=str(record.get("author", "")),
        at=str(record.get("at")),
        at_ms=at_ms,
        changes=changes,
    )


def read_entries(history: Iterable[Mapping[str, Any]], engagement_id: str) -> list[ChangeEntry]:
    """Return the readable records of ``engagement_id``, oldest first."""
    entries = []
    for record in history:
        if record.get("engagement_id", engagement_id) != engagement_id:
            continue
        entry = _entry(record)
        if entry is not None:
            entries.append(entry)
    return entries


def current_life(entries: Sequence[ChangeEntry], exists: bool) -> tuple[ChangeEntry, ...]:
    """Return the records of the engagement's current life (its last one when deleted)."""
    ends = [index for index, entry in enumerate(entries) if entry.action == "delete"]
    if not exists and ends and ends[-1] == len(entries) - 1:
        ends.pop()  # the final delete closes the life we report on
    start = ends[-1] + 1 if ends else 0
    return tuple(entries[start:])


def launch_index(life: Sequence[ChangeEntry]) -> int | None:
    """Return the index of the record that first made the engagement active, if any."""
    return next((index for index, entry in enumerate(life) if entry.sets_status("active")), None)


def changes_to_list(life: Sequence[ChangeEntry], since_ms: int | None) -> tuple[ChangeEntry, ...]:
    """Return the records at or after ``since_ms``, else those after the launch."""
    if since_ms is not None:
        return tuple(entry for entry in life if entry.at_ms >= since_ms)
    launched = launch_index(life)
    return () if launched is None else tuple(life[launched + 1 :])


def last_setting(life: Sequence[ChangeEntry], status: str) -> ChangeEntry | None:
    """Return the latest record that left the engagement in ``status``."""
    return next((entry for entry in reversed(life) if entry.sets_status(status)), None)
