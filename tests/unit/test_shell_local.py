"""The shell's broker-free parts: staged state, sliced figure scans, tallies, plot points."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.structs import TopicPartition
from prometheus_client import generate_latest

from engine.bench.hot_path import consumer_records
from engine.bench.plot import latency_points, throughput_points
from engine.bench.workload import EventSource, engagements, profiles
from engine.core.catalog import Catalog
from engine.core.engagements import compile_engagement
from engine.core.outcomes import Evaluation, Outcome
from engine.core.policy import MatchPolicy
from engine.metrics import BatchTally, EngineMetrics
from engine.schemas import apply_engagement_defaults
from engine.settings import load_settings
from engine.state.store import PartitionStore
from engine.stats.partition_stats import PartitionStats
from engine.stream.processor import PartitionProcessor
from engine.stream.topics import TopicNames

NOW_MS = 1_795_442_400_000  # 2026-11-23T14:00:00Z


@pytest.fixture
def store(tmp_path: Path) -> Iterator[PartitionStore]:
    opened = PartitionStore(tmp_path / "partition-0")
    yield opened
    opened.close()


def test_writes_staged_during_a_checkpoint_stay_out_of_it(store: PartitionStore) -> None:
    store.put(b"u:ann", b"1")
    frozen = store.freeze_staged()
    assert frozen == {b"u:ann": b"\xdc\x011"}  # the changelog record: format header, value
    store.put(b"u:bob", b"2")  # processing goes on while the checkpoint commits
    store.put(b"u:ann", b"3")
    assert store.get(b"u:ann") == b"3" and store.get(b"u:bob") == b"2"
    with pytest.raises(RuntimeError):
        store.freeze_staged()

    store.commit_frozen(changelog_offset=7)
    assert store.changelog_offset == 7
    assert dict(store.items(b"u:")) == {b"u:ann": b"1"}  # only what the checkpoint carried
    assert store.get(b"u:ann") == b"3"  # the newer staged value still wins

    store.discard_staged()
    assert store.get(b"u:ann") == b"1" and store.get(b"u:bob") is None


def test_an_aborted_checkpoint_discards_frozen_and_staged_writes(store: PartitionStore) -> None:
    store.put(b"u:ann", b"1")
    store.freeze_staged()
    store.put(b"u:bob", b"2")
    store.discard_staged()
    assert store.get(b"u:ann") is None and store.get(b"u:bob") is None
    assert store.freeze_staged() == {}  # a new checkpoint may start


def _processed_partition(store: PartitionStore) -> tuple[PartitionProcessor, Catalog]:
    """Run the bench workload through a processor and commit its state locally."""
    topics = TopicNames.for_settings(load_settings())
    catalog = Catalog.build(
        compile_engagement(apply_engagement_defaults(document), 1)
        for document in engagements(30, seed=3)
    )
    processor = PartitionProcessor(0, store, topics, lambda: catalog, MatchPolicy())
    messages = [*profiles(300, NOW_MS, seed=3), *EventSource(300, seed=3).batch(900, NOW_MS)]
    for record in consumer_records(messages, topics):
        processor.handle_batch(TopicPartition(record.topic, 0), [record], NOW_MS)
    staged, outbox = processor.freeze_checkpoint()
    assert staged and any(record.topic == topics.deliveries for record in outbox.records)
    store.commit_frozen(None)
    return processor, catalog


def test_figures_measured_in_slices_equal_figures_measured_at_once(
    store: PartitionStore,
) -> None:
    _, catalog = _processed_partition(store)
    unseen_after_ms = 1

    at_once = PartitionStats(store, 0).publish(catalog, NOW_MS + 60_000, unseen_after_ms)
    store.discard_staged()

    sliced = PartitionStats(store, 0)
    sliced.begin_publication(catalog, NOW_MS + 60_000, unseen_after_ms)
    slices = 0
    while (publication := sliced.advance(0.0)) is None:
        slices += 1
        assert sliced.publishing
    assert not sliced.publishing
    assert slices > 1  # it did yield between slices
    assert publication.records == at_once.records
    assert len(at_once.records) == len(catalog)


def test_counts_folded_during_a_publication_are_published_and_not_lost(
    store: PartitionStore,
) -> None:
    _, catalog = _processed_partition(store)
    stats = PartitionStats(store, 0)
    stats.begin_publication(catalog, NOW_MS + 60_000, 1)
    late: list[str] = []
    while (publication := stats.advance(0.0)) is None:
        # Checkpoints commit between slices: fold one engagement the catalog never had.
        late.append(f"late-{len(late)}")
        tally = BatchTally()
        tally.count_evaluations([Evaluation(late[-1], 1, Outcome.DELIVERED)], NOW_MS // 3_600_000)
        tally.settle()
        stats.fold(tally, NOW_MS + 60_000)
    following = stats.publish(catalog, NOW_MS + 120_000, 1)
    published = {
        key.decode().rsplit(":", 1)[0] for key, _ in (*publication.records, *following.records)
    }
    assert len(late) > 2
    assert set(late) <= published


def test_a_tally_settles_evaluations_and_trigger_hours() -> None:
    tally = BatchTally()
    delivered = Evaluation("welcome", 1, Outcome.DELIVERED)
    missed = Evaluation("welcome", 1, Outcome.FILTER_MISS)
    capped = Evaluation("nudge", 2, Outcome.FREQUENCY_CAPPED)
    tally.count_evaluations([delivered, capped], trigger_hour=10)
    tally.count_evaluations([missed, capped], trigger_hour=11)
    tally.count_evaluations([Evaluation("welcome", 1, Outcome.DELIVERED)], trigger_hour=None)
    tally.settle()
    assert tally.evaluations == {
        ("welcome", "delivered"): 2,
        ("welcome", "filter_miss"): 1,
        ("nudge", "frequency_capped"): 2,
    }
    # A filter miss is no trigger; a release (no hour) is counted when its event was.
    assert tally.trigger_hours == {("welcome", 10): 1, ("nudge", 10): 1, ("nudge", 11): 1}
    assert tally.raw_evaluations == {}


def test_merged_tallies_settle_to_the_sum_of_their_counts() -> None:
    delivered = Evaluation("welcome", 1, Outcome.DELIVERED)
    capped = Evaluation("nudge", 2, Outcome.FREQUENCY_CAPPED)
    first, second = BatchTally(), BatchTally()
    first.count_evaluations([delivered, capped], trigger_hour=10)
    first.events_read["sessions"] += 2
    first.delivery_latencies.append(0.05)
    second.count_evaluations([delivered], trigger_hour=10)
    second.count_evaluations([capped], trigger_hour=11)
    second.events_read["sessions"] += 1
    second.events_read["custom-events"] += 1
    second.profile_updates = 3
    second.delivery_latencies.append(0.07)
    first.merge(second)
    first.settle()
    assert first.evaluations == {("welcome", "delivered"): 2, ("nudge", "frequency_capped"): 2}
    assert first.trigger_hours == {("welcome", 10): 2, ("nudge", 10): 1, ("nudge", 11): 1}
    assert first.events_read == {"sessions": 3, "custom-events": 1}
    assert first.profile_updates == 3
    assert first.delivery_latencies == [0.05, 0.07]


def test_evaluation_counts_are_exported_as_one_counter_family() -> None:
    metrics = EngineMetrics()
    tally = BatchTally()
    tally.count_evaluations([Evaluation("welcome", 1, Outcome.DELIVERED)] * 2, trigger_hour=10)
    tally.settle()
    metrics.record(tally)
    metrics.record(tally)
    text = generate_latest(metrics.registry).decode()
    assert "# TYPE declic_evaluations_total counter" in text
    assert 'declic_evaluations_total{engagement="welcome",outcome="delivered"} 4.0' in text


def test_plot_points_are_rates_and_per_second_percentiles() -> None:
    series = [
        {"t": 0.0, "sessions": 0.0, "custom-events": 0.0},
        {"t": 0.5, "sessions": 100.0, "custom-events": 400.0},
        {"t": 1.0, "sessions": 100.0, "custom-events": 400.0},
    ]
    assert throughput_points(series) == [(0.5, 1000.0), (1.0, 0.0)]
    latencies = [(0.1, 10.0), (0.2, 30.0), (0.9, 20.0), (1.5, 50.0)]
    assert latency_points(latencies) == [(0.0, 20.0, 30.0), (1.0, 50.0, 50.0)]


def test_the_hot_path_harness_reports_per_event_costs() -> None:
    from engine.bench.hot_path import run

    started = time.perf_counter()
    figures = run(users=200, engagement_count=20, events=500, seed=1)
    assert figures["events"] == 500
    assert 0 < figures["seconds"] < time.perf_counter() - started
    assert figures["output_records"] > 0


def test_sustained_rate_counts_from_the_last_sample_before_any_commit() -> None:
    from engine.bench.measure import sustained_rate

    series = [
        (10.0, {"sessions": 0.0}),
        (10.2, {"sessions": 0.0}),
        (10.4, {"sessions": 300.0}),
        (11.2, {"sessions": 1000.0}),
        (11.4, {"sessions": 1000.0}),
    ]
    # From 10.2 (nothing committed yet) to 11.2 (the last count reached): 1000 in 1 s.
    assert sustained_rate(series, ["sessions"])["records_per_second"] == pytest.approx(1000.0)
    # Without an idle sample, from the first one: 700 more in 0.8 s.
    assert sustained_rate(series[2:], ["sessions"])["records_per_second"] == pytest.approx(875.0)


def test_several_runs_report_the_median_of_each_headline_figure() -> None:
    from engine.bench.report import combine_runs

    def run(engine_rate: float, p99: float) -> dict[str, object]:
        return {
            "engine": {
                "events_per_second": engine_rate,
                "peak_rss_bytes": 100,
                "state_bytes": 10,
                "fixed_rate": {"latency_ms_p50": 5.0, "latency_ms_p99": p99},
            },
            "ceiling": {"events_per_second": 50_000.0},
            "floor": {"events_per_second": 2_000.0},
            "engine_over_floor": engine_rate / 2_000.0,
            "engine_over_ceiling": engine_rate / 50_000.0,
        }

    combined = combine_runs([run(9_000.0, 300.0), run(11_000.0, 900.0), run(10_000.0, 100.0)])
    assert combined["engine"]["events_per_second"] == 10_000.0
    assert combined["engine"]["fixed_rate"]["latency_ms_p99"] == 300.0
    assert combined["engine_over_floor"] == 5.0
    assert [figures["engine_events_per_second"] for figures in combined["runs"]] == [
        9_000.0,
        11_000.0,
        10_000.0,
    ]
