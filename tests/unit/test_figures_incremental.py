"""Segment sizes kept as users change equal a full count of the committed users."""

from __future__ import annotations

import math
import tempfile
import zlib
from pathlib import Path
from typing import Any

import orjson
from aiokafka.structs import ConsumerRecord, TopicPartition
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.core.bucketing import user_hash
from engine.core.catalog import Catalog
from engine.core.engagements import compile_engagement, sample_position
from engine.core.policy import MatchPolicy
from engine.schemas import apply_engagement_defaults
from engine.settings import load_settings
from engine.state.keys import USER_PREFIX
from engine.state.store import PartitionStore
from engine.stats import segments as segments_module
from engine.stats.segments import Segment, SegmentCounts, stored_attributes
from engine.stream.processor import PartitionProcessor
from engine.stream.topics import TopicNames

NOW_MS = 1_795_442_400_000  # 2026-11-23T14:00:00Z
USERS = [f"user-{number}" for number in range(8)]
COUNTRIES = ["FR", "DE", "US"]

attributes = st.fixed_dictionaries(
    {},
    optional={
        "country": st.sampled_from([*COUNTRIES, None]),
        "age": st.integers(10, 60),
        "plan": st.sampled_from(["free", "pro"]),
    },
)
audience_filter = st.one_of(
    st.builds(
        lambda c: {"attribute": "country", "op": "eq", "value": c}, st.sampled_from(COUNTRIES)
    ),
    st.builds(lambda a: {"attribute": "age", "op": "gte", "value": a}, st.integers(10, 60)),
    st.just({"attribute": "plan", "op": "exists"}),
    st.just({"attribute": "country", "op": "not_exists"}),
)
engagement_spec = st.tuples(
    st.integers(0, 5),  # which engagement: specs with the same id are edits of one
    st.lists(audience_filter, max_size=2),
    st.sampled_from([100, 50, 5, 0]),
    st.sampled_from([1, 2]),
    st.booleans(),  # archived
)
operation = st.one_of(
    st.tuples(st.just("write"), st.sampled_from(USERS), attributes),
    st.tuples(st.just("delete"), st.sampled_from(USERS)),
    st.tuples(st.just("engagement"), engagement_spec),
    st.tuples(st.just("checkpoint"), st.booleans()),  # committed or aborted
    st.tuples(st.just("slice"), st.none()),
)


def _document(spec: tuple[int, list[dict[str, Any]], int, int, bool]) -> dict[str, Any]:
    number, filters, percent, hash_version, archived = spec
    return {
        "id": f"e{number}",
        "name": f"Engagement {number}",
        "status": "archived" if archived else "active",
        "trigger": {"event": "session_start"},
        "audience": {"filters": filters, "percent": percent, "hash_version": hash_version},
        "message": {"title": "Hi", "body": "Hello"},
    }


def _with(catalog: Catalog, spec: tuple[int, list[dict[str, Any]], int, int, bool]) -> Catalog:
    return catalog.with_engagement(
        compile_engagement(apply_engagement_defaults(_document(spec)), 1)
    )


def _full_count(store: PartitionStore, catalog: Catalog) -> dict[str, Segment]:
    """Count every committed user as the matcher decides, one user and engagement at a time."""
    users = [
        (key[len(USER_PREFIX) :], orjson.loads(value)["a"] if value != b"{}" else {})
        for key, value in store.items(USER_PREFIX)
    ]
    segments = {}
    for engagement in catalog:
        if engagement.status == "archived":
            continue
        audience = [key for key, values in users if engagement.audience(values)]
        kept = [
            key
            for key in audience
            if engagement.percent >= 100
            or sample_position(engagement, key, user_hash(key)) < engagement.sample_threshold
        ]
        segments[engagement.id] = Segment(len(users), len(audience), len(kept), len(users))
    return segments


def _settled(counts: SegmentCounts) -> dict[str, Segment]:
    while not counts.advance(math.inf):
        pass
    return counts.segments()


