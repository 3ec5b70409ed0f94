"""Publish NDJSON files to a topic, keyed as the wire contract requires."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer

from engine.errors import DeclicError
from engine.schemas import RecordValidator, SchemaViolation, validator
from engine.settings import Settings

SCHEMA_BY_TOPIC = {
    "sessions": "session-event",
    "custom-events": "custom-event",
    "interactions": "interaction",
    "profiles": "profile-update",
}
# What backend services publish; test-send requests come from `declic engagements test-send`.
PUBLISHABLE = tuple(SCHEMA_BY_TOPIC)


class PublishError(DeclicError):
    """Raise when a file cannot be published; nothing was sent."""


@dataclass(frozen=True, slots=True)
class Line:
    """One NDJSON line ready to send."""

    number: int
    key: bytes | None
    value: bytes


def read_ndjson(path: Path, topic: str, validate: bool = True) -> list[Line]:
    """Read and check every line; refuse the whole file on the first invalid one."""
    try:
        raw_lines = path.read_bytes().splitlines()
    except OSError as error:
        raise PublishError(f"cannot read {path}: {error.strerror}") from None
    schema = validator(SCHEMA_BY_TOPIC[topic]) if validate else None
    lines: list[Line] = []
    for number, raw in enumerate(raw_lines, start=1):
        if not raw.strip():
            continue
        lines.append(_parse_line(path, number, raw, schema))
    return lines


def _parse_line(path: Path, number: int, raw: bytes, schema: RecordValidator | None) -> Line:
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        if schema is not None:
            raise PublishError(f"{path}:{number}: invalid JSON: {error}") from None
        return Line(number, None, raw)
    if schema is not None:
        try:
            schema.check(document)
        except SchemaViolation as violation:
            raise PublishError(f"{path}:{number}: {violation}") from None
    user_id = document.get("user_id") if isinstance(document, dict) else None
    key = user_id.encode() if isinstance(user_id, str) else None
    return Line(number, key, raw)


async def publish_lines(settings: Settings, topic: str, lines: Iterable[Line]) -> int:
    """Send lines to a topic, keyed by user_id; return how many were acknowledged."""
    producer = AIOKafkaProducer(
        **settings.kafka_producer_options(), client_id=f"{settings.app_id}-publish", linger_ms=10
    )
    try:
        await producer.start()
        futures = [
            await producer.send(settings.topic(topic), line.value, key=line.key) for line in lines
        ]
        for future in futures:
            await future
        return len(futures)
    finally:
        await producer.stop()
