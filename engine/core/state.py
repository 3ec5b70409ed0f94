"""Per-user and per-delivery state, with compact JSON forms for the shell's store.

``to_json_dict`` output is plain JSON (str keys, int times) and ``from_json_dict`` rebuilds
an equal object, so a store round trip is exact. Corrupt stored data raises
``InvalidRecord("invalid_state", ...)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from engine.errors import InvalidRecord

_MISSING: Final = object()


def _section(data: Mapping[str, object], key: str) -> Mapping[str, object]:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidRecord("invalid_state", f"{key!r} must be an object")
    return value


def _times(data: Mapping[str, object], key: str) -> dict[str, int]:
    times = dict(_section(data, key))
    for name, value in times.items():
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidRecord("invalid_state", f"{key!r}[{name!r}] must be epoch ms")
    return times  # type: ignore[return-value]  # every value checked above


def _stored_text(data: Mapping[str, object], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise InvalidRecord("invalid_state", f"{key!r} must be a string")
    return value


def _stored_int(data: Mapping[str, object], key: str) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRecord("invalid_state", f"{key!r} must be an integer")
    return value


class UserState:
    """A user's merged profile (newest timestamp wins per attribute) and delivery history.

    A ``null`` attribute value is kept with its timestamp: it clears the attribute (filters
    see it as missing) and still outranks older values arriving late.
    """

    __slots__ = ("_attribute_times", "_attributes", "_last_delivered")

    def __init__(
        self,
        attributes: Mapping[str, object] | None = None,
        attribute_times: Mapping[str, int] | None = None,
        last_delivered: Mapping[str, int] | None = None,
    ) -> None:
        self._attributes: dict[str, object] = dict(attributes or {})
        self._attribute_times: dict[str, int] = dict(attribute_times or {})
        self._last_delivered: dict[str, int] = dict(last_delivered or {})
        if self._attributes.keys() != self._attribute_times.keys():
            raise InvalidRecord("invalid_state", "every attribute needs exactly one timestamp")

    @property
    def attributes(self) -> Mapping[str, object]:
        """Return the merged profile, as filters see it; do not mutate."""
        return self._attributes

    @property
    def attribute_times(self) -> Mapping[str, int]:
        """Return the epoch ms at which each attribute was last set."""
        return self._attribute_times

    @property
    def last_delivered(self) -> Mapping[str, int]:
        """Return, per engagement id, the trigger time of the user's last delivery."""
        return self._last_delivered

    def merge_attributes(self, attributes: Mapping[str, object], timestamp_ms: int) -> bool:
        """Merge ``attributes`` set at ``timestamp_ms``; return whether anything changed.

        Per attribute the newest timestamp wins; on equal timestamps the incoming value wins.
        """
        if not attributes:
            return False
        values = self._attributes
        times = self._attribute_times
        changed = False
        for name, value in attributes.items():
            set_at = times.get(name)
            if set_at is not None and timestamp_ms < set_at:
                continue
            if set_at != timestamp_ms:
                times[name] = timestamp_ms
                changed = True
            current = values.get(name, _MISSING)
            # Compare types too: 1 == True in Python, but they are different JSON values.
            if current.__class__ is not value.__class__ or current != value:
                values[name] = value
                changed = True
        return changed

    def last_delivered_at(self, engagement_id: str) -> int | None:
        """Return the trigger time of the last delivery of ``engagement_id``, if any."""
        return self._last_delivered.get(engagement_id)

    def record_delivery(self, engagement_id: str, triggered_at_ms: int) -> None:
        """Remember a delivery; a late, older trigger never moves the time backwards."""
        previous = self._last_delivered.get(engagement_id)
        if previous is None or triggered_at_ms > previous:
            self._last_delivered[engagement_id] = triggered_at_ms

    def to_json_dict(self) -> dict[str, object]:
        """Return the compact JSON form: ``a`` attributes, ``t`` their times, ``d`` deliveries.

        Empty sections are left out, so a new user stores as ``{}``.
        """
        data: dict[str, object] = {}
        if self._attributes:
            data["a"] = dict(self._attributes)
            data["t"] = dict(self._attribute_times)
        if self._last_delivered:
            data["d"] = dict(self._last_delivered)
        return data

    @classmethod
    def from_json_dict(cls, data: object) -> UserState:
        """Rebuild a ``UserState`` from ``to_json_dict`` output."""
        if not isinstance(data, Mapping):
            raise InvalidRecord("invalid_state", "user state must be an object")
        return cls(_section(data, "a"), _times(data, "t"), _times(data, "d"))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, UserState):
            return NotImplemented
        return (
            self._attributes == other._attributes
            and self._attribute_times == other._attribute_times
            and self._last_delivered == other._last_delivered
        )

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return (
            f"UserState(attributes={self._attributes!r}, "
            f"attribute_times={self._attribute_times!r}, "
            f"last_delivered={self._last_delivered!r})"
        )


class DeliveryState:
    """A stored delivery, joined to the interactions that report on it.

    ``first_event_ids`` maps each interaction kind already seen to the event that was
    counted as its first; it holds at most one entry per kind, so it stays small.
    """

    __slots__ = (
        "created_at_ms",
        "delivery_id",
        "engagement_id",
        "engagement_version",
        "first_event_ids",
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
    ) -> None:
        self.delivery_id = delivery_id
        self.engagement_id = engagement_id
        self.engagement_version = engagement_version
        self.variant = variant
        self.user_id = user_id
        self.created_at_ms = created_at_ms
        self.first_event_ids: dict[str, str] = dict(first_event_ids or {})

    @property
    def kinds_seen(self) -> frozenset[str]:
        """Return the interaction kinds already recorded for this delivery."""
        return frozenset(self.first_event_ids)

    @property
    def counted_event_ids(self) -> frozenset[str]:
        """Return the interaction event ids that were counted as a first."""
        return frozenset(self.first_event_ids.values())

    def to_json_dict(self) -> dict[str, object]:
        """Return the compact JSON form of this delivery."""
        return {
            "id": self.delivery_id,
            "e": self.engagement_id,
            "v": self.engagement_version,
            "var": self.variant,
            "u": self.user_id,
            "c": self.created_at_ms,
            "k": dict(self.first_event_ids),
        }

    @classmethod
    def from_json_dict(cls, data: object) -> DeliveryState:
        """Rebuild a ``DeliveryState`` from ``to_json_dict`` output."""
        if not isinstance(data, Mapping):
            raise InvalidRecord("invalid_state", "delivery state must be an object")
        first_event_ids = _section(data, "k")
        for kind, event_id in first_event_ids.items():
            if not isinstance(event_id, str):
                raise InvalidRecord("invalid_state", f"'k'[{kind!r}] must be an event id")
        return cls(
            delivery_id=_stored_text(data, "id"),
            engagement_id=_stored_text(data, "e"),
            engagement_version=_stored_int(data, "v"),
            variant=_stored_text(data, "var"),
            user_id=_stored_text(data, "u"),
            created_at_ms=_stored_int(data, "c"),
            first_event_ids=first_event_ids,  # type: ignore[arg-type]  # values checked above
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DeliveryState):
            return NotImplemented
        return self.to_json_dict() == other.to_json_dict()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"DeliveryState({self.to_json_dict()!r})"
