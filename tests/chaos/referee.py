"""The referee: reads the output topics as a consumer would, and counts every broken promise.

It reads with ``isolation.level=read_committed`` (what Declic tells its consumers to do),
with Kafka's own Java console consumer: a client Declic does not use, so a fault of
the client library cannot hide (or fake) one of the engine's. It holds the engine to
what the cluster acknowledged to the publisher and the app: every count it reports
must be 0. The same topics read with aiokafka (Declic's client) must give the same
records; ``aiokafka_disagreements`` says how many differ.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson

from engine.settings import Settings
from engine.stream.tail import read_to_end
from tests.chaos.load import Sent

OUTPUTS = ("deliveries", "impressions", "dead-letters")

# Reads a topic's committed values with the Java consumer (see conftest.Cluster.consume).
JavaReader = Callable[[str], list[bytes]]


async def _aiokafka_values(settings: Settings, topic: str) -> list[bytes]:
    records = await read_to_end(settings, settings.topic(topic))
    return [record.value for record in records if record.value is not None]


async def referee(
    settings: Settings, sent: Sent, once_id: str, delayed_id: str, java: JavaReader
) -> dict[str, object]:
    """Return the count of each kind of loss and duplication (all 0 when nothing broke)."""
    read = await asyncio.gather(
        *(asyncio.to_thread(java, settings.topic(topic)) for topic in OUTPUTS)
    )
    raw = dict(zip(OUTPUTS, read, strict=True))
    disagreements = 0
    for topic in OUTPUTS:
        mine = Counter(await _aiokafka_values(settings, topic))
        disagreements += sum(((mine - Counter(raw[topic])) + (Counter(raw[topic]) - mine)).values())
    values: dict[str, list[dict[str, Any]]] = {
        topic: [orjson.loads(value) for value in raw[topic]] for topic in OUTPUTS
    }
    deliveries, impressions = values["deliveries"], values["impressions"]
    dead_letters = values["dead-letters"]

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
        "aiokafka_disagreements": disagreements,
        # Which ones, to look them up in the workers' logs (not a count: never a failure).
        "examples_of_duplicated_dead_letters": sorted(k for k, n in letters.items() if n > 1)[:10],
        "examples_of_duplicated_delivery_ids": sorted(k for k, n in by_id.items() if n > 1)[:10],
    }
