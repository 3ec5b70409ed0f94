"""Dead letters: a rejected input record, with why, kept under the record size limit."""

from __future__ import annotations

import base64

import orjson
from aiokafka.structs import ConsumerRecord

from engine.core.timestamps import format_timestamp
from engine.stream.bulk_send import OutputRecord

# Largest part of a rejected key kept in a dead letter (identifiers are far shorter).
KEY_BYTES = 1024
ERROR_CHARS = 2000
# Stands in for the sizes while the letter's own fields are measured.
_LARGEST_SIZE = 2**40


def dead_letter(
    record: ConsumerRecord,
    reason: str,
    detail: str,
    now_ms: int,
    *,
    topic: str,
    max_record_bytes: int,
) -> OutputRecord:
    """Return the dead letter of ``record``: its key and value together at most
    ``max_record_bytes`` long.

    The rejected key and value travel as base64, which takes 4 bytes for 3: what does not
    fit is cut, and the letter then says ``truncated`` with the original sizes. A record
    near the broker's limit would otherwise give a dead letter over it, which the broker
    refuses, for ever.
    """
    key, value = record.key, record.value
    letter: dict[str, object] = {
        "source_topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "key": "",
        "value": "",
        "reason": reason,
        "error": detail[:ERROR_CHARS],
        "at": format_timestamp(now_ms),
    }
    # Keyed like its input when the key is short enough to be an id.
    letter_key = key if key is not None and len(key) <= KEY_BYTES else None
    # Measured, not guessed: the error may be escaped to several times its length.
    fields = len(orjson.dumps({**letter, **_truncation(_LARGEST_SIZE, _LARGEST_SIZE)}))
    room = max_record_bytes - fields - len(letter_key or b"")  # for both base64 strings
    kept_key = None if key is None else key[: min(KEY_BYTES, _raw_fitting(room))]
    room -= _base64_length(kept_key)
    kept_value = None if value is None else value[: _raw_fitting(room)]
    letter["key"], letter["value"] = _b64(kept_key), _b64(kept_value)
    if kept_key != key or kept_value != value:
        letter.update(_truncation(len(key or b""), len(value or b"")))
    return OutputRecord(topic, letter_key, orjson.dumps(letter))


def _truncation(key_bytes: int, value_bytes: int) -> dict[str, object]:
    return {"truncated": True, "key_bytes": key_bytes, "value_bytes": value_bytes}


def _raw_fitting(base64_room: int) -> int:
    """Return how many raw bytes fit in ``base64_room`` bytes of base64."""
    return max(0, base64_room) // 4 * 3


def _base64_length(raw: bytes | None) -> int:
    return 0 if raw is None else -(-len(raw) // 3) * 4


def _b64(raw: bytes | None) -> str | None:
    return None if raw is None else base64.b64encode(raw).decode("ascii")
