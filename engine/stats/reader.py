"""Read the engagement-stats topic and add up each engagement's partitions."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from engine.settings import Settings
from engine.stats.counts import summed
from engine.stream.topics import partitions_of


async def read_stats(settings: Settings) -> dict[str, dict[str, Any]]:
    """Return every engagement's figures, summed over the partitions that published them."""
    topic = settings.topic("engagement-stats")
    partitions = [TopicPartition(topic, p) for p in await partitions_of(settings, topic)]
    consumer = AIOKafkaConsumer(
        **settings.kafka_client_options(), group_id=None, isolation_level="read_committed"
    )
    await consumer.start()
    latest: dict[bytes, bytes | None] = {}
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        for tp, end in ends.items():
            while await consumer.position(tp) < end:
                batch = await consumer.getmany(tp, timeout_ms=1000)
                for record in batch.get(tp, []):
                    latest[record.key] = record.value  # compacted: the newest per key wins
    finally:
        await consumer.stop()
    parts: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for value in latest.values():
        if value is not None:
            part = orjson.loads(value)
            parts[part["engagement_id"]].append(part)
    return {
        engagement_id: summed(engagement_id, engagement_parts, settings.unseen_delivery_seconds)
        for engagement_id, engagement_parts in parts.items()
    }
