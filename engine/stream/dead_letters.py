"""Dead letters: a rejected input record, with why, kept under the record size limit."""

from __future__ import annotations

import base64

import orjson
from aiokafka.structs import ConsumerRecord

from engine.core.timestamps import format_timestamp
from engine.stream.bulk_send import OutputRecord

# Room a dead letter keeps for its own fields besides the rejected key and value.
OVERHEAD_BYTES = 4096
# Largest part of a rejected key kept in a dead letter (identifiers are far shorter).
KEY_BYTES = 1024
ERROR_CHARS = 2000


def dead_letter(
    record: ConsumerRecord,
    reason: str,
    detail: str,
    now_ms: int,
    *,
    topic: str,
    max_record_bytes: int,
) -> OutputRecord:
    """Return the dead letter of ``record``, at most ``max_record_bytes`` long.

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
        "key": None,
        "value": None,
        "reason": reason,
        "error": detail[:ERROR_CHARS],
        "at": format_timestamp(now_ms),
    }
    # Keyed like its input when the key is short enough to be an id.
    letter_key = key if key is not None and len(key) <= KEY_BYTES else None
    room = (max_record_bytes - OVERHEAD_BYTES - len(letter_key or b"")) * 3 // 4
    kept_key = None if key is None else key[: min(KEY_BYTES, room)]
    kept_value = None if value is None else value[: max(0, room - len(kept_key or b""))]
    letter["key"], letter["value"] = _b64(kept_key), _b64(kept_value)
    if kept_key != key or kept_value != value:
        letter["truncated"] = True
        letter["key_bytes"] = len(key or b"")
        letter["value_bytes"] = len(value or b"")
    return OutputRecord(topic, letter_key, orjson.dumps(letter))


def _b64(raw: bytes | None) -> str | None:
    return None if raw is None else base64.b64encode(raw).decode("ascii")
