"""`declic bench --live-engagements`: a larger catalog adds candidates, not deliveries."""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from engine.bench.hot_path import consumer_records
from engine.bench.workload import EventSource, engagements, profiles
from engine.core.catalog import Catalog
from engine.core.engagements import compile_engagement
from engine.core.policy import MatchPolicy
from engine.schemas import apply_engagement_defaults, validator
from engine.settings import load_settings
from engine.state.store import PartitionStore
from engine.stream.processor import PartitionProcessor
from engine.stream.topics import TopicNames

NOW_MS = 1_800_000_000_000
USERS = 300
EVENTS = 3_000
LIVE = 10


def _run(documents: list[dict[str, Any]]) -> tuple[list[tuple[str, str]], Counter[str]]:
    """Feed the workload's profiles and events to one partition; return its deliveries as
    (user, engagement) and the outcome of every candidate, counted by outcome."""
    topics = TopicNames.for_settings(load_settings())
    catalog = Catalog.build(
        compile_engagement(apply_engagement_defaults(document), 1) for document in documents
    )
    records = consumer_records(
        [*profiles(USERS, NOW_MS, seed=3), *EventSource(USERS, seed=3).stream(EVENTS, NOW_MS)],
        topics,
    )
    deliveries: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as directory:
        store = PartitionStore(Path(directory))
        processor = PartitionProcessor(0, store, topics, lambda: catalog, MatchPolicy())
        for record in records:
            processor.handle_batch(_partition(record), [record], NOW_MS)
        _, outbox = processor.freeze_checkpoint()
        outbox.tally.settle()
        outcomes: Counter[str] = Counter()
        for (_, outcome), count in outbox.tally.evaluations.items():
            outcomes[outcome] += count
        store.close()
    for output in outbox.records:
        if output.topic == topics.deliveries:
            delivery = orjson.loads(output.value)
            deliveries.append((delivery["user_id"], delivery["engagement_id"]))
    return deliveries, outcomes


def _partition(record: Any) -> Any:
    from aiokafka.structs import TopicPartition

    return TopicPartition(record.topic, record.partition)


def test_the_live_engagements_are_the_same_documents_at_every_size() -> None:
    small = engagements(LIVE, seed=3)
    assert engagements(2_000, seed=3, live=LIVE)[:LIVE] == small
    assert engagements(LIVE, seed=3, live=LIVE) == small
    assert engagements(50, seed=3) == engagements(50, seed=3, live=None)


def test_every_engagement_of_a_large_catalog_is_valid_and_active() -> None:
    documents = engagements(400, seed=3, live=LIVE)
    assert len({document["id"] for document in documents}) == 400
    for document in documents:
        assert validator("engagement").problems(document) == []
        assert document["status"] == "active"


def test_a_larger_catalog_matches_more_candidates_and_delivers_the_same() -> None:
    small_deliveries, small_outcomes = _run(engagements(LIVE, seed=3))
    large_deliveries, large_outcomes = _run(engagements(1_000, seed=3, live=LIVE))
    assert small_deliveries, "the live engagements deliver"
    assert large_deliveries == small_deliveries
    # The others were candidates of these events, each failing its own check.
    assert sum(large_outcomes.values()) > 10 * sum(small_outcomes.values())
    for outcome in ("outside_schedule", "audience_miss", "sampled_out"):
        assert large_outcomes[outcome] > small_outcomes[outcome]
