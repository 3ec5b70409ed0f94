"""Prometheus series and worker memory stay flat under a stream of distinct names and values.

100,000 custom events, each with a name no engagement uses and its own property and
attribute values (and a new attribute name), go through a PartitionProcessor on a real
PartitionStore, checkpointed and folded into EngineMetrics as the engine does. Between
10,000 and 100,000 events the registry gains no sample, and the memory held grows by no
more than a small constant.
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from aiokafka.structs import ConsumerRecord, TopicPartition

from engine.core.catalog import Catalog
from engine.core.engagements import compile_engagement
from engine.core.policy import MatchPolicy
from engine.metrics import EngineMetrics
from engine.settings import load_settings
from engine.state.store import PartitionStore
from engine.stream.processor import PartitionProcessor
from engine.stream.topics import TopicNames

NOW_MS = 1_795_442_400_000  # 2026-11-23T14:00:00Z
TOPICS = TopicNames.for_settings(load_settings())
TOPIC = next(name for name, kind in TOPICS.inputs.items() if kind.value == "custom-events")
USERS = 10
CHECKPOINT_EVENTS = 2_000
# What the memory held may grow by from 10,000 to 100,000 events (it grew by megabytes
# with any of the bounds taken out).
FLAT_BYTES = 256 * 1024


@pytest.fixture
def store(tmp_path: Path) -> Iterator[PartitionStore]:
    opened = PartitionStore(tmp_path / "partition-0")
    yield opened
    opened.close()


def _catalog() -> Catalog:
    documents = [
        {
            "id": "opened",
            "status": "active",
            "trigger": {
                "event": "custom",
                "name": "Open",
                "where": [{"property": "sku", "op": "ne", "value": "none"}],
            },
            "audience": {
                "filters": [
                    {"attribute": "tier", "op": "ne", "value": "banned"},
                    {"event": "Open", "op": "gte", "count": 1, "within_seconds": 3_600},
                ]
            },
            "reeligibility": {"after_seconds": 1},
            "ignore_frequency_caps": True,
            "conversion": {"event": "Buy", "window_seconds": 60},
            "elements": [{"element": "ok", "metric": "accepted"}],
            "message": {"title": "Hi"},
        }
    ]
    return Catalog.build(compile_engagement(document, 1) for document in documents)


def _record(index: int) -> ConsumerRecord:
    user = f"user-{index % USERS}"
    # One event in ten triggers the engagement, with values never seen before.
    name = "Open" if index % 10 == 0 else f"name-{index}"
    value = orjson.dumps(
        {
            "event_id": f"event-{index}",
            "user_id": user,
            "name": name,
            "timestamp": NOW_MS + index,
            "properties": {"sku": f"sku-{index}"},
            "attributes": {"tier": f"tier-{index}", f"attribute-{index}": index},
        }
    )
    return ConsumerRecord(
        TOPIC, 0, index, 0, 0, user.encode(), value, None, len(user), len(value), ()
    )


def _samples(metrics: EngineMetrics) -> int:
    return sum(len(family.samples) for family in metrics.registry.collect())


def _run(
    processor: PartitionProcessor,
    store: PartitionStore,
    metrics: EngineMetrics,
    records: list[ConsumerRecord],
) -> None:
    tp = TopicPartition(TOPIC, 0)
    for first in range(0, len(records), CHECKPOINT_EVENTS):
        batch = records[first : first + CHECKPOINT_EVENTS]
        processor.handle_batch(tp, batch, NOW_MS + batch[0].offset)
        _, outbox = processor.freeze_checkpoint()
        store.commit_frozen(None)
        outbox.tally.settle()
        metrics.record(outbox.tally)


def test_distinct_names_and_values_keep_series_and_memory_flat(store: PartitionStore) -> None:
    catalog = _catalog()
    processor = PartitionProcessor(0, store, TOPICS, lambda: catalog, MatchPolicy())
    metrics = EngineMetrics()
    records = [_record(index) for index in range(100_000)]  # built before tracing starts
    tracemalloc.start()
    try:
        _run(processor, store, metrics, records[:10_000])
        gc.collect()
        held_at_10k = tracemalloc.get_traced_memory()[0]
        samples_at_10k = _samples(metrics)
        _run(processor, store, metrics, records[10_000:])
        gc.collect()
        held_at_100k = tracemalloc.get_traced_memory()[0]
        samples_at_100k = _samples(metrics)
    finally:
        tracemalloc.stop()
    assert samples_at_100k == samples_at_10k
    events = {
        tuple(sample.labels.values()): sample.value
        for family in metrics.registry.collect()
        if family.name == "declic_trigger_events"
        for sample in family.samples
        if sample.name.endswith("_total")
    }
    assert events == {("custom-events", "Open"): 10_000, ("custom-events", "other"): 90_000}
    assert held_at_100k - held_at_10k < FLAT_BYTES, (held_at_10k, held_at_100k)
