"""Where a worker group stands: input end offsets against the group's committed offsets."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition

from engine.settings import Settings
from engine.stream.topics import TopicNames


class OffsetReader:
    """One admin client and one consumer, kept open, to read offsets repeatedly."""

    def __init__(self, settings: Settings) -> None:
        names = TopicNames.for_settings(settings)
        self._group = f"{settings.topic_prefix}{settings.app_id}"
        self._inputs = [
            TopicPartition(topic, partition)
            for topic in names.inputs
            for partition in range(settings.partitions)
        ]
        self._admin = AIOKafkaAdminClient(**settings.kafka_client_options())
        self._consumer = AIOKafkaConsumer(
            **settings.kafka_client_options(), group_id=None, isolation_level="read_committed"
        )

    async def __aenter__(self) -> OffsetReader:
        await self._admin.start()
        await self._consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()
        await self._admin.close()

    async def offsets(self) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
        ends = await self._consumer.end_offsets(self._inputs)
        committed = await self._admin.list_consumer_group_offsets(self._group)
        return ends, {tp: meta.offset for tp, meta in committed.items()}


async def group_lag(settings: Settings) -> int:
    """Return end offsets minus the engine group's committed offsets, over every input."""
    async with OffsetReader(settings) as reader:
        ends, committed = await reader.offsets()
    return sum(max(0, end - committed.get(tp, 0)) for tp, end in ends.items())
