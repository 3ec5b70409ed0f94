"""The engine's membership of its consumer group: the consumer and its rebalance hooks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiokafka import ConsumerRebalanceListener
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.structs import TopicPartition

from engine.settings import Settings

PartitionsHook = Callable[[set[int]], Awaitable[None]]


def group_consumer(settings: Settings, group_id: str, new_consumer: Callable[..., Any]) -> Any:
    """Return (not started) the batch consumer of a worker's input partitions."""
    return new_consumer(
        **settings.kafka_client_options(),
        client_id=f"{settings.app_id}-{settings.worker_id}",
        group_id=group_id,
        # Static membership: a restarted worker takes its partitions back at once
        # instead of waiting for its previous self's session to time out.
        group_instance_id=settings.worker_id,
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        # Range assignment gives one worker partition p of every input topic,
        # where that user's state lives.
        partition_assignment_strategy=(RangePartitionAssignor,),
        max_partition_fetch_bytes=4 * 1024 * 1024,
        fetch_max_wait_ms=10,
    )


class Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Hand the partition numbers assigned and revoked to the engine."""

    def __init__(self, acquire: PartitionsHook, release: PartitionsHook) -> None:
        self._acquire = acquire
        self._release = release

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self._release({tp.partition for tp in revoked})

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        await self._acquire({tp.partition for tp in assigned})
