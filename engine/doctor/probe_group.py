"""Ask the group coordinator: the worker group's members, and its lag per input topic."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from aiokafka.errors import for_code
from aiokafka.structs import TopicPartition

from engine.doctor.judge import Member
from engine.doctor.wire import AuthorizedGroupRequest, allowed_operations
from engine.retry import retry_kafka_briefly
from engine.settings import Settings


def worker_group(settings: Settings) -> str:
    """Return the consumer group of the workers (as engine.stream.engine names it)."""
    return f"{settings.topic_prefix}{settings.app_id}"


@dataclass(frozen=True, slots=True)
class Group:
    """The worker group as its coordinator describes it."""

    state: str
    members: list[Member]
    operations: set[str]  # what this principal may do on the group


def assigned_partitions(raw: bytes | None) -> int:
    """Return how many partitions a member's assignment gives it (sessions 3 and profiles 3
    are one partition: a worker owns a partition of every input topic)."""
    if not raw:
        return 0
    assignment: Any = ConsumerProtocolMemberAssignment.decode(raw)
    return len({tp.partition for tp in assignment.partitions()})


async def describe_group(admin: AIOKafkaAdminClient, group: str) -> Group:
    """Return the group's state and members; raise the coordinator's error, if any."""
    # A coordinator being elected (a new cluster, a broker moving) answers "not available".
    client: Any = admin._client
    coordinator = await retry_kafka_briefly(lambda: admin.find_coordinator(group))
    response = await retry_kafka_briefly(
        lambda: client.send(coordinator, AuthorizedGroupRequest(group))
    )
    error, _name, state, _type, _protocol, members, operations = response.groups[0]
    if error:
        raise for_code(error)(group)
    return Group(
        state,
        [Member(m[1], m[2], assigned_partitions(m[4])) for m in members],
        allowed_operations(operations),
    )


async def group_lag(
    admin: AIOKafkaAdminClient, settings: Settings, group: str, partitions: Mapping[str, int]
) -> tuple[dict[str, int], int]:
    """Return the records not yet committed by the group, per topic (read_committed end
    offsets, as the worker reads), and how many partitions it never committed."""
    committed = await retry_kafka_briefly(lambda: admin.list_consumer_group_offsets(group))
    tps = [TopicPartition(topic, p) for topic, count in partitions.items() for p in range(count)]
    consumer = AIOKafkaConsumer(
        **settings.kafka_client_options(),
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    try:
        await consumer.start()
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
    finally:
        await consumer.stop()
    lag = dict.fromkeys(partitions, 0)
    never = 0
    for tp in tps:
        offset = committed.get(tp)
        if offset is None or offset.offset < 0:
            never += 1
            position = starts[tp]  # a worker starts from the earliest record
        else:
            position = offset.offset
        lag[tp.topic] += max(0, ends[tp] - position)
    return lag, never