class _Partition:
    """What the processor and the partition do with a store and its segment counts."""

    def __init__(self, store: PartitionStore) -> None:
        self.store = store
        self.counts = SegmentCounts(store)
        self.catalog = Catalog.build([])

    def write(self, user_id: str, values: dict[str, object]) -> None:
        key = USER_PREFIX + user_id.encode()
        before = stored_attributes(self.store.get(key))
        self.counts.user_written(user_id.encode(), before, dict(values))
        state = {"a": values, "t": dict.fromkeys(values, 1)} if values else {}
        self.store.put(key, orjson.dumps(state))

    def delete(self, user_id: str) -> None:
        key = USER_PREFIX + user_id.encode()
        before = stored_attributes(self.store.get(key))
        if before is not None:
            self.counts.user_written(user_id.encode(), before, None)
        self.store.delete(key)

    def checkpoint(self, commits: bool) -> None:
        self.counts.freeze()
        self.store.freeze_staged()
        if commits:
            self.store.commit_frozen(None)
            self.counts.committed(self.catalog)
        else:
            self.store.discard_staged()
            self.counts.discard()


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(operation, max_size=40))
def test_segments_kept_as_users_change_equal_a_full_count(operations: list[Any]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        store = PartitionStore(Path(directory))
        partition = _Partition(store)
        for kind, *arguments in operations:
            if kind == "write":
                partition.write(*arguments)
            elif kind == "delete":
                partition.delete(*arguments)
            elif kind == "engagement":
                partition.catalog = _with(partition.catalog, arguments[0])
                partition.counts.follow(partition.catalog)  # as a publication does
            elif kind == "checkpoint":
                partition.checkpoint(arguments[0])
            else:
                partition.counts.advance(0.0)  # one slice of a recount under way, if any
        partition.checkpoint(True)
        expected = _full_count(store, partition.catalog)
        assert _settled(partition.counts) == expected
        # A partition started on this store (recovered from its changelog) counts the same.
        assert _settled(_started(store, partition.catalog)) == expected
        store.close()


def _started(store: PartitionStore, catalog: Catalog) -> SegmentCounts:
    counts = SegmentCounts(store)
    counts.follow(catalog)
    return counts


def _record(topic: str, user_id: str, value: dict[str, Any], offset: int) -> ConsumerRecord:
    raw = orjson.dumps(value)
    return ConsumerRecord(
        topic, 0, offset, NOW_MS, 0, user_id.encode(), raw, None, len(user_id), len(raw), []
    )


def test_the_processor_counts_profile_changes_once_committed_and_never_when_aborted(
    tmp_path: Path,
) -> None:
    store = PartitionStore(tmp_path / "p0")
    topics = TopicNames.for_settings(load_settings())
    catalog = _with(
        Catalog.build([]), (0, [{"attribute": "country", "op": "eq", "value": "FR"}], 100, 2, False)
    )
    processor = PartitionProcessor(0, store, topics, lambda: catalog, MatchPolicy())
    counts = processor.stats.segments
    counts.follow(catalog)
    profiles_topic = load_settings().topic("profiles")
    profiles = TopicPartition(profiles_topic, 0)

    def update(user_id: str, country: str, offset: int) -> None:
        value = {
            "user_id": user_id,
            "timestamp": "2026-11-23T13:59:00Z",
            "attributes": {"country": country},
        }
        processor.handle_batch(
            profiles, [_record(profiles_topic, user_id, value, offset)], NOW_MS + offset
        )

    def commit() -> None:
        processor.freeze_checkpoint()
        store.commit_frozen(None)
        processor.checkpoint_committed()

    update("ann", "FR", 1)
    update("bob", "DE", 2)
    commit()
    assert _settled(counts)["e0"] == Segment(2, 1, 1, 2)

    update("bob", "FR", 3)
    processor.freeze_checkpoint()
    processor.rollback()  # the checkpoint was aborted: bob is DE again
    store.discard_staged()
    assert _settled(counts)["e0"] == Segment(2, 1, 1, 2)

    update("ann", "DE", 4)
    update("cid", "FR", 5)
    commit()
    assert _settled(counts) == _full_count(store, catalog) == {"e0": Segment(3, 1, 1, 3)}
    store.close()


def test_past_the_draw_budget_kept_users_are_scaled_from_a_fixed_sample_of_users(
    tmp_path: Path,
) -> None:
    store = PartitionStore(tmp_path / "p0")
    partition = _Partition(store)
    partition.counts = SegmentCounts(store, draws_per_user=1)  # 4 percentages: 1 user in 4
    for number in range(4):
        partition.catalog = _with(partition.catalog, (number, [], 50, 1 + number % 2, False))
    partition.counts.follow(partition.catalog)
    users = [f"user-{number}" for number in range(400)]
    for user_id in users[:300]:
        partition.write(user_id, {"plan": "pro"})
    partition.checkpoint(True)
    _settled(partition.counts)  # 300 users counted by the recount; the rest as they change
    for user_id in users[300:]:
        partition.write(user_id, {"plan": "free"})
    partition.delete(users[0])
    partition.checkpoint(True)
    segments = _settled(partition.counts)

    kept_users = [user_id.encode() for user_id in users[1:]]
    checked = [key for key in kept_users if zlib.crc32(key) % 4 == 0]
    for engagement in partition.catalog:
        drawn = [
            key
            for key in checked
            if sample_position(engagement, key, user_hash(key)) < engagement.sample_threshold
        ]
        exact = _full_count(store, partition.catalog)[engagement.id]
        assert segments[engagement.id] == Segment(
            known_users=399,
            audience_users=399,
            kept_users=round(len(drawn) * 399 / len(checked)),
            sampled_users=len(checked),
        )
        assert abs(segments[engagement.id].kept_users - exact.kept_users) < 60  # about half
    store.close()


def test_a_burst_of_new_users_queues_no_more_than_the_limit_and_counts_them_all(
    monkeypatch: Any,
) -> None:
    """Millions of profiles consumed faster than the slices apply them must not pile up in
    memory: past the limit, the changes are applied as their checkpoint commits."""
    monkeypatch.setattr(segments_module, "QUEUED_CHANGES_LIMIT", 50)
    with tempfile.TemporaryDirectory() as directory:
        store = PartitionStore(Path(directory))
        partition = _Partition(store)
        partition.catalog = _with(
            partition.catalog,
            (1, [{"attribute": "plan", "op": "eq", "value": "plus"}], 100, 2, False),
        )
        partition.counts.follow(partition.catalog)
        _settled(partition.counts)
        most = 0
        for checkpoint in range(10):  # no slice runs between these checkpoints
            for number in range(40):
                plan = "plus" if number % 3 == 0 else "free"
                partition.write(f"u{checkpoint}-{number}", {"plan": plan})
            partition.checkpoint(True)
            most = max(most, partition.counts.queued)
        assert most == 50
        assert _settled(partition.counts) == _full_count(store, partition.catalog)
        store.close()
