"""Nothing lost, nothing doubled, nothing stuck: exactly once on a three-node cluster under faults.

Each scenario runs three workers on the cluster under a steady load, injects its
faults, and hands the outputs to the referee; every count of loss or duplication must
be 0 and no worker may exit on its own. Figures: ``.run/chaos/<scenario>.json``.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from engine.admin.engagements import apply_engagements
from engine.stream.tail import TopicTail
from engine.stream.topics import TopicNames, ensure_topics
from tests.chaos.conftest import Cluster
from tests.chaos.load import VISIT
from tests.chaos.scenario import Scenario, failures

pytestmark = pytest.mark.chaos

# aiokafka's default group session: a worker silent this long loses its partitions.
SESSION_SECONDS = 10


async def _run(scenario: Scenario, faults: Callable[[], Awaitable[None]]) -> None:
    try:
        await scenario.start()
        await faults()
        report = await scenario.finish()
    finally:
        await scenario.close()
    print(report)  # shown with -s; kept in .run/chaos/
    if failures(report):
        scenario.keep_logs()  # in .run/chaos/, to find out why
    assert failures(report) == {}, report


async def test_workers_killed_and_restarted_lose_and_double_nothing(
    cluster: Cluster, tmp_path: Path
) -> None:
    """SIGKILL a worker every 15 s; every other one stays down past the session timeout,
    so its partitions (and their pending delayed deliveries) move and come back."""
    scenario = Scenario("worker-kills", cluster, tmp_path)

    async def faults() -> None:
        for round_number, at in enumerate((10, 25, 40, 55)):
            victim = round_number % len(scenario.workers)
            await scenario.at(at)
            scenario.kill_worker(victim)
            down = 2 if round_number % 2 == 0 else SESSION_SECONDS + 3
            await scenario.at(at + down)
            scenario.restart_worker(victim)
        await scenario.at(75)

    await _run(scenario, faults)


async def _leader_of_most_inputs(scenario: Scenario) -> int:
    settings = scenario.settings
    admin = AIOKafkaAdminClient(**settings.kafka_client_options())
    await admin.start()
    try:
        described = await admin.describe_topics(list(TopicNames.for_settings(settings).inputs))
    finally:
        await admin.close()
    leaders = Counter(p["leader"] for topic in described for p in topic["partitions"])
    return leaders.most_common(1)[0][0]


async def test_a_broker_killed_under_load_is_ridden_out(cluster: Cluster, tmp_path: Path) -> None:
    """SIGKILL the node leading most input partitions, start it again 25 s later."""
    scenario = Scenario("broker-kill", cluster, tmp_path)

    async def faults() -> None:
        await scenario.at(15)
        node = await _leader_of_most_inputs(scenario)
        scenario.fault(f"SIGKILL broker node {node}")
        await asyncio.to_thread(cluster.kill_node, node)
        await scenario.at(40)
        await asyncio.to_thread(cluster.start_node, node)
        scenario.fault(f"broker node {node} started again")
        await scenario.at(60)

    try:
        await _run(scenario, faults)
    finally:
        await asyncio.to_thread(cluster.wait_healthy)


async def test_a_frozen_worker_is_fenced_and_doubles_nothing(
    cluster: Cluster, tmp_path: Path
) -> None:
    """SIGSTOP a worker past its session timeout, then SIGCONT it: a zombie."""
    scenario = Scenario("zombie", cluster, tmp_path)

    async def faults() -> None:
        await scenario.at(10)
        scenario.fault("SIGSTOP worker 0")
        scenario.workers[0].pause()
        await scenario.at(10 + SESSION_SECONDS + 8)
        scenario.fault("resume (SIGCONT) worker 0")
        scenario.workers[0].resume()
        await scenario.at(50)

    await _run(scenario, faults)


async def test_a_worker_that_lost_its_disk_rebuilds_its_state(
    cluster: Cluster, tmp_path: Path
) -> None:
    """Kill a worker, delete its data directory, start it again: state from the changelog."""
    scenario = Scenario("lost-disk", cluster, tmp_path)

    async def faults() -> None:
        await scenario.at(20)
        scenario.kill_worker(1, wipe_state=True)
        scenario.restart_worker(1)
        await scenario.at(50)

    await _run(scenario, faults)


async def test_a_worker_started_just_after_a_node_died_starts_and_serves(
    cluster: Cluster, tmp_path: Path
) -> None:
    """Before: its first admin request could go to the dead node, still in the metadata
    for a few seconds, and the worker exited (NodeNotReadyError, node id 1)."""
    scenario = Scenario("node-down-at-start", cluster, tmp_path)
    await ensure_topics(scenario.settings)
    worker = scenario.workers[0]
    await asyncio.to_thread(cluster.kill_node, 1)
    try:
        worker.start()
        await asyncio.to_thread(worker.wait_ready, 240.0)
        await scenario.wait_all_partitions_running()
        assert await _delivered_once(scenario), worker.log_path.read_text()[-3000:]
        assert worker.running
    finally:
        worker.stop()
        await asyncio.to_thread(cluster.start_node, 1)
        await asyncio.to_thread(cluster.wait_healthy)


async def _delivered_once(scenario: Scenario) -> bool:
    """Apply the once-per-user engagement, publish an event, and see its delivery."""
    settings = scenario.settings
    await apply_engagements(settings, [scenario.engagements()[0]], int(time.time() * 1000))
    deliveries = TopicTail(settings, settings.topic("deliveries"))
    await deliveries.start()
    try:
        user = f"{settings.topic_prefix}user"
        event = {
            "event_id": "e1",
            "user_id": user,
            "name": VISIT,
            "timestamp": int(time.time() * 1000),
        }
        producer = AIOKafkaProducer(**settings.kafka_producer_options())
        await producer.start()
        try:
            await producer.send_and_wait(
                settings.topic("custom-events"), orjson.dumps(event), key=user.encode()
            )
        finally:
            await producer.stop()
        records = await deliveries.read(at_least=1, quiet_seconds=0.5, max_seconds=120)
    finally:
        await deliveries.stop()
    return [r["user_id"] for r in records] == [user]
