"""Format version of stored state values, hence of state changelog records.

A stored value is a two-byte header, ``MARKER`` then the format version (one byte), in
front of the payload (the JSON the state classes write). ``MARKER`` (0xDC) can never
start a JSON text, so a value without the header is told apart: it is format 0, plain
JSON written before versioning, read as such. Format 1 has the same payload as format 0;
only the header is new.

Values are stored as they came (a changelog replay writes records unchanged) and
migrated on read: ``decode`` runs the steps of ``MIGRATIONS``, one per version
``n -> n + 1``, from the value's format up to ``CURRENT_FORMAT``. A worker refuses a
value of a newer format than it knows (or a malformed header) with
``StateFormatError``, naming both versions; nothing is guessed.

Rules for the next format change (any change to a stored payload that an older worker
would misread, or that this code could not tell apart from today's):

1. Bump ``CURRENT_FORMAT`` (``encode`` then writes the new version).
2. Add the step ``MIGRATIONS[old] = step``, turning an ``old`` payload into a new one
   (``step(key, payload)``: the key prefix, see ``engine.state.keys``, says what kind of
   value it is). Keep every older step: any older value may still be in a store or a
   changelog.
3. Keep the pinned fixtures under ``tests/unit/fixtures/state/`` unchanged (never
   regenerate them): the tests prove every later format still reads them. Add one for
   the new format, written by the new code.

A new optional field that older workers ignore and this code reads as its default when
missing needs no bump (a bump would stop rolling upgrades): list it in
``ADDITIVE_FIELDS``, by key prefix, so that the pinned-fixture test knows it.

A downgrade does not work once newer values were written: the older worker refuses them
with ``StateFormatError`` ("stored state format N is newer than format M, ...") when it
recovers the changelog or reads its store, instead of misreading them. Workers from
before versioning (format 0 only) do not know the header and fail to parse such values.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from engine.errors import StateFormatError

MARKER: Final = 0xDC
HEADER_SIZE: Final = 2
CURRENT_FORMAT: Final = 1
# Up to this size the payload is sliced off (one copy, cheaper than a memoryview); a
# larger one is returned as a memoryview, not copied again (orjson.loads reads both).
COPY_LIMIT: Final = 8192

Payload = bytes | memoryview
Migration = Callable[[bytes, Payload], Payload]

_HEADERS: Final = tuple(bytes((MARKER, version)) for version in range(256))


def _format_0_to_1(key: bytes, payload: Payload) -> Payload:
    """Format 1 only added the header: the payload is unchanged."""
    return payload


# Fields added to a kind of value (by key prefix) without a format bump: older workers
# ignore them, this code reads a value without them as their default. Figures (``s:``):
# ``activity_hours``, the console's last 24 hours.
ADDITIVE_FIELDS: Final[dict[bytes, tuple[str, ...]]] = {b"s:": ("activity_hours",)}

# Step from format n to format n + 1, for every n below CURRENT_FORMAT.
MIGRATIONS: dict[int, Migration] = {0: _format_0_to_1}


def encode(payload: bytes) -> bytes:
    """Return payload (current format) with its header, as stored and sent to the changelog."""
    return _HEADERS[CURRENT_FORMAT] + payload


def format_of(raw: bytes) -> int:
    """Return the format of a stored value; raise StateFormatError if this worker cannot read it."""
    if not raw or raw[0] != MARKER:
        return 0  # plain JSON, from before versioning
    if len(raw) < HEADER_SIZE or raw[1] == 0:
        raise StateFormatError(
            f"malformed stored state header {bytes(raw[:HEADER_SIZE])!r}: format 1 up to "
            f"{CURRENT_FORMAT} expected",
            found=None,
            newest=CURRENT_FORMAT,
        )
    version = raw[1]
    if version > CURRENT_FORMAT:
        raise StateFormatError(
            f"stored state format {version} is newer than format {CURRENT_FORMAT}, the newest "
            "this worker reads: upgrade the worker (a downgrade cannot read state written by "
            "a newer version)",
            found=version,
            newest=CURRENT_FORMAT,
        )
    return version


def decode(raw: bytes, key: bytes = b"") -> Payload:
    """Return the payload of a stored value in the current format, migrating older ones.

    ``key`` is the value's store key, for migration steps that depend on the kind of value.
    Raise StateFormatError for a newer format or a malformed header.
    """
    size = len(raw)
    if size > HEADER_SIZE and raw[0] == MARKER and raw[1] == CURRENT_FORMAT:
        return raw[HEADER_SIZE:] if size <= COPY_LIMIT else memoryview(raw)[HEADER_SIZE:]
    version = format_of(raw)
    payload: Payload = raw if version == 0 else memoryview(raw)[HEADER_SIZE:]
    while version < CURRENT_FORMAT:
        payload = MIGRATIONS[version](key, payload)
        version += 1
    return payload
