"""The console's data on Kafka: the same reads and writes as the `declic` commands.

Reads: one snapshot of engagements, engagement-stats and engagement-changelog (what
`declic diagnose` reads), shared by every page for ``SNAPSHOT_SECONDS`` and single-flight,
so open pages polling for figures cost one read per interval whatever their number; a
write drops it, so the page after a change shows it. Event names: the last records of
custom-events, read again every ``EVENT_NAMES_SECONDS``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, Final

import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from engine.admin.diagnose import Snapshot, read_snapshot
from engine.admin.engagements import Change, apply_engagements, change_status
from engine.admin.test_send import request_test_send
from engine.settings import Settings
from engine.stream.tail import read_to_end
from engine.stream.topics import partitions_of

log = logging.getLogger(__name__)

SNAPSHOT_SECONDS: Final = 3.0
EVENT_NAMES_SECONDS: Final = 60.0
# Custom events sampled for their names, over all partitions.
EVENT_NAMES_SAMPLE: Final = 5000
MAX_EVENT_NAMES: Final = 200
TEST_SEND_WAIT_SECONDS: Final = 30.0


class _Cached:
    """One value, read at most once per ``ttl`` seconds, by one read at a time."""

    def __init__(self, read: Callable[[], Awaitable[Any]], ttl: float) -> None:
        self._read = read
        self._ttl = ttl
        self._value: asyncio.Future[Any] | None = None
        self._expires = 0.0

    async def get(self) -> Any:
        value = self._value
        if value is None or time.monotonic() >= self._expires or _failed(value):
            value = self._value = asyncio.ensure_future(self._read())
            self._expires = float("inf")
            value.add_done_callback(self._done)
        return await asyncio.shield(value)

    def _done(self, value: asyncio.Future[Any]) -> None:
        if value is self._value:
            self._expires = time.monotonic() + self._ttl

    def drop(self) -> None:
        self._value = None


def _failed(future: asyncio.Future[Any]) -> bool:
    return future.done() and (future.cancelled() or future.exception() is not None)


class KafkaConsoleData:
    """ConsoleData on the topics the settings name."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._snapshot = _Cached(lambda: read_snapshot(settings), SNAPSHOT_SECONDS)
        self._event_names = _Cached(self._read_event_names, EVENT_NAMES_SECONDS)

    async def snapshot(self) -> Snapshot:
        snapshot: Snapshot = await self._snapshot.get()
        return snapshot

    async def event_names(self) -> list[str]:
        try:
            names: list[str] = await self._event_names.get()
        except Exception as error:  # a hint for a form: never fail the page for it
            log.warning("cannot read recent custom event names: %r", error)
            return []
        return names

    async def apply(
        self, document: dict[str, Any], author: str, now_ms: int, expected_version: int | None
    ) -> Change:
        expected = {document["id"]: expected_version}
        [change] = await apply_engagements(self._as(author), [document], now_ms, expected)
        self._snapshot.drop()
        return change

    async def change_status(
        self, engagement_id: str, action: str, author: str, now_ms: int
    ) -> Change:
        change = await change_status(self._as(author), engagement_id, action, now_ms)
        self._snapshot.drop()
        return change

    async def test_send(
        self, engagement_id: str, user_id: str, variant: str | None, author: str
    ) -> dict[str, Any]:
        return await request_test_send(
            self._as(author), engagement_id, user_id, variant, TEST_SEND_WAIT_SECONDS
        )

    def _as(self, author: str) -> Settings:
        # The logged-in user is the author of the change, as --author is for the CLI.
        return self._settings.model_copy(update={"author": author})

    async def _read_event_names(self) -> list[str]:
        topic = self._settings.topic("custom-events")
        partitions = sorted(await partitions_of(self._settings, topic))
        consumer = AIOKafkaConsumer(
            **self._settings.kafka_client_options(), group_id=None, enable_auto_commit=False
        )
        try:
            await consumer.start()
            assigned = [TopicPartition(topic, partition) for partition in partitions]
            ends = await consumer.end_offsets(assigned)
            starts = await consumer.beginning_offsets(assigned)
        finally:
            await consumer.stop()
        per_partition = max(1, EVENT_NAMES_SAMPLE // max(1, len(partitions)))
        offsets = {
            tp.partition: max(starts[tp], ends[tp] - per_partition)
            for tp in assigned
            if ends[tp] > starts[tp]
        }
        if not offsets:
            return []
        names: Counter[str] = Counter()
        for record in await read_to_end(self._settings, topic, offsets, max_seconds=10.0):
            try:
                name = orjson.loads(record.value).get("name")
            except (orjson.JSONDecodeError, AttributeError, TypeError):
                continue  # the workers dead-letter it; a hint does without it
            if isinstance(name, str) and 0 < len(name) <= 256:
                names[name] += 1
        return [name for name, _ in names.most_common(MAX_EVENT_NAMES)]
