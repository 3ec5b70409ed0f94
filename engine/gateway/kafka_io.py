"""The gateway's Kafka clients: one consumer following `deliveries` and `impressions`, one
producer for interactions (and the demo's custom events).

The consumer reads committed records only (read_committed), in no group: it is assigned
every partition of both topics, and at start goes back to the records of the last
DECLIC_GATEWAY_HISTORY_SECONDS (offsets_for_times), so any instance, new or restarted,
rebuilds what it holds from the topics alone. It feeds the hub (``hub.Hub``), the seam
the unit tests feed by hand. A broker down at start is waited for (``/health`` answers
503 saying so), as is a topic not created yet; Kafka refusing the credentials or an ACL
is raised (the gateway exits with status 3).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition

from engine.errors import ConfigError, DeclicError
from engine.gateway.hub import Hub
from engine.gateway.metrics import GatewayMetrics
from engine.gateway.records import decode_delivery, decode_shown
from engine.retry import KAFKA_UNAVAILABLE, access_error, retry_kafka_forever
from engine.settings import Settings
from engine.stream.topics import DELIVERIES, IMPRESSIONS, partitions_of

log = logging.getLogger("declic.gateway")

MAX_RECORDS_PER_BATCH = 2000
# How often the consumer's lag is measured, and how long that may take before Kafka is
# called unreachable on /health.
WATCH_SECONDS = 5.0
WATCH_TIMEOUT_SECONDS = 5.0
SEND_TIMEOUT_SECONDS = 10.0


class TopicsMissing(DeclicError):
    """Raise while the topics the gateway reads do not exist yet."""


class PublishFailed(DeclicError):
    """Raise when Kafka did not acknowledge a record (it may still be written)."""


class Follower:
    """Follow `deliveries` and `impressions` into the hub; say how it stands."""

    def __init__(
        self,
        settings: Settings,
        hub: Hub,
        metrics: GatewayMetrics,
        clock_ms: Callable[[], int],
    ) -> None:
        self.settings = settings
        self.hub = hub
        self.metrics = metrics
        self.clock_ms = clock_ms
        self.deliveries_topic = settings.topic(DELIVERIES)
        self.impressions_topic = settings.topic(IMPRESSIONS)
        self.waiting_for: str | None = "Kafka (connecting)"
        self.problem: str | None = None
        self.lag: dict[str, int] = {}
        self._targets: dict[TopicPartition, int] = {}
        self._started = time.monotonic()

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Return whether the gateway serves (caught up, Kafka reachable), and why not."""
        problems = []
        if self.waiting_for is not None:
            problems.append(f"waiting for {self.waiting_for}")
        elif not self.hub.caught_up.is_set():
            problems.append("reading the history of deliveries and impressions")
        if self.problem is not None:
            problems.append(self.problem)
        body = {
            "status": "ok" if not problems else "unavailable",
            "problems": problems,
            "caught_up": self.hub.caught_up.is_set(),
            "lag": dict(self.lag),
            "users": len(self.hub.index),
            "deliveries": self.hub.index.deliveries,
            "streams": self.hub.stream_count,
        }
        return not problems, body

    async def run(self) -> None:
        """Connect (waiting for Kafka and the topics), then follow until cancelled."""
        consumer = await retry_kafka_forever(
            self._connect,
            "follow the deliveries and impressions topics",
            on_wait=self._waiting,
            errors=(*KAFKA_UNAVAILABLE, TopicsMissing),
        )
        self.waiting_for = None
        watch = asyncio.create_task(self._watch(consumer), name="declic-gateway-watch")
        try:
            await self._follow(consumer)
        finally:
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)
            await consumer.stop()

    def _waiting(self, problem: str) -> None:
        missing = problem.removeprefix(f"{TopicsMissing.__name__}: ")
        self.waiting_for = f"the topics: {missing}" if missing != problem else f"Kafka ({problem})"

    async def _connect(self) -> AIOKafkaConsumer:
        consumer = AIOKafkaConsumer(
            **self.settings.kafka_client_options(),
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            client_id=f"{self.settings.app_id}-gateway",
        )
        try:
            await consumer.start()
            partitions = [
                TopicPartition(topic, partition)
                for topic in (self.deliveries_topic, self.impressions_topic)
                for partition in await self._partitions(topic)
            ]
            consumer.assign(partitions)
            since = max(0, self.clock_ms() - self.settings.gateway_history_seconds * 1000)
            found = await consumer.offsets_for_times(dict.fromkeys(partitions, since))
            ends = await consumer.end_offsets(partitions)
            for tp in partitions:
                hit = found.get(tp)
                consumer.seek(tp, hit.offset if hit is not None else ends[tp])
        except BaseException:
            await consumer.stop()
            raise
        self._targets = dict(ends)
        log.info(
            "reading the last %d s of %s and %s (%d partitions)",
            self.settings.gateway_history_seconds,
            self.deliveries_topic,
            self.impressions_topic,
            len(partitions),
        )
        return consumer

    async def _partitions(self, topic: str) -> list[int]:
        try:
            return await partitions_of(self.settings, topic)
        except ConfigError as error:
            raise TopicsMissing(f"{error} (or a topic prefix that differs)") from None

    async def _follow(self, consumer: AIOKafkaConsumer) -> None:
        await self._check_caught_up(consumer)
        while True:
            try:
                batches = await consumer.getmany(timeout_ms=500, max_records=MAX_RECORDS_PER_BATCH)
            except KafkaError as error:
                if access_error(error) is not None:
                    raise
                self.problem = f"cannot read the topics: {type(error).__name__}: {error}"
                log.warning("%s; retrying in 1 s", self.problem)
                await asyncio.sleep(1.0)
                continue
            for tp, records in batches.items():
                kind = DELIVERIES if tp.topic == self.deliveries_topic else IMPRESSIONS
                ingest(
                    self.hub,
                    self.metrics,
                    records,
                    kind=kind,
                    topic=tp.topic,
                    partition=tp.partition,
                )
            self.hub.update_gauges()
            if not self.hub.caught_up.is_set():
                await self._check_caught_up(consumer)

    async def _check_caught_up(self, consumer: AIOKafkaConsumer) -> None:
        for tp, target in self._targets.items():
            if await consumer.position(tp) < target:
                return
        self.hub.caught_up.set()
        log.info(
            "caught up in %.1f s: %d deliveries of %d users held",
            time.monotonic() - self._started,
            self.hub.index.deliveries,
            len(self.hub.index),
        )

    async def _watch(self, consumer: AIOKafkaConsumer) -> None:
        """Measure the lag every WATCH_SECONDS; a broker not answering is a problem."""
        partitions = list(self._targets)
        while True:
            try:
                ends = await asyncio.wait_for(
                    consumer.end_offsets(partitions), WATCH_TIMEOUT_SECONDS
                )
                lag: dict[str, int] = {}
                for tp in partitions:
                    behind = max(0, ends[tp] - await consumer.position(tp))
                    lag[tp.topic] = lag.get(tp.topic, 0) + behind
                self.lag = lag
                if self.problem is not None:
                    log.info("Kafka answers again")
                self.problem = None
            except (TimeoutError, KafkaError, OSError) as error:
                reason = type(error).__name__ if not str(error) else str(error)
                if self.problem is None:
                    log.warning("Kafka unreachable (%s); waiting for it", reason)
                self.problem = f"Kafka unreachable: cannot read the end offsets ({reason})"
            await asyncio.sleep(WATCH_SECONDS)


