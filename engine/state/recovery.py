"""Bring a partition's local store up to date from its changelog partition."""

from __future__ import annotations

import logging
import time

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from engine.settings import Settings
from engine.state.store import PartitionStore

log = logging.getLogger(__name__)

RECOVERY_BATCH = 5_000


async def recover(settings: Settings, store: PartitionStore, changelog: TopicPartition) -> int:
    """Replay committed changelog records the local store lacks; return how many."""
    consumer = AIOKafkaConsumer(
        **settings.kafka_client_options(),
        client_id=f"{settings.app_id}-{settings.worker_id}-recovery",
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    started = time.perf_counter()
    replayed = 0
    try:
        consumer.assign([changelog])
        local_offset = store.changelog_offset
        if local_offset is None:
            await consumer.seek_to_beginning(changelog)
        else:
            consumer.seek(changelog, local_offset + 1)
        end = (await consumer.end_offsets([changelog]))[changelog]
        while await consumer.position(changelog) < end:
            batches = await consumer.getmany(changelog, timeout_ms=1000, max_records=RECOVERY_BATCH)
            records = batches.get(changelog, [])
            if not records:
                continue
            store.write(((record.key, record.value) for record in records), records[-1].offset)
            replayed += len(records)
    finally:
        await consumer.stop()
    log.info(
        "partition %d: replayed %d changelog records in %.2fs",
        changelog.partition,
        replayed,
        time.perf_counter() - started,
    )
    return replayed
