"""Turn input records into typed core events.

Each record is decoded once by its struct in ``engine.core.wire``, which enforces exactly
its schema: ``read_*`` take a record's JSON bytes (the stream), the others an already
parsed object (tests, golden cases). A record the schema refuses raises ``InvalidRecord``
with one reason per way it is wrong (see ``engine.core.wire``).

Trigger keys index the catalog: ``session_start``, ``session_end``, or ``custom:<name>``
for a custom event, so a custom event named "session_start" cannot pose as a session.
Session events expose their ``device`` object as properties, so a trigger's ``where``
filters can test ``platform``, ``app_version``, ``locale`` or ``timezone``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, cast

from msgspec import UNSET, to_builtins

from engine.core.operators import Predicate, compile_filters
from engine.core.wire import (
    CustomEventRecord,
    InteractionRecord,
    ProfileUpdateRecord,
    SessionRecord,
    TestSendRecord,
    convert,
    decode,
    fit_numbers,
    requested_at_ms,
    timestamp_ms,
)
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


def read_session_event(raw: bytes) -> TriggerEvent:
    """Decode the JSON value of a ``sessions`` record into its trigger event."""
    return _session(decode(raw, SessionRecord))


def session_event(record: object) -> TriggerEvent:
    """Build the trigger event of a parsed ``sessions`` record."""
    return _session(convert(record, SessionRecord))


def _session(record: SessionRecord) -> TriggerEvent:
    device = None if record.device is UNSET else cast(dict[str, object], to_builtins(record.device))
    return TriggerEvent(
        event_id=record.event_id,
        user_id=record.user_id,
        event_name=record.type,
        trigger_key=record.type,
        timestamp_ms=timestamp_ms(record),
        properties=EMPTY_MAPPING if device is None else device,
        attributes=EMPTY_MAPPING if record.attributes is UNSET else fit_numbers(record.attributes),
        device=device,
    )


def read_custom_event(raw: bytes) -> TriggerEvent:
    """Decode the JSON value of a ``custom-events`` record into its trigger event."""
    return _custom(decode(raw, CustomEventRecord))


def custom_event(record: object) -> TriggerEvent:
    """Build the trigger event of a parsed ``custom-events`` record."""
    return _custom(convert(record, CustomEventRecord))


def _custom(record: CustomEventRecord) -> TriggerEvent:
    return TriggerEvent(
        event_id=record.event_id,
        user_id=record.user_id,
        event_name=record.name,
        trigger_key=CUSTOM_PREFIX + record.name,
        timestamp_ms=timestamp_ms(record),
        properties=EMPTY_MAPPING if record.properties is UNSET else fit_numbers(record.properties),
        attributes=EMPTY_MAPPING if record.attributes is UNSET else fit_numbers(record.attributes),
        device=None,
    )


def read_interaction(raw: bytes) -> Interaction:
    """Decode the JSON value of an ``interactions`` record."""
    return _interaction(decode(raw, InteractionRecord))


def interaction(record: object) -> Interaction:
    """Build the interaction of a parsed ``interactions`` record."""
    return _interaction(convert(record, InteractionRecord))


def _interaction(record: InteractionRecord) -> Interaction:
    return Interaction(
        event_id=record.event_id,
        user_id=record.user_id,
        delivery_id=record.delivery_id,
        kind=record.kind,
        element=record.element,
        timestamp_ms=timestamp_ms(record),
    )


def read_profile_update(raw: bytes) -> ProfileUpdate:
    """Decode the JSON value of a ``profiles`` record."""
    return _profile(decode(raw, ProfileUpdateRecord))


def profile_update(record: object) -> ProfileUpdate:
    """Build the profile update of a parsed ``profiles`` record."""
    return _profile(convert(record, ProfileUpdateRecord))


def _profile(record: ProfileUpdateRecord) -> ProfileUpdate:
    return ProfileUpdate(
        user_id=record.user_id,
        attributes=fit_numbers(record.attributes),
        timestamp_ms=timestamp_ms(record),
    )


def read_test_send(raw: bytes) -> TestSendRecord:
    """Decode the JSON value of a ``test-sends`` record."""
    request = decode(raw, TestSendRecord)
    requested_at_ms(request)  # its date-time must exist, as the schema says
    return request


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
