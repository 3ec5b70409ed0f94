"""Follow the compacted engagements topic and keep an up-to-date, compiled catalog.

Every worker reads the whole topic (it is small), so each holds every
engagement whatever partitions it owns, and a change applies without restart.
``follow_forever`` supervises the follower: if its consumer fails, the worker keeps
the last catalog, reports the follower down (``following``) and reads the topic again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord, TopicPartition

from engine.core.catalog import Catalog
from engine.core.engagements import Engagement, compile_engagement
from engine.errors import DeclicError
from engine.retry import retry_kafka_forever
from engine.schemas import apply_engagement_defaults, validator
from engine.settings import Settings
from engine.stream.topics import partitions_of

log = logging.getLogger(__name__)


def decode_engagement_record(raw: bytes) -> tuple[dict[str, Any], Engagement]:
    """Decode, validate and compile one value of the engagements topic."""
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise DeclicError(f"invalid JSON: {error}") from None
    validator("engagement-record").check(document)
    engagement = apply_engagement_defaults(document["engagement"])
    return document, compile_engagement(engagement, document["version"])


class CatalogFollower:
    """Read the engagements topic from the start and keep following it."""

    def __init__(self, settings: Settings, on_change: Callable[[Catalog], None] | None = None):
        self._settings = settings
        self._topic = settings.topic("engagements")
        self._on_change = on_change
        self._engagements: dict[str, Engagement] = {}
        self.records: dict[str, dict[str, Any]] = {}
        self.catalog = Catalog.build(())
        self.ready = asyncio.Event()
        # Whether changes are being followed (False while the follower restarts).
        self.following = False
        self.problem: str | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        """Connect and read the whole topic; return once caught up."""
        await self.stop()
        partitions = await partitions_of(self._settings, self._topic)
        consumer = AIOKafkaConsumer(
            **self._settings.kafka_client_options(),
            client_id=f"{self._settings.app_id}-{self._settings.worker_id}-catalog",
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
        )
        try:
            await consumer.start()
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer
        self._engagements.clear()
        self.records.clear()
        assigned = [TopicPartition(self._topic, partition) for partition in sorted(partitions)]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        end_offsets = await consumer.end_offsets(assigned)
        for tp, end in end_offsets.items():
            while await consumer.position(tp) < end:
                await self.poll(timeout_ms=500, publish=False)  # the whole topic, then publish
        self._publish()
        self.ready.set()
        self.following = True
        self.problem = None

    async def poll(self, timeout_ms: int = 1000, publish: bool = True) -> bool:
        """Apply whatever arrived; return True if the catalog changed."""
        assert self._consumer is not None
        batches = await self._consumer.getmany(timeout_ms=timeout_ms)
        changed = False
        for records in batches.values():
            for record in records:
                changed |= self._apply(record)
        if changed and publish:
            self._publish()
        return changed

    async def follow(self) -> None:
        """Keep applying changes until cancelled."""
        while True:
            await self.poll()

    async def follow_forever(self) -> None:
        """Follow changes until cancelled; on a failure, read the topic again and go on."""
        while True:
            try:
                await self.follow()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self.following = False
                self.problem = f"catalog follower failed: {type(error).__name__}: {error}"
                log.error("%s; keeping the last catalog and reading the topic again", self.problem)
            # Whatever stopped it (Kafka, a topic being recreated): keep trying.
            await retry_kafka_forever(
                self.start, "read the engagements topic again", errors=(Exception,)
            )

    async def stop(self) -> None:
        """Disconnect."""
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    def _apply(self, record: ConsumerRecord) -> bool:
        try:
            key = record.key.decode() if record.key is not None else None
        except UnicodeDecodeError:
            key = None
        if key is None:
            log.warning("engagements record at offset %d has no UTF-8 key: ignored", record.offset)
            return False
        if record.value is None:
            self.records.pop(key, None)
            return self._engagements.pop(key, None) is not None
        try:
            document, engagement = decode_engagement_record(record.value)
        except DeclicError as error:
            log.error(
                "engagement %r at offset %d is invalid, ignored: %s", key, record.offset, error
            )
            return False
        if engagement.id != key:
            log.error(
                "engagement record key %r does not match its id %r: ignored", key, engagement.id
            )
            return False
        self.records[key] = document
        self._engagements[key] = engagement
        return True

    def _publish(self) -> None:
        self.catalog = Catalog.build(self._engagements.values())
        log.info("catalog: %d engagements", len(self.catalog))
        if self._on_change is not None:
            self._on_change(self.catalog)
