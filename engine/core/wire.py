"""Typed input records: each decoded once, from JSON bytes or a parsed object, into an
untracked struct that enforces exactly what its schema in ``schemas/`` says.

msgspec does no I/O, so these live in the core: the stream shell decodes record values
with them and the core builds its events from the same structs, one definition for both.
What msgspec cannot say (a timestamp's date-time semantics, JSON Schema's integer 1.0)
is checked by ``timestamp_ms`` as the event is built. tests/unit/test_schema_agreement.py
proves structs and schemas accept and refuse the same records.

Every way a record can be wrong has one reason: ``invalid_json`` (not JSON),
``missing_field``, ``unknown_field``, ``invalid_timestamp`` (a timestamp of the wrong
type, shape or date) and ``invalid_field`` (any other value the schema refuses); the
detail starts with the field's path, e.g. ``$.device.platform``.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Final, Literal, TypeVar

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from engine.core.timestamps import MAX_EPOCH_MS, RFC3339_PATTERN, rfc3339_ms
from engine.errors import InvalidRecord

Identifier = Annotated[str, Meta(min_length=1, max_length=256)]
Rfc3339 = Annotated[str, Meta(pattern=RFC3339_PATTERN)]
# JSON Schema's integer counts 1.0 as one: a float is read, and refused if it has a fraction.
Timestamp = (
    Rfc3339
    | Annotated[int, Meta(ge=0, le=MAX_EPOCH_MS)]
    | Annotated[float, Meta(ge=0, le=MAX_EPOCH_MS)]
)
Name = Annotated[str, Meta(min_length=1, max_length=256)]

AttributeScalar = Annotated[str, Meta(max_length=256)] | int | float | bool | None
AttributeValue = AttributeScalar | Annotated[list[AttributeScalar], Meta(max_length=16)]
Attributes = Annotated[dict[Name, AttributeValue], Meta(max_length=128)]
PropertyScalar = Annotated[str, Meta(max_length=1024)] | int | float | bool | None
PropertyValue = PropertyScalar | Annotated[list[PropertyScalar], Meta(max_length=16)]
Properties = Annotated[dict[Name, PropertyValue], Meta(max_length=128)]


class Device(Struct, forbid_unknown_fields=True, frozen=True, gc=False):
    """A session event's device; every field optional."""

    platform: str | UnsetType = UNSET
    app_version: str | UnsetType = UNSET
    locale: str | UnsetType = UNSET
    timezone: str | UnsetType = UNSET


class SessionRecord(Struct, forbid_unknown_fields=True, frozen=True, gc=False):
    """schemas/session-event.schema.json."""

    event_id: Identifier
    user_id: Identifier
    type: Literal["session_start", "session_end"]
    timestamp: Timestamp
    session_id: Identifier | UnsetType = UNSET
    device: Device | UnsetType = UNSET
    attributes: Attributes | UnsetType = UNSET


class CustomEventRecord(Struct, forbid_unknown_fields=True, frozen=True, gc=False):
    """schemas/custom-event.schema.json."""

    event_id: Identifier
    user_id: Identifier
    name: Name
    timestamp: Timestamp
    properties: Properties | UnsetType = UNSET
    attributes: Attributes | UnsetType = UNSET


class InteractionRecord(Struct, forbid_unknown_fields=True, frozen=True, gc=False):
    """schemas/interaction.schema.json."""

    event_id: Identifier
    user_id: Identifier
    delivery_id: Identifier
    kind: Literal["impression", "click", "dismiss"]
    timestamp: Timestamp
    element: Annotated[str, Meta(max_length=256)] | None = None


class ProfileUpdateRecord(Struct, forbid_unknown_fields=True, frozen=True, gc=False):
    """schemas/profile-update.schema.json."""

    user_id: Identifier
    attributes: Attributes
    timestamp: Timestamp


