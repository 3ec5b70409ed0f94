"""Conversion rules and the watches that wait for a conversion event.

A watch starts at a delivery's first impression (for control users: at their
assignment) and lasts ``window_seconds``. The first custom event of the user matching the
rule (name and ``where``) with a timestamp in ``[start, start + window)`` converts it: one
conversion record, and the watch is gone, so a delivery converts at most once. Expired
watches are dropped whenever the list is touched; at most ``MAX_WATCHES`` are kept (the
ones expiring first are dropped beyond that).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, NamedTuple

from engine.core.durations import duration_seconds
from engine.core.events import TriggerEvent, compile_custom_event_match
from engine.core.json_values import is_integer
from engine.core.operators import Predicate
from engine.core.timestamps import format_timestamp
from engine.errors import InvalidRecord

MAX_WATCHES: Final = 32


@dataclass(frozen=True, slots=True)
class ConversionRule:
    """The custom event (trigger key and ``where``) that converts, within ``window_ms``."""

    trigger_key: str
    where: Predicate
    window_ms: int

    def matches(self, event: TriggerEvent) -> bool:
        """Return whether ``event`` is a conversion event for this rule."""
        return event.trigger_key == self.trigger_key and self.where(event.properties)


def compile_conversion(spec: object) -> ConversionRule | None:
    """Compile a ``conversion`` object, or return None when absent."""
    if spec is None:
        return None
    if not isinstance(spec, Mapping):
        raise InvalidRecord("invalid_engagement", "conversion must be an object")
    trigger_key, where = compile_custom_event_match(spec, "conversion")
    window = duration_seconds(spec.get("window_seconds"), "conversion window_seconds")
    return ConversionRule(trigger_key, where, window * 1000)


# A NamedTuple, not a frozen dataclass: every user-state load rebuilds up to MAX_WATCHES
# of them, and a frozen dataclass pays object.__setattr__ per field.
class ConversionWatch(NamedTuple):
    """A delivery (or control assignment, ``delivery_id`` None) waiting to convert."""

    delivery_id: str | None
    engagement_id: str
    variant: str
    started_at_ms: int
    expires_at_ms: int

    def to_json_dict(self) -> dict[str, object]:
        """Return the compact JSON form: ``d`` delivery, ``e``, ``v``, ``s`` start, ``x`` end."""
        return {
            "d": self.delivery_id,
            "e": self.engagement_id,
            "v": self.variant,
            "s": self.started_at_ms,
            "x": self.expires_at_ms,
        }

    @classmethod
    def from_json_dict(cls, data: object) -> ConversionWatch:
        """Rebuild a ``ConversionWatch`` from ``to_json_dict`` output."""
        if not isinstance(data, Mapping):
            raise InvalidRecord("invalid_state", "conversion watch must be an object")
        delivery_id, engagement_id, variant = data.get("d"), data.get("e"), data.get("v")
        started, expires = data.get("s"), data.get("x")
        if not (delivery_id is None or isinstance(delivery_id, str)):
            raise InvalidRecord("invalid_state", "watch 'd' must be a delivery id or null")
        if not isinstance(engagement_id, str) or not isinstance(variant, str):
            raise InvalidRecord("invalid_state", "watch 'e' and 'v' must be strings")
        if not is_integer(started) or not is_integer(expires):
            raise InvalidRecord("invalid_state", "watch 's' and 'x' must be epoch ms")
        return cls(delivery_id, engagement_id, variant, started, expires)


def add_watch(watches: list[ConversionWatch], watch: ConversionWatch) -> None:
    """Add ``watch``, dropping expired watches and the earliest-expiring beyond the bound."""
    now_ms = watch.started_at_ms
    watches[:] = [kept for kept in watches if kept.expires_at_ms > now_ms]
    watches.append(watch)
    if len(watches) > MAX_WATCHES:
        watches.sort(key=_expiry)
        del watches[: len(watches) - MAX_WATCHES]


def _expiry(watch: ConversionWatch) -> int:
    return watch.expires_at_ms


def conversion_record(event: TriggerEvent, watch: ConversionWatch) -> dict[str, object]:
    """Return the conversion record of ``event`` converting ``watch``."""
    return {
        "event_id": event.event_id,
        "delivery_id": watch.delivery_id,
        "engagement_id": watch.engagement_id,
        "variant": watch.variant,
        "user_id": event.user_id,
        "timestamp": format_timestamp(event.timestamp_ms),
        "seconds_to_convert": (event.timestamp_ms - watch.started_at_ms) / 1000,
    }
