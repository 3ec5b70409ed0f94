"""The referee: reads the output topics as a consumer would, and counts every broken promise.

It reads with ``isolation.level=read_committed`` (what Declic tells its consumers to do)
and holds the engine to what the cluster acknowledged to the publisher and the app:
every figure it reports must be 0.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson

from engine.settings import Settings
from engine.stream.tail import read_to_end
from tests.chaos.load import Sent


async def _values(settings: Settings, topic: str) -> list[dict[str, Any]]:
    return [
        orjson.loads(record.value)
        for record in await read_to_end(settings, settings.topic(topic))
        if record.value is not None
    ]


async def referee(settings: Settings, sent: Sent, once_id: str, delayed_id: str) -> dict[str, int]:
    """Return the count of each kind of loss and duplication (all 0 when nothing broke)."""
    deliveries = await _values(settings, "deliveries")
    impressions = await _values(settings, "impressions")
    dead_letters = await _values(settings, "dead-letters")

    by_id = Counter(str(d["delivery_id"]) for d in deliveries)
    ids_by_user: dict[str, dict[str, set[str]]] = {once_id: {}, delayed_id: {}}
    for delivery in deliveries:
        users = ids_by_user.get(str(delivery["engagement_id"]))
        if users is not None:
            users.setdefault(str(delivery["user_id"]), set()).add(str(delivery["delivery_id"]))
    once, delayed = ids_by_user[once_id], ids_by_user[delayed_id]
    firsts = Counter(
        str(i["delivery_id"]) for i in impressions if i["first"] and i["kind"] == "impression"
    )
    letters = Counter(
        (str(d["source_topic"]), int(d["partition"]), int(d["offset"])) for d in dead_letters
    )
    return {
        "deliveries": len(deliveries),
        "lost_deliveries": len(sent.visitors - set(once)),
        "duplicated_deliveries": sum(n - 1 for n in by_id.values() if n > 1),
        "second_deliveries_to_a_user": sum(len(ids) - 1 for ids in once.values()),
        "unexpected_deliveries": len(set(once) - sent.visitors) + len(set(delayed) - sent.carts),
        "delayed_released_zero_times": len(sent.carts - set(delayed)),
        "delayed_released_twice": sum(len(ids) - 1 for ids in delayed.values()),
        "lost_first_impressions": len(sent.impressed - set(firsts)),
        "duplicated_first_impressions": sum(n - 1 for n in firsts.values() if n > 1),
        "lost_dead_letters": len(sent.garbage - set(letters)),
        "duplicated_dead_letters": sum(n - 1 for n in letters.values() if n > 1),
        "unexpected_dead_letters": len(set(letters) - sent.garbage),
    }
