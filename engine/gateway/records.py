"""Turn the records of `deliveries` and `impressions` into what the gateway holds.

A record that does not decode, or a delivery that does not match its schema, is skipped
(and counted by the caller): one bad record never stops the gateway. The caller also skips
a record whose decoding raises anyway (``kafka_io.ingest``).
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from engine.core.timestamps import parse_timestamp
from engine.errors import InvalidRecord
from engine.gateway.rules import EventId, Held
from engine.schemas import validator


@dataclass(frozen=True, slots=True)
class Delivery:
    """A delivery record read from the topic, for its user."""

    user_id: str
    held: Held


@dataclass(frozen=True, slots=True)
class Shown:
    """An interaction seen on `impressions`: its delivery is shown."""

    user_id: str
    delivery_id: str


def decode_delivery(
    value: bytes | None, partition: int, offset: int, record_ms: int
) -> Delivery | None:
    """Return the delivery of a `deliveries` record, None if it is no valid delivery."""
    if not value:
        return None
    try:
        document = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(document, dict) or not validator("delivery").is_valid(document):
        return None
    try:
        created_ms = parse_timestamp(document["created_at"])
        expires = document.get("expires_at")
        expires_ms = parse_timestamp(expires) if expires is not None else None
    except InvalidRecord:
        return None
    event_id = EventId(partition, offset)
    # Written again, not spliced into the record's bytes: the body served is exactly what
    # was validated (one value per key, on one line). orjson reads 1024 levels of nesting
    # but writes 254: a record nested deeper is no delivery the worker could have written.
    try:
        written = orjson.dumps({**document, "event_id": str(event_id)})
    except orjson.JSONEncodeError:
        return None
    # orjson's output keeps the spare room of its growing buffer (about 4 KiB for a record
    # of 500 bytes): held for hours, a copy of the exact size is a tenth of the memory.
    body = memoryview(written).tobytes()
    held = Held(
        event_id=event_id,
        delivery_id=document["delivery_id"],
        created_ms=created_ms,
        expires_ms=expires_ms,
        record_ms=record_ms,
        body=body,
    )
    return Delivery(document["user_id"], held)


def decode_shown(value: bytes | None) -> Shown | None:
    """Return the delivery an `impressions` record marks shown, None if it names none.

    Every kind counts (impression, click, dismiss): a message clicked or dismissed was
    shown, and is not offered again.
    """
    if not value:
        return None
    try:
        document = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(document, dict):
        return None
    user_id, delivery_id = document.get("user_id"), document.get("delivery_id")
    if not isinstance(user_id, str) or not isinstance(delivery_id, str):
        return None
    if not user_id or not delivery_id:
        return None
    return Shown(user_id, delivery_id)
