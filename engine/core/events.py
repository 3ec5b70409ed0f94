"""Turn schema-validated input records into typed core events.

Records were validated upstream, but these functions still check every field they read:
an odd value raises ``InvalidRecord`` (reasons ``missing_field``, ``invalid_field``,
``invalid_timestamp``) instead of failing later on the hot path.

Trigger keys index the catalog: ``session_start``, ``session_end``, or ``custom:<name>``
for a custom event, so a custom event named "session_start" cannot pose as a session.
Session events expose their ``device`` object as properties, so a trigger's ``where``
filters can test ``platform``, ``app_version``, ``locale`` or ``timezone``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from engine.core.operators import Predicate, compile_filters
from engine.core.timestamps import parse_timestamp
from engine.errors import InvalidRecord

SESSION_START: Final = "session_start"
SESSION_END: Final = "session_end"
CUSTOM_PREFIX: Final = "custom:"
INTERACTION_KINDS: Final = frozenset({"impression", "click", "dismiss"})

EMPTY_MAPPING: Final[Mapping[str, object]] = MappingProxyType({})


def custom_trigger_key(name: str) -> str:
    """Return the catalog key of custom events named ``name``."""
    return CUSTOM_PREFIX + name


@dataclass(frozen=True, slots=True)
class TriggerEvent:
    """An event that may trigger engagements: a session start/end or a custom event."""

    event_id: str
    user_id: str
    event_name: str  # "session_start", "session_end" or the custom event's name
    trigger_key: str
    timestamp_ms: int
    properties: Mapping[str, object]
    attributes: Mapping[str, object]
    device: Mapping[str, object] | None


@dataclass(frozen=True, slots=True)
class Interaction:
    """A user's impression, click or dismiss on a delivered message."""

    event_id: str
    user_id: str
    delivery_id: str
    kind: str
    element: str | None
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class ProfileUpdate:
    """Attributes to merge into a user's profile as of ``timestamp_ms``."""

    user_id: str
    attributes: Mapping[str, object]
    timestamp_ms: int


def _record(record: object) -> Mapping[str, object]:
    if not isinstance(record, Mapping):
        raise InvalidRecord("invalid_field", f"record is {type(record).__name__}, not an object")
    return record


def _text(record: Mapping[str, object], field: str) -> str:
    value = record.get(field)
    if value is None:
        raise InvalidRecord("missing_field", f"{field} is required")
    if not isinstance(value, str) or not value:
        raise InvalidRecord("invalid_field", f"{field} must be a non-empty string")
    return value


def _mapping(record: Mapping[str, object], field: str) -> Mapping[str, object] | None:
    value = record.get(field)
    if value is None or isinstance(value, Mapping):
        return value
    raise InvalidRecord("invalid_field", f"{field} must be an object")


def _timestamp(record: Mapping[str, object]) -> int:
    value = record.get("timestamp")
    if value is None:
        raise InvalidRecord("missing_field", "timestamp is required")
    return parse_timestamp(value)


def session_event(record: object) -> TriggerEvent:
    """Build the trigger event of a ``sessions`` record."""
    fields = _record(record)
    kind = _text(fields, "type")
    if kind not in (SESSION_START, SESSION_END):
        raise InvalidRecord("invalid_field", f"unknown session type {kind!r}")
    device = _mapping(fields, "device")
    return TriggerEvent(
        event_id=_text(fields, "event_id"),
        user_id=_text(fields, "user_id"),
        event_name=kind,
        trigger_key=kind,
        timestamp_ms=_timestamp(fields),
        properties=EMPTY_MAPPING if device is None else device,
        attributes=_mapping(fields, "attributes") or EMPTY_MAPPING,
        device=device,
    )


def custom_event(record: object) -> TriggerEvent:
    """Build the trigger event of a ``custom-events`` record."""
    fields = _record(record)
    name = _text(fields, "name")
    return TriggerEvent(
        event_id=_text(fields, "event_id"),
        user_id=_text(fields, "user_id"),
        event_name=name,
        trigger_key=CUSTOM_PREFIX + name,
        timestamp_ms=_timestamp(fields),
        properties=_mapping(fields, "properties") or EMPTY_MAPPING,
        attributes=_mapping(fields, "attributes") or EMPTY_MAPPING,
        device=None,
    )


def interaction(record: object) -> Interaction:
    """Build the interaction of an ``interactions`` record."""
    fields = _record(record)
    kind = _text(fields, "kind")
    if kind not in INTERACTION_KINDS:
        raise InvalidRecord("invalid_field", f"unknown interaction kind {kind!r}")
    element = fields.get("element")
    if element is not None and not isinstance(element, str):
        raise InvalidRecord("invalid_field", "element must be a string")
    return Interaction(
        event_id=_text(fields, "event_id"),
        user_id=_text(fields, "user_id"),
        delivery_id=_text(fields, "delivery_id"),
        kind=kind,
        element=element,
        timestamp_ms=_timestamp(fields),
    )


def profile_update(record: object) -> ProfileUpdate:
    """Build the profile update of a ``profiles`` record."""
    fields = _record(record)
    attributes = _mapping(fields, "attributes")
    if attributes is None:
        raise InvalidRecord("missing_field", "attributes is required")
    return ProfileUpdate(
        user_id=_text(fields, "user_id"),
        attributes=attributes,
        timestamp_ms=_timestamp(fields),
    )


def compile_custom_event_match(spec: Mapping[str, object], what: str) -> tuple[str, Predicate]:
    """Compile the ``event`` name and ``where`` filters of a ``what`` (cancel_on, conversion).

    Return the custom event's trigger key and the predicate its properties must pass.
    """
    name = spec.get("event")
    if not isinstance(name, str) or not name:
        raise InvalidRecord("invalid_engagement", f"{what} event must be a custom event name")
    where = spec.get("where") or []
    if not isinstance(where, list):
        raise InvalidRecord("invalid_engagement", f"{what} where must be an array")
    return CUSTOM_PREFIX + name, compile_filters(where, "property")
