"""Bring partition stores up to date from their changelog partitions: a phase of the loop.

Partitions being recovered have their inputs paused; each pass of the engine's loop
gives recovery a slice of time (its deadline) and processes the running partitions in
between, so a long recovery neither stalls them nor silences the worker. Only the
changelog records a local store lacks are replayed (all of them on a new machine).
Progress is logged every ``PROGRESS_LOG_SECONDS``.

A store whose recorded changelog offset is at or past the changelog's end belongs to
another history (the changelog topic was deleted and recreated, or truncated): as
Kafka Streams does, the local copy is wiped and rebuilt from the changelog, the
source of truth, and a warning says so.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from engine.retry import KAFKA_UNAVAILABLE
from engine.settings import Settings
from engine.state.store import PartitionStore

log = logging.getLogger(__name__)

RECOVERY_BATCH = 5_000
PROGRESS_LOG_SECONDS = 10.0
FETCH_TIMEOUT_MS = 50


@dataclass(slots=True)
class _Recovery:
    """One partition's replay: its own consumer, from the local offset to ``end``."""

    store: PartitionStore
    consumer: Any
    tp: TopicPartition
    end: int
    started: float = field(default_factory=time.monotonic)
    replayed: int = 0


class ChangelogRecovery:
    """Replay changelog partitions into their stores, a slice at a time."""

    def __init__(
        self,
        settings: Settings,
        topic: str,
        new_consumer: Callable[..., Any] = AIOKafkaConsumer,
    ) -> None:
        self._settings = settings
        self._topic = topic
        self._new_consumer = new_consumer
        self._recoveries: dict[int, _Recovery] = {}
        self._last_progress = time.monotonic()

    @property
    def partitions(self) -> set[int]:
        """Return the partitions being recovered."""
        return set(self._recoveries)

    async def add(self, partition: int, store: PartitionStore) -> None:
        """Start recovering ``partition`` into ``store``."""
        consumer = self._new_consumer(
            **self._settings.kafka_client_options(),
            client_id=f"{self._settings.app_id}-{self._settings.worker_id}-recovery-{partition}",
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
        )
        try:
            await consumer.start()
            tp = TopicPartition(self._topic, partition)
            consumer.assign([tp])
            end = (await consumer.end_offsets([tp]))[tp]
            local = store.changelog_offset
            if local is not None and local >= end:
                log.warning(
                    "partition %d: local state is at changelog offset %d but %s ends at %d "
                    "(was the topic deleted and recreated?): rebuilding it from the changelog",
                    partition,
                    local,
                    self._topic,
                    end,
                )
                store.reset()
                local = None
            if local is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, local + 1)
        except BaseException:
            await consumer.stop()
            raise
        self._recoveries[partition] = _Recovery(store, consumer, tp, end)
        log.info(
            "partition %d: recovering its state from %s, offsets %s to %d",
            partition,
            self._topic,
            "start" if local is None else local + 1,
            end,
        )

    async def remove(self, partition: int) -> None:
        """Stop recovering ``partition`` (it was revoked)."""
        recovery = self._recoveries.pop(partition, None)
        if recovery is not None:
            await recovery.consumer.stop()

    async def step(self, seconds: float) -> dict[int, int]:
        """Replay for about ``seconds`` in all.

        Return the partitions now fully recovered, with how many records each replayed.
        """
        done: dict[int, int] = {}
        share = seconds / max(1, len(self._recoveries))
        for partition, recovery in list(self._recoveries.items()):
            try:
                caught_up = await self._replay(recovery, time.monotonic() + share)
            except KAFKA_UNAVAILABLE as error:  # the next step goes on from where it is
                log.warning("partition %d: recovery interrupted (%r)", partition, error)
                continue
            if caught_up:
                done[partition] = recovery.replayed
                del self._recoveries[partition]
                await recovery.consumer.stop()
                log.info(
                    "partition %d: replayed %d changelog records in %.2fs",
                    partition,
                    recovery.replayed,
                    time.monotonic() - recovery.started,
                )
        await self._log_progress()
        return done

    @staticmethod
    async def _replay(recovery: _Recovery, deadline: float) -> bool:
        """Replay until caught up (return True) or until the deadline (return False)."""
        consumer, tp = recovery.consumer, recovery.tp
        while await consumer.position(tp) < recovery.end:
            if time.monotonic() >= deadline:
                return False
            batches = await consumer.getmany(
                tp, timeout_ms=FETCH_TIMEOUT_MS, max_records=RECOVERY_BATCH
            )
            records = batches.get(tp, [])
            if records:
                recovery.store.write(((r.key, r.value) for r in records), records[-1].offset)
                recovery.replayed += len(records)
        return True

    async def _log_progress(self) -> None:
        if not self._recoveries or time.monotonic() - self._last_progress < PROGRESS_LOG_SECONDS:
            return
        self._last_progress = time.monotonic()
        for partition, recovery in sorted(self._recoveries.items()):
            left = recovery.end - await recovery.consumer.position(recovery.tp)
            log.info(
                "partition %d: recovery under way: %d changelog records replayed in %.0fs, "
                "about %d to go",
                partition,
                recovery.replayed,
                time.monotonic() - recovery.started,
                left,
            )

    async def close(self) -> None:
        """Stop every recovery under way."""
        for partition in list(self._recoveries):
            await self.remove(partition)