class TestSendRecord(Struct, forbid_unknown_fields=True, frozen=True, gc=False):
    """schemas/test-send.schema.json."""

    __test__ = False  # not a pytest class, despite its name

    request_id: Identifier
    engagement_id: Annotated[str, Meta(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}\Z")]
    user_id: Identifier
    requested_at: Rfc3339
    author: Name
    variant: Annotated[str, Meta(min_length=1, max_length=64)] | UnsetType = UNSET


class UserRequestRecord(Struct, forbid_unknown_fields=True, frozen=True, gc=False):
    """schemas/user-request.schema.json."""

    request_id: Identifier
    action: Literal["forget"]
    user_id: Identifier
    requested_at: Rfc3339
    author: Name


InputRecord = SessionRecord | CustomEventRecord | InteractionRecord | ProfileUpdateRecord
S = TypeVar(
    "S",
    SessionRecord,
    CustomEventRecord,
    InteractionRecord,
    ProfileUpdateRecord,
    TestSendRecord,
    UserRequestRecord,
)

_DECODERS: Final[dict[type[Struct], msgspec.json.Decoder[Any]]] = {
    kind: msgspec.json.Decoder(kind)
    for kind in (
        SessionRecord,
        CustomEventRecord,
        InteractionRecord,
        ProfileUpdateRecord,
        TestSendRecord,
        UserRequestRecord,
    )
}
_TIMESTAMP_PATHS: Final = frozenset({"$.timestamp", "$.requested_at"})
# msgspec ends a message with where: " - at `$.device`" or " - at `key` in `$.attributes`".
_AT: Final = re.compile(r" - at (.+)\Z", re.DOTALL)
_FIELD: Final = re.compile(r"`([^`]*)`")


def decode(raw: bytes, kind: type[S]) -> S:
    """Decode the JSON bytes of one record of ``kind`` or raise ``InvalidRecord``."""
    try:
        record: S = _DECODERS[kind].decode(raw)
    except msgspec.ValidationError as error:
        raise _invalid(str(error)) from None
    except msgspec.DecodeError as error:
        raise InvalidRecord("invalid_json", str(error)) from None
    return record


def convert(document: object, kind: type[S]) -> S:
    """Read an already parsed record of ``kind`` (tests, golden cases) the same way."""
    try:
        return msgspec.convert(document, kind)
    except msgspec.ValidationError as error:
        raise _invalid(str(error)) from None


def timestamp_ms(record: InputRecord) -> int:
    """Return the record's timestamp as epoch ms, refusing what the schema's date-time does."""
    value = record.timestamp
    if isinstance(value, int):
        return value  # within 0..MAX_EPOCH_MS: its Meta says so
    if isinstance(value, str):
        try:
            return rfc3339_ms(value)
        except InvalidRecord as error:
            raise InvalidRecord(error.reason, f"$.timestamp: {error.detail}") from None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise InvalidRecord("invalid_timestamp", f"$.timestamp: {value!r} is not an integer")


def requested_at_ms(record: TestSendRecord | UserRequestRecord) -> int:
    """Return when a request was made, refusing what the schema's date-time does.

    Only checked, never computed with: any year the schema allows is fine.
    """
    try:
        return rfc3339_ms(record.requested_at, bounded=False)
    except InvalidRecord as error:
        raise InvalidRecord(error.reason, f"$.requested_at: {error.detail}") from None


# orjson, which writes every output and state, holds integers of 64 bits: as orjson read
# them before, a larger number is kept as the nearest float.
_INT_MIN: Final = -(2**63)
_INT_MAX: Final = 2**64 - 1


def fit_numbers(values: dict[str, Any]) -> dict[str, Any]:
    """Return ``values`` with each integer past 64 bits as a float (rare: copied then)."""
    for value in values.values():
        if _too_wide(value):
            break
        if value.__class__ is list and any(_too_wide(item) for item in value):
            break
    else:
        return values
    return {
        name: [_fit(item) for item in value] if value.__class__ is list else _fit(value)
        for name, value in values.items()
    }


def _too_wide(value: object) -> bool:
    return value.__class__ is int and not _INT_MIN <= value <= _INT_MAX


def _fit(value: Any) -> Any:
    return float(value) if _too_wide(value) else value


def _invalid(message: str) -> InvalidRecord:
    match = _AT.search(message)
    what = message if match is None else message[: match.start()]
    path = "$" if match is None else match[1].replace("`", "")
    if path.startswith("key in "):  # a name in attributes or properties
        path, what = path.removeprefix("key in "), f"a name: {what}"
    if what.startswith(("Object missing required field", "Object contains unknown field")):
        field = _FIELD.search(what)
        name = "" if field is None else field[1]
        reason = "missing_field" if what.startswith("Object missing") else "unknown_field"
        return InvalidRecord(reason, f"{path}.{name}: {what}")
    reason = "invalid_timestamp" if path in _TIMESTAMP_PATHS else "invalid_field"
    return InvalidRecord(reason, f"{path}: {what}")