class RecordLike(Protocol):
    """What ``ingest`` reads of a consumed record (aiokafka's ConsumerRecord)."""

    @property
    def value(self) -> bytes | None: ...

    @property
    def offset(self) -> int: ...

    @property
    def timestamp(self) -> int: ...


def ingest(
    hub: Hub,
    metrics: GatewayMetrics,
    records: Iterable[RecordLike],
    *,
    kind: str,
    topic: str,
    partition: int,
) -> None:
    """Feed the hub the records of one partition of `deliveries` or `impressions` (``kind``;
    ``topic``: its full name).

    A record that is no valid delivery or impression is skipped and counted. So is one that
    makes decoding fail (a bug, or a record crafted to): logged with where it is, never its
    value, it does not stop the gateway, which would meet it again at each start.
    """
    for record in records:
        try:
            if kind == DELIVERIES:
                delivery = decode_delivery(record.value, partition, record.offset, record.timestamp)
                if delivery is not None:
                    hub.add_delivery(delivery)
                    continue
            else:
                shown = decode_shown(record.value)
                if shown is not None:
                    hub.mark_shown(shown)
                    continue
        except Exception as error:  # any record, however made, is skipped
            log.warning(
                "skipped the record of %s partition %d offset %d: decoding it failed (%s)",
                topic,
                partition,
                record.offset,
                type(error).__name__,
            )
        metrics.records_skipped.labels(kind).inc()


class KafkaPublisher:
    """The producer of interactions and demo events: all replicas acknowledge, idempotent."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._producer: AIOKafkaProducer | None = None

    @property
    def ready(self) -> bool:
        return self._producer is not None

    async def run(self) -> None:
        """Start the producer, waiting for Kafka as long as it takes."""
        self._producer = await retry_kafka_forever(self._start, "start the producer")

    async def _start(self) -> AIOKafkaProducer:
        producer = AIOKafkaProducer(
            **self.settings.kafka_producer_options(),
            client_id=f"{self.settings.app_id}-gateway",
            linger_ms=5,
        )
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        return producer

    async def publish(self, topic: str, key: str, value: bytes) -> None:
        """Send one record to a topic (its full name) and wait for its acknowledgement;
        raise PublishFailed if Kafka is not reached in SEND_TIMEOUT_SECONDS."""
        producer = self._producer
        if producer is None:
            raise PublishFailed("not connected to Kafka yet")
        try:
            await asyncio.wait_for(
                producer.send_and_wait(topic, value, key=key.encode()), SEND_TIMEOUT_SECONDS
            )
        except (TimeoutError, KafkaError, OSError) as error:
            refused = access_error(error)
            reason = str(refused) if refused is not None else type(error).__name__
            raise PublishFailed(f"Kafka did not acknowledge the record ({reason})") from None

    async def stop(self) -> None:
        """Flush and close the producer."""
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
