"""Time the engine's per-record work without a broker: decode, match, stage, commit locally.

Run ``python -m engine.bench.hot_path --engagements 1000`` to see what one partition's
processor costs per event on the `declic bench` workload, with ``--profile`` for the
functions that cost it, and ``--hash-version 1`` for engagements that still sample with
hash version 1 (the default, 2, is what `declic engagements apply` gives new ones).
Kafka's share (fetching, producing, transactions) is left out: `declic bench` measures
the whole. ``cpu_us_per_event`` is the process's CPU time, steadier than the elapsed
``us_per_event`` when other processes share the cores.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from aiokafka.structs import ConsumerRecord, TopicPartition

from engine.bench.workload import EventSource, Message, engagements, profiles
from engine.core.bucketing import HASH_VERSIONS, NEW_HASH_VERSION
from engine.core.catalog import Catalog
from engine.core.engagements import compile_engagement
from engine.core.policy import MatchPolicy
from engine.schemas import apply_engagement_defaults
from engine.settings import load_settings
from engine.state.store import PartitionStore
from engine.stream.processor import PartitionProcessor
from engine.stream.topics import TopicNames

BATCH_RECORDS = 500
CHECKPOINT_RECORDS = 2_000


def consumer_records(messages: Iterable[Message], topics: TopicNames) -> list[ConsumerRecord]:
    """Return the messages as partition 0's records, as the engine's consumer hands them."""
    by_kind = {kind.value: name for name, kind in topics.inputs.items()}
    return [
        ConsumerRecord(
            by_kind[message.kind],
            0,
            offset,
            0,
            0,
            message.key,
            message.value,
            None,
            len(message.key),
            len(message.value),
            (),
        )
        for offset, message in enumerate(messages)
    ]


def run(
    users: int,
    engagement_count: int,
    events: int,
    seed: int,
    hash_version: int = NEW_HASH_VERSION,
) -> dict[str, float]:
    """Process the workload through one PartitionProcessor; return its per-event costs."""
    settings = load_settings()
    topics = TopicNames.for_settings(settings)
    now_ms = int(time.time() * 1000)
    documents = engagements(engagement_count, seed)
    for document in documents:
        document["audience"]["hash_version"] = hash_version
    catalog = Catalog.build(
        compile_engagement(apply_engagement_defaults(document), 1) for document in documents
    )
    profile_records = consumer_records(profiles(users, now_ms, seed), topics)
    event_records = consumer_records(EventSource(users, seed).batch(events, now_ms), topics)
    with tempfile.TemporaryDirectory(prefix="declic-hot-path-") as directory:
        store = PartitionStore(Path(directory))
        processor = PartitionProcessor(0, store, topics, lambda: catalog, MatchPolicy())
        _feed(processor, profile_records, now_ms)
        started, started_cpu = time.perf_counter(), time.process_time()
        outputs = _feed(processor, event_records, now_ms)
        seconds = time.perf_counter() - started
        # On a shared machine the process's CPU time varies less than the elapsed time.
        cpu_seconds = time.process_time() - started_cpu
        store.close()
    return {
        "events": events,
        "seconds": seconds,
        "events_per_second": events / seconds,
        "us_per_event": seconds / events * 1e6,
        "cpu_us_per_event": cpu_seconds / events * 1e6,
        "output_records": outputs,
    }


def _feed(processor: PartitionProcessor, records: list[ConsumerRecord], now_ms: int) -> int:
    outputs = 0
    since_checkpoint = 0
    for start in range(0, len(records), BATCH_RECORDS):
        batch = records[start : start + BATCH_RECORDS]
        by_topic: dict[TopicPartition, list[ConsumerRecord]] = {}
        for record in batch:
            by_topic.setdefault(TopicPartition(record.topic, 0), []).append(record)
        for tp, topic_records in by_topic.items():
            processor.handle_batch(tp, topic_records, now_ms)
        processor.release_due(now_ms)
        since_checkpoint += len(batch)
        if since_checkpoint >= CHECKPOINT_RECORDS:
            outputs += _checkpoint(processor, now_ms)
            since_checkpoint = 0
    return outputs + _checkpoint(processor, now_ms)


def _checkpoint(processor: PartitionProcessor, now_ms: int) -> int:
    """Do a checkpoint's local work; the records a broker would get are only counted."""
    staged, outbox = processor.freeze_checkpoint()
    count = len(outbox.records) + len(staged)
    processor.store.commit_frozen(None)
    processor.checkpoint_committed()  # as the worker does: the figures follow committed users
    outbox.tally.settle()
    processor.stats.fold(outbox.tally, now_ms)
    return count


def main() -> None:
    """Parse the options, run, print the figures (and the profile with --profile)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--engagements", type=int, default=1_000)
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--hash-version",
        type=int,
        choices=HASH_VERSIONS,
        default=NEW_HASH_VERSION,
        help="the bucketing formula of every engagement (default: %(default)s)",
    )
    parser.add_argument("--profile", action="store_true", help="print the top functions")
    options = parser.parse_args()
    profiler = cProfile.Profile() if options.profile else None
    if profiler is not None:
        profiler.enable()
    figures = run(
        options.users, options.engagements, options.events, options.seed, options.hash_version
    )
    if profiler is not None:
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    for name, value in figures.items():
        print(f"{name:20} {value:,.2f}")


if __name__ == "__main__":
    main()
