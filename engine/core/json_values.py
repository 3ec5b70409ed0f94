"""Checks on decoded JSON values, shared by record, engagement and stored-state readers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeGuard

from engine.errors import InvalidRecord


def is_integer(value: object) -> TypeGuard[int]:
    """Return whether ``value`` is a JSON integer: an int, and not a bool (Python's is)."""
    return isinstance(value, int) and not isinstance(value, bool)


def stored_object(data: Mapping[str, object], key: str) -> Mapping[str, object]:
    """Return stored state's object under ``key``, ``{}`` when absent or null.

    Raise ``InvalidRecord("invalid_state", ...)`` for anything but an object.
    """
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidRecord("invalid_state", f"{key!r} must be an object")
    return value
