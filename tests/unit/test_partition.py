"""A partition's life, state by state, with fake Kafka clients: commit, abort, rewind, reopen."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka.structs import TopicPartition

from engine.core.catalog import Catalog
from engine.core.engagements import compile_engagement
from engine.core.policy import MatchPolicy
from engine.metrics import EngineMetrics
from engine.schemas import apply_engagement_defaults
from engine.settings import load_settings
from engine.state.keys import USER_PREFIX
from engine.state.recovery import ChangelogRecovery
from engine.state.store import PartitionStore
from engine.stream.partition import (
    IllegalTransition,
    Partition,
    PartitionContext,
    PartitionState,
)
from engine.stream.processor import PartitionProcessor
from engine.stream.topics import TopicNames
from tests.unit.stream_fakes import FakeBroker, FakeConsumer, FakeLogReader, record

SETTINGS = load_settings({"partitions": 2})
TOPICS = TopicNames.for_settings(SETTINGS)
PROFILES = SETTINGS.topic("profiles")
P0 = TopicPartition(PROFILES, 0)


def _profile(user: str, n: int) -> dict[str, Any]:
    return {"user_id": user, "timestamp": int(time.time() * 1000), "attributes": {"n": n}}


class Setup:
    def __init__(self, tmp_path: Path, catalog: Catalog | None = None) -> None:
        self.consumer = FakeConsumer(
            {P0: [record(PROFILES, 0, n, _profile("ann", n)) for n in range(6)]}
        )
        self.consumer.topics = list(TOPICS.inputs)
        self.broker = FakeBroker(self.consumer, 2)
        self.metrics = EngineMetrics()
        context = PartitionContext(
            topics=TOPICS,
            group_id="declic",
            metrics=self.metrics,
            new_processor=lambda number, store: PartitionProcessor(
                number, store, TOPICS, lambda: catalog or Catalog.build(()), MatchPolicy()
            ),
            new_producer=self.broker.producer_for,
        )
        self.store = PartitionStore(tmp_path / "p0")
        for tp in (TopicPartition(topic, 0) for topic in TOPICS.inputs):
            self.consumer.positions[tp] = 0
        self.partition = Partition(0, self.store, context, self.consumer)

    async def running(self) -> Partition:
        await self.partition.start_producer()
        await self.partition.start_running()
        return self.partition

    async def handle(self, start: int, end: int) -> None:
        records = self.consumer.logs[P0][start:end]
        self.partition.handle(P0, records, int(time.time() * 1000))
        self.consumer.positions[P0] = end

    def aborted(self) -> float:
        return self.metrics.checkpoints.labels("aborted")._value.get()  # type: ignore[no-any-return]


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    made = Setup(tmp_path)
    yield made
    await made.partition.close()


async def test_a_new_partition_is_paused_until_recovered_then_resumes_at_its_commit(
    setup: Setup,
) -> None:
    partition = setup.partition
    assert partition.state is PartitionState.ASSIGNING
    assert set(partition.inputs) <= setup.consumer.paused()
    setup.consumer.committed_offsets[P0] = 4
    setup.consumer.positions[P0] = 6  # fetched past the commit meanwhile
    await partition.start_producer()
    assert partition.state is PartitionState.RECOVERING
    await partition.start_running()
    assert partition.state is PartitionState.RUNNING
    assert not set(partition.inputs) & setup.consumer.paused()
    assert setup.consumer.positions[P0] == 4


async def test_operations_out_of_their_state_are_refused(setup: Setup) -> None:
    with pytest.raises(IllegalTransition):
        await setup.partition.commit()
    with pytest.raises(IllegalTransition):
        setup.partition.handle(P0, [], 0)
    await setup.partition.start_producer()
    with pytest.raises(IllegalTransition):
        await setup.partition.start_producer()


async def test_a_committed_checkpoint_writes_the_store_and_the_offsets(setup: Setup) -> None:
    partition = await setup.running()
    assert await partition.commit() is None  # nothing processed: nothing to commit
    await setup.handle(0, 3)
    outbox = await partition.commit()
    assert outbox is not None and outbox.next_offsets == {P0: 3}
    assert partition.state is PartitionState.RUNNING
    assert setup.consumer.committed_offsets[P0] == 3
    assert setup.store.get(USER_PREFIX + b"ann") is not None  # on disk, after the commit
    changelog = setup.broker.topic(TOPICS.state_changelog, 0)
    assert [key for key, _ in changelog] == [USER_PREFIX + b"ann"]


async def test_an_aborted_checkpoint_rewinds_this_partition_to_its_last_commit(
    setup: Setup,
) -> None:
    partition = await setup.running()
    await setup.handle(0, 2)
    await partition.commit()
    generation = partition.generation
    await setup.handle(2, 4)
    setup.broker.commit_failures[0] = 1
    assert await partition.commit() is None
    assert partition.state is PartitionState.RUNNING
    assert partition.generation != generation  # records fetched before are stale
    assert setup.consumer.positions[P0] == 2  # read again from the last commit
    assert setup.consumer.committed_offsets[P0] == 2
    assert setup.aborted() == 1
    assert partition.processor.outbox.is_empty()
    await setup.handle(2, 6)
    assert (await partition.commit()) is not None
    assert setup.consumer.committed_offsets[P0] == 6


async def test_an_abort_rewinds_every_input_of_the_partition_not_only_those_processed(
    setup: Setup,
) -> None:
    """Records of another input were fetched, then dropped while the checkpoint failed."""
    partition = await setup.running()
    custom = TopicPartition(SETTINGS.topic("custom-events"), 0)
    await setup.handle(0, 2)
    await partition.commit()
    await setup.handle(2, 4)
    setup.consumer.positions[custom] = 4  # fetched, not processed: dropped by the abort
    setup.broker.commit_failures[0] = 1
    assert await partition.commit() is None
    assert setup.consumer.positions[P0] == 2
    assert setup.consumer.positions[custom] == 0  # read again, from its last commit


async def test_records_fetched_while_a_checkpoint_aborts_are_dropped_after_it(
    setup: Setup,
) -> None:
    """They come from before the rewind: processed too, they would be processed twice."""
    partition = await setup.running()
    await setup.handle(0, 2)
    await partition.commit()
    await setup.handle(2, 4)
    setup.broker.commit_failures[0] = 1
    setup.broker.abort_gate = asyncio.Event()
    committing = asyncio.create_task(partition.commit())
    await setup.broker.aborting.wait()  # the commit failed; its abort is a round trip away
    assert partition.state is PartitionState.ABORTING
    fetched_at = partition.generation  # a fetch returning now, records 4..6
    setup.broker.abort_gate.set()
    assert await committing is None
    assert partition.state is PartitionState.RUNNING
    assert not partition.accepts(fetched_at)


async def test_a_producer_that_cannot_abort_is_replaced_and_state_read_again(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    partition = await setup.running()
    await setup.handle(0, 2)
    await partition.commit()
    await setup.handle(2, 4)
    first = setup.broker.producers[-1]
    setup.broker.fence(0)  # a transaction timeout during an outage, or a newer owner
    with caplog.at_level(logging.WARNING):
        assert await partition.commit() is None
    assert partition.state is PartitionState.ASSIGNING
    assert first.stopped
    assert set(partition.inputs) <= setup.consumer.paused()
    assert "replacing its producer" in caplog.text
    await partition.start_producer()
    assert setup.broker.producers[-1] is not first
    await partition.start_running()
    assert setup.consumer.positions[P0] == 2  # from the group's committed offset
    await setup.handle(2, 6)
    assert (await partition.commit()) is not None
    assert setup.consumer.committed_offsets[P0] == 6


async def test_a_closed_partition_is_revoked_and_its_store_released(
    setup: Setup, tmp_path: Path
) -> None:
    partition = await setup.running()
    producer = setup.broker.producers[-1]
    await partition.close()
    assert partition.state is PartitionState.REVOKED
    assert producer.stopped
    PartitionStore(tmp_path / "p0").close()  # opens: the lock was released


async def test_recovery_replays_what_the_store_lacks(tmp_path: Path) -> None:
    broker = FakeBroker(FakeConsumer({}), 1)
    changelog = broker.topic(TOPICS.state_changelog, 0)
    changelog += [(USER_PREFIX + f"u{n}".encode(), b"\xdc\x01{}") for n in range(10)]
    store = PartitionStore(tmp_path / "p0")
    store.write(changelog[:4], 3)  # the local copy has offsets 0..3
    recovery = ChangelogRecovery(
        SETTINGS, TOPICS.state_changelog, lambda **_: FakeLogReader(broker)
    )
    await recovery.add(0, store)
    assert await recovery.step(1.0) == {0: 6}
    assert store.changelog_offset == 9
    assert store.get(USER_PREFIX + b"u9") == b"{}"
    store.close()


async def test_a_store_ahead_of_its_changelog_is_rebuilt_from_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The changelog topic was deleted and recreated: it is the source of truth."""
    broker = FakeBroker(FakeConsumer({}), 1)
    broker.topic(TOPICS.state_changelog, 0).append((USER_PREFIX + b"new", b"\xdc\x01{}"))
    store = PartitionStore(tmp_path / "p0")
    store.write([(USER_PREFIX + b"old", b"\xdc\x01{}")], 500)
    recovery = ChangelogRecovery(
        SETTINGS, TOPICS.state_changelog, lambda **_: FakeLogReader(broker)
    )
    with caplog.at_level(logging.WARNING):
        await recovery.add(0, store)
    assert "was the topic deleted and recreated?" in caplog.text
    assert await recovery.step(1.0) == {0: 1}
    assert store.get(USER_PREFIX + b"old") is None
    assert store.get(USER_PREFIX + b"new") == b"{}"
    assert store.changelog_offset == 0
    store.close()


async def test_a_committed_delivery_reports_its_event_to_delivery_latency(tmp_path: Path) -> None:
    document = {
        "id": "hello",
        "status": "active",
        "trigger": {"event": "custom", "name": "Open"},
        "message": {"title": "Hello"},
        "ignore_frequency_caps": True,
    }
    catalog = Catalog.build([compile_engagement(apply_engagement_defaults(document), 1)])
    setup = Setup(tmp_path, catalog)
    partition = await setup.running()
    custom = SETTINGS.topic("custom-events")
    event = {
        "event_id": "e1",
        "user_id": "ann",
        "name": "Open",
        "timestamp": int(time.time() * 1000),
    }
    partition.handle(
        TopicPartition(custom, 0), [record(custom, 0, 0, event)], int(time.time() * 1000)
    )
    outbox = await partition.commit()
    assert outbox is not None and outbox.tally.deliveries
    [latency] = outbox.tally.delivery_latencies
    assert 0 <= latency < 60
    await partition.close()
