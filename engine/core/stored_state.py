"""Typed readers of a user state's stored (compact JSON) form; corrupt data raises
``InvalidRecord("invalid_state", ...)``."""

from __future__ import annotations

from collections.abc import Mapping

from engine.core.json_values import is_integer, stored_object
from engine.errors import InvalidRecord


def read_times(data: Mapping[str, object], key: str) -> dict[str, int]:
    times = dict(stored_object(data, key))
    for name, value in times.items():
        if not is_integer(value):
            raise InvalidRecord("invalid_state", f"{key!r}[{name!r}] must be epoch ms")
    return times  # type: ignore[return-value]  # every value checked above


def read_list(data: Mapping[str, object], key: str) -> list[object]:
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidRecord("invalid_state", f"{key!r} must be an array")
    return value


def sorted_times(values: list[object], where: str) -> list[int]:
    times: list[int] = []
    for value in values:
        if not is_integer(value):
            raise InvalidRecord("invalid_state", f"{where} must hold epoch ms")
        times.append(value)
    return sorted(times)


def read_event_times(data: Mapping[str, object]) -> dict[str, list[int]]:
    result: dict[str, list[int]] = {}
    for name, values in stored_object(data, "n").items():
        if not isinstance(values, list) or not values:
            raise InvalidRecord("invalid_state", f"'n'[{name!r}] must be a non-empty array")
        result[name] = sorted_times(values, f"'n'[{name!r}]")
    return result
