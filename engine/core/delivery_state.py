"""The stored state of one delivery, joined to the interactions that report on it."""

from __future__ import annotations

from collections.abc import Mapping

from engine.core.json_values import is_integer, stored_object
from engine.errors import InvalidRecord


def _event_ids(data: Mapping[str, object], key: str) -> dict[str, str]:
    ids: dict[str, str] = {}
    for name, event_id in stored_object(data, key).items():
        if not isinstance(event_id, str):
            raise InvalidRecord("invalid_state", f"{key!r}[{name!r}] must be an event id")
        ids[name] = event_id
    return ids


def _stored_text(data: Mapping[str, object], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise InvalidRecord("invalid_state", f"{key!r} must be a string")
    return value


def _stored_int(data: Mapping[str, object], key: str) -> int:
    value = data.get(key)
    if not is_integer(value):
        raise InvalidRecord("invalid_state", f"{key!r} must be an integer")
    return value


class DeliveryState:
    """A stored delivery, joined to the interactions that report on it.

    ``first_event_ids`` maps each interaction kind already seen to the event that was
    counted as its first; ``metric_event_ids`` maps each element metric already counted to
    the click that counted it. Both hold one entry per kind or metric, so they stay small.
    ``test`` marks a test send: its interactions never feed real metrics or conversions.
    """

    __slots__ = (
        "created_at_ms",
        "delivery_id",
        "engagement_id",
        "engagement_version",
        "first_event_ids",
        "metric_event_ids",
        "test",
        "user_id",
        "variant",
    )

    def __init__(
        self,
        *,
        delivery_id: str,
        engagement_id: str,
        engagement_version: int,
        variant: str,
        user_id: str,
        created_at_ms: int,
        first_event_ids: Mapping[str, str] | None = None,
        metric_event_ids: Mapping[str, str] | None = None,
        test: bool = False,
    ) -> None:
        self.delivery_id = delivery_id
        self.engagement_id = engagement_id
        self.engagement_version = engagement_version
        self.variant = variant
        self.user_id = user_id
        self.created_at_ms = created_at_ms
        self.first_event_ids: dict[str, str] = dict(first_event_ids or {})
        self.metric_event_ids: dict[str, str] = dict(metric_event_ids or {})
        self.test = test

    @property
    def kinds_seen(self) -> frozenset[str]:
        """Return the interaction kinds already recorded for this delivery."""
        return frozenset(self.first_event_ids)

    @property
    def counted_event_ids(self) -> frozenset[str]:
        """Return the interaction event ids that were counted as a first."""
        return frozenset(self.first_event_ids.values())

    def to_json_dict(self) -> dict[str, object]:
        """Return the compact JSON form; ``m`` and ``t`` only when set, as older records."""
        data: dict[str, object] = {
            "id": self.delivery_id,
            "e": self.engagement_id,
            "v": self.engagement_version,
            "var": self.variant,
            "u": self.user_id,
            "c": self.created_at_ms,
            "k": dict(self.first_event_ids),
        }
        if self.metric_event_ids:
            data["m"] = dict(self.metric_event_ids)
        if self.test:
            data["t"] = True
        return data

    @classmethod
    def from_json_dict(cls, data: object) -> DeliveryState:
        """Rebuild a ``DeliveryState`` from ``to_json_dict`` output."""
        if not isinstance(data, Mapping):
            raise InvalidRecord("invalid_state", "delivery state must be an object")
        test = data.get("t", False)
        if not isinstance(test, bool):
            raise InvalidRecord("invalid_state", "'t' must be a boolean")
        return cls(
            delivery_id=_stored_text(data, "id"),
            engagement_id=_stored_text(data, "e"),
            engagement_version=_stored_int(data, "v"),
            variant=_stored_text(data, "var"),
            user_id=_stored_text(data, "u"),
            created_at_ms=_stored_int(data, "c"),
            first_event_ids=_event_ids(data, "k"),
            metric_event_ids=_event_ids(data, "m"),
            test=test,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DeliveryState):
            return NotImplemented
        return self.to_json_dict() == other.to_json_dict()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"DeliveryState({self.to_json_dict()!r})"
