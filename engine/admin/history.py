"""Engagement changes: what changed between two versions, and the changelog topic's history."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from engine.settings import Settings
from engine.stream.topics import partitions_of

_MISSING = object()


def changed_fields(
    old: Mapping[str, Any] | None, new: Mapping[str, Any] | None
) -> list[dict[str, Any]]:
    """Return each changed field by dotted path with old and new values (lists compared whole)."""
    changes: list[dict[str, Any]] = []
    _compare("", old or {}, new or {}, changes)
    return changes


def _compare(prefix: str, old: Any, new: Any, changes: list[dict[str, Any]]) -> None:
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        for key in sorted({*old, *new}):
            _compare(f"{prefix}{key}.", old.get(key, _MISSING), new.get(key, _MISSING), changes)
        return
    if old == new:
        return
    changes.append(
        {
            "field": prefix.rstrip("."),
            "old": None if old is _MISSING else old,
            "new": None if new is _MISSING else new,
        }
    )


async def read_history(
    settings: Settings, engagement_id: str | None = None
) -> list[dict[str, Any]]:
    """Return the changelog records (of one engagement, or all), oldest first."""
    topic = settings.topic("engagement-changelog")
    partitions = await partitions_of(settings, topic)
    consumer = AIOKafkaConsumer(
        **settings.kafka_client_options(), group_id=None, isolation_level="read_committed"
    )
    await consumer.start()
    records: list[dict[str, Any]] = []
    try:
        assigned = [TopicPartition(topic, partition) for partition in partitions]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        ends = await consumer.end_offsets(assigned)
        for tp, end in ends.items():
            while await consumer.position(tp) < end:
                batch = await consumer.getmany(tp, timeout_ms=1000)
                for record in batch.get(tp, []):
                    change = orjson.loads(record.value)
                    if engagement_id is None or change["engagement_id"] == engagement_id:
                        records.append(change)
    finally:
        await consumer.stop()
    return records  # one partition: already in the order the changes were made
