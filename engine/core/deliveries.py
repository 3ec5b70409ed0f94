"""Build delivery records and their stored state.

A delivery id is ``uuid5(DECLIC_NAMESPACE, name)``, so reprocessing the same input yields
the same id and downstream can drop the repeat. With US = ``"\\x1f"`` (the ASCII unit
separator), the name is, for a delivery of ``engagement_id`` to ``user_id`` triggered by
``trigger_event_id``:

* ``engagement_id + US + user_id + US + trigger_event_id`` when no part contains US;
* else ``json.dumps([engagement_id, user_id, trigger_event_id], ensure_ascii=False,
  separators=(",", ":"))``;

and for a test send of request ``request_id``:

* ``engagement_id + US + user_id + US + "test" + US + request_id`` when no part contains US;
* else ``json.dumps([engagement_id, user_id, "test", request_id], ensure_ascii=False,
  separators=(",", ":"))``.

Every name is UTF-8 encoded. The four forms never meet, so distinct inputs give distinct
names: a joined name holds exactly two US (delivery) or three (test send) and splits back
into its parts, while JSON escapes control characters (US is written ``\\u001f``), so a
JSON name holds no US at all and decodes to its parts, three or four. The joined forms are
the original formula, kept so ids of parts without US never changed. Like the bucketing
hash, the formula is frozen.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from typing import Final

from engine.core.delivery_state import DeliveryState
from engine.core.engagements import Engagement
from engine.core.events import TriggerEvent
from engine.core.json_values import is_integer
from engine.core.timestamps import format_timestamp
from engine.core.variants import DEFAULT_VARIANT, Variant
from engine.errors import InvalidRecord

__all__ = [
    "DECLIC_NAMESPACE",
    "DEFAULT_VARIANT",
    "build_delivery",
    "delivery_id",
    "delivery_id_for_test_send",
    "delivery_record",
    "new_delivery_state",
]

# uuid5(NAMESPACE_URL, "urn:declic:delivery"), written out so it can never drift.
DECLIC_NAMESPACE: Final = uuid.UUID("eb480550-e1a7-5a82-8324-0be73b2fb912")
_SEPARATOR: Final = "\x1f"  # ASCII unit separator: ids holding it take the JSON form
_TEST_TAG: Final = "test"
# uuid.uuid5 rebuilds this hash and a UUID object per call; this path is ~3x faster and
# produces the same string (a test holds it to uuid.uuid5).
_NAMESPACE_SHA1: Final = hashlib.sha1(DECLIC_NAMESPACE.bytes, usedforsecurity=False)


def _json_name(*parts: str) -> str:
    # Joining would be ambiguous; JSON escapes US, so this can never equal a joined name.
    return json.dumps(parts, ensure_ascii=False, separators=(",", ":"))


def _uuid5(name: str) -> str:
    """Return ``str(uuid.uuid5(DECLIC_NAMESPACE, name))``."""
    sha1 = _NAMESPACE_SHA1.copy()
    sha1.update(name.encode())
    raw = bytearray(sha1.digest()[:16])
    raw[6] = (raw[6] & 0x0F) | 0x50  # version 5
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    hex_id = raw.hex()
    return f"{hex_id[:8]}-{hex_id[8:12]}-{hex_id[12:16]}-{hex_id[16:20]}-{hex_id[20:]}"


def delivery_id(engagement_id: str, user_id: str, trigger_event_id: str) -> str:
    """Return the deterministic id of the delivery an event triggers for an engagement."""
    if _SEPARATOR in engagement_id or _SEPARATOR in user_id or _SEPARATOR in trigger_event_id:
        return _uuid5(_json_name(engagement_id, user_id, trigger_event_id))
    return _uuid5(f"{engagement_id}{_SEPARATOR}{user_id}{_SEPARATOR}{trigger_event_id}")


def delivery_id_for_test_send(engagement_id: str, user_id: str, request_id: str) -> str:
    """Return the deterministic id of a test send; it never equals a delivery's id."""
    if _SEPARATOR in engagement_id or _SEPARATOR in user_id or _SEPARATOR in request_id:
        return _uuid5(_json_name(engagement_id, user_id, _TEST_TAG, request_id))
    return _uuid5(_SEPARATOR.join((engagement_id, user_id, _TEST_TAG, request_id)))


def delivery_record(
    engagement: Engagement,
    variant: Variant,
    *,
    delivery_id: str,
    user_id: str,
    trigger_event_id: str,
    triggered_at: str,
    created_at: str,
    created_at_ms: int,
    test: bool = False,
) -> dict[str, object]:
    """Return a delivery record from timestamps already formatted by the caller.

    ``expires_at`` (``created_at`` plus the engagement's ``expires_after_seconds``) is
    present only when the engagement sets it.
    """
    record: dict[str, object] = {
        "delivery_id": delivery_id,
        "engagement_id": engagement.id,
        "engagement_version": engagement.version,
        "variant": variant.id,
        "user_id": user_id,
        "trigger_event_id": trigger_event_id,
        "message": variant.message,
        "triggered_at": triggered_at,
        "created_at": created_at,
        "test": test,
    }
    if engagement.expires_after_ms is not None:
        record["expires_at"] = format_timestamp(created_at_ms + engagement.expires_after_ms)
    return record


def build_delivery(
    engagement: Engagement, event: TriggerEvent, now_ms: int, variant: Variant | None = None
) -> dict[str, object]:
    """Return the delivery record ``event`` produces for ``engagement``, ready for orjson."""
    return delivery_record(
        engagement,
        engagement.variants.fallback if variant is None else variant,
        delivery_id=delivery_id(engagement.id, event.user_id, event.event_id),
        user_id=event.user_id,
        trigger_event_id=event.event_id,
        triggered_at=format_timestamp(event.timestamp_ms),
        created_at=format_timestamp(now_ms),
        created_at_ms=now_ms,
    )


def new_delivery_state(delivery: Mapping[str, object], created_at_ms: int) -> DeliveryState:
    """Return the state to store for a delivery record the shell is emitting."""
    fields: dict[str, str] = {}
    for key in ("delivery_id", "engagement_id", "variant", "user_id"):
        value = delivery.get(key)
        if not isinstance(value, str):
            raise InvalidRecord("invalid_field", f"delivery {key} must be a string")
        fields[key] = value
    version = delivery.get("engagement_version")
    if not is_integer(version):
        raise InvalidRecord("invalid_field", "delivery engagement_version must be an integer")
    test = delivery.get("test", False)
    if not isinstance(test, bool):
        raise InvalidRecord("invalid_field", "delivery test must be a boolean")
    return DeliveryState(
        delivery_id=fields["delivery_id"],
        engagement_id=fields["engagement_id"],
        engagement_version=version,
        variant=fields["variant"],
        user_id=fields["user_id"],
        created_at_ms=created_at_ms,
        test=test,
    )
