"""A steady publisher, an app that reports impressions, and a consumer-lag sampler.

The publisher sends custom events for a pool of users at a fixed rate (with a share of
records that are not JSON), and remembers what the cluster acknowledged: only
acknowledged records are owed an outcome. The app tails the deliveries and sends an
impression for each (some twice, as a real app may). The sampler records the consumer
group's lag over time, so the time to catch up after each fault can be read off it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
import zlib
from dataclasses import dataclass, field

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition

from engine.settings import Settings
from engine.stream.topics import TopicNames
from tests.offsets import OffsetReader

VISIT = "Visit"  # triggers the once-per-user engagement
CART = "Cart"  # triggers the delayed engagement
GARBAGE_EVERY = 100  # one record in this many is not JSON


@dataclass
class Sent:
    """What the cluster acknowledged, to hold the engine to."""

    events: int = 0
    refused: int = 0  # sends the cluster did not acknowledge (a broker down): owed nothing
    visitors: set[str] = field(default_factory=set)
    carts: set[str] = field(default_factory=set)
    # (topic, partition, offset) of every acknowledged record that is not JSON
    garbage: set[tuple[str, int, int]] = field(default_factory=set)
    # delivery ids the app acknowledged an impression for
    impressed: set[str] = field(default_factory=set)


class Publisher:
    """Publish custom events for ``users`` users at ``rate`` per second until stopped."""

    def __init__(self, settings: Settings, run: str, users: int, rate: float) -> None:
        self._settings = settings
        self._users = [f"{run}-user-{n}" for n in range(users)]
        self._rate = rate
        self._random = random.Random(run)
        self.sent = Sent()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> Sent:
        self._stopping.set()
        if self._task is not None:
            await self._task
        return self.sent

    async def _run(self) -> None:
        producer = AIOKafkaProducer(
            **self._settings.kafka_producer_options(), linger_ms=5, request_timeout_ms=15_000
        )
        await producer.start()
        topic = self._settings.topic("custom-events")
        pending: set[asyncio.Task[None]] = set()
        started = time.monotonic()
        count = 0
        try:
            while not self._stopping.is_set():
                count += 1
                task = asyncio.create_task(self._send_one(producer, topic, count))
                pending.add(task)
                task.add_done_callback(pending.discard)
                # A fixed schedule: a slow acknowledgement does not slow the publisher.
                delay = started + count / self._rate - time.monotonic()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), max(0.0, delay))
            await asyncio.gather(*pending)
        finally:
            await producer.stop()

    async def _send_one(self, producer: AIOKafkaProducer, topic: str, count: int) -> None:
        user = self._random.choice(self._users)
        if count % GARBAGE_EVERY == 0:
            value = b"{not json " + str(count).encode()
            name = None
        else:
            name = VISIT if self._random.random() < 0.7 else CART
            value = orjson.dumps(
                {
                    "event_id": f"{user}-e{count}",
                    "user_id": user,
                    "name": name,
                    "timestamp": int(time.time() * 1000),
                }
            )
        try:
            metadata = await producer.send_and_wait(topic, value, key=user.encode())
        except KafkaError:
            self.sent.refused += 1
            return
        self.sent.events += 1
        if name is None:
            self.sent.garbage.add((topic, metadata.partition, metadata.offset))
        elif name == VISIT:
            self.sent.visitors.add(user)
        else:
            self.sent.carts.add(user)


class ImpressionApp:
    """Report an impression for every delivery shown, as the app (or the SDK) does."""

    def __init__(self, settings: Settings, sent: Sent) -> None:
        self._settings = settings
        self._sent = sent
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            await self._task

    async def caught_up(self) -> bool:
        """Return whether every committed delivery so far has been shown."""
        consumer = self._consumer
        if consumer is None or not consumer.assignment():
            return False
        assigned = list(consumer.assignment())
        ends = await consumer.end_offsets(assigned)
        return all([await consumer.position(tp) >= end for tp, end in ends.items()])

    async def _run(self) -> None:
        names = TopicNames.for_settings(self._settings)
        consumer = AIOKafkaConsumer(
            names.deliveries,
            **self._settings.kafka_client_options(),
            group_id=None,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
        )
        producer = AIOKafkaProducer(
            **self._settings.kafka_producer_options(), request_timeout_ms=15_000
        )
        await consumer.start()
        await producer.start()
        self._consumer = consumer
        try:
            while not self._stopping.is_set():
                batches = await consumer.getmany(timeout_ms=200)
                for records in batches.values():
                    for record in records:
                        await self._impress(producer, orjson.loads(record.value))
        finally:
            self._consumer = None
            await consumer.stop()
            await producer.stop()

    async def _impress(self, producer: AIOKafkaProducer, delivery: dict[str, object]) -> None:
        delivery_id = str(delivery["delivery_id"])
        user = str(delivery["user_id"])
        # Some impressions are reported twice: the first one only counts as first.
        repeats = 2 if zlib.crc32(delivery_id.encode()) % 5 == 0 else 1
        for n in range(repeats):
            interaction = {
                "event_id": f"{delivery_id}-i{n}",
                "user_id": user,
                "delivery_id": delivery_id,
                "kind": "impression",
                "timestamp": int(time.time() * 1000),
            }
            try:
                await producer.send_and_wait(
                    self._settings.topic("interactions"),
                    orjson.dumps(interaction),
                    key=user.encode(),
                )
            except KafkaError:
                continue
            self._sent.impressed.add(delivery_id)


@dataclass
class LagSample:
    at: float  # monotonic seconds
    ends: dict[TopicPartition, int]  # end offset of every input partition
    committed: dict[TopicPartition, int]  # the engine group's committed offsets


class LagSampler:
    """Sample the input end offsets and the engine group's committed offsets, every 0.25 s."""

    def __init__(self, settings: Settings, every: float = 0.25) -> None:
        self._settings = settings
        self._every = every
        self.samples: list[LagSample] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        async with OffsetReader(self._settings) as reader:
            while True:
                try:
                    ends, committed = await asyncio.wait_for(reader.offsets(), 5)
                except (KafkaError, OSError, TimeoutError):
                    pass  # a node down: this sample is missing
                else:
                    self.samples.append(LagSample(time.monotonic(), ends, committed))
                await asyncio.sleep(self._every)

    def caught_up_after(self, fault_at: float) -> float | None:
        """Return seconds from ``fault_at`` until the lag was back to 0.

        Back to 0: the group had committed every record published up to the sample
        before (0.25 s earlier). Under a steady load the lag measured against the same
        instant is hardly ever 0, records being always in flight.
        """
        after = [sample for sample in self.samples if sample.at > fault_at]
        for previous, sample in itertools.pairwise(after):
            if all(sample.committed.get(tp, 0) >= end for tp, end in previous.ends.items()):
                return sample.at - fault_at
        return None
