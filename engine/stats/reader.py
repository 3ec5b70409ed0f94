"""Read the engagement-stats topic and add up each engagement's partitions."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import orjson

from engine.settings import Settings
from engine.stats.counts import summed
from engine.stream.tail import read_to_end


async def read_stats(settings: Settings) -> dict[str, dict[str, Any]]:
    """Return every engagement's figures, summed over the partitions that published them."""
    latest: dict[bytes, bytes | None] = {}
    for record in await read_to_end(settings, settings.topic("engagement-stats")):
        latest[record.key] = record.value  # compacted: the newest per key wins
    parts: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for value in latest.values():
        if value is not None:
            part = orjson.loads(value)
            parts[part["engagement_id"]].append(part)
    return {
        engagement_id: summed(engagement_id, engagement_parts, settings.unseen_delivery_seconds)
        for engagement_id, engagement_parts in parts.items()
    }
