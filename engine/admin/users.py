"""`declic users forget` and `declic users show`: erase a user, or print what Declic holds.

``forget`` publishes a request on ``user-requests`` keyed by the user, so it reaches the
worker owning the user's partition in order with their events; the worker erases their
keys and writes the audit record in one transaction, and the command waits for that
record (read_committed): once it is printed, the erasure is committed.

``show`` reads the user's partition of the state changelog itself, up to its end, and
keeps the latest value of each of the user's keys: it needs no worker (useful when one
is down) and puts no copy of the user's data on any topic. It reads the whole partition,
so it takes as long as a worker's recovery of that partition does.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata, TopicPartition

from engine.core.timestamps import format_timestamp
from engine.core.user_requests import (
    owned_by,
    readable_delivery,
    readable_pending,
    readable_user_state,
)
from engine.doctor.probe_group import worker_group
from engine.errors import DeclicError
from engine.schemas import validator
from engine.settings import Settings
from engine.state.format import decode
from engine.state.keys import DELIVERY_PREFIX, PENDING_PREFIX, USER_PREFIX
from engine.stream.tail import TopicTail
from engine.stream.topics import (
    STATE_CHANGELOG,
    USER_AUDIT,
    InputKind,
    TopicNames,
    partitions_of,
)

FETCH_TIMEOUT_MS = 500


def user_partition(user_id: str, partitions: list[int]) -> int:
    """Return the partition Kafka's default partitioner (murmur2) sends the user's key to:
    where producers keying by user_id put their events, hence the worker their state."""
    return int(DefaultPartitioner()(user_id.encode(), sorted(partitions), sorted(partitions)))


async def _wait_for_older_events(
    settings: Settings, user_id: str, partitions: list[int], deadline: float
) -> None:
    """Wait until the workers have committed every record that was, when called, on the
    user's partition of the other input topics; raise DeclicError at ``deadline``.

    A forget carried out before such a record (the user-requests partition has no
    backlog to go through, the others may) would be undone by it: an older profile
    update would bring the profile back, an older event a delivery.
    """
    partition = user_partition(user_id, partitions)
    names = TopicNames.for_settings(settings)
    tps = [
        TopicPartition(topic, partition)
        for topic, kind in names.inputs.items()
        if kind is not InputKind.USER_REQUESTS
    ]
    consumer = AIOKafkaConsumer(
        **settings.kafka_client_options(), group_id=None, isolation_level="read_committed"
    )
    admin = AIOKafkaAdminClient(**settings.kafka_client_options())
    try:
        await consumer.start()
        await admin.start()
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        while True:
            committed = await admin.list_consumer_group_offsets(worker_group(settings), None, tps)
            behind = {
                tp.topic: ends[tp] - max(_offset(committed.get(tp)), starts[tp])
                for tp in tps
                if ends[tp] > max(_offset(committed.get(tp)), starts[tp])
            }
            if not behind:
                return
            if time.monotonic() >= deadline:
                raise DeclicError(
                    f"the workers have not processed yet {sum(behind.values())} record(s) of "
                    f"partition {partition} that came before this request ("
                    + ", ".join(f"{topic} {count}" for topic, count in sorted(behind.items()))
                    + "): carried out first, the erasure would be undone by the user's older "
                    "ones. Nothing was requested: run it again once the workers caught up "
                    "(`declic doctor` shows their lag), or with a longer --wait"
                )
            await asyncio.sleep(0.2)
    finally:
        await admin.close()
        await consumer.stop()


def _offset(committed: OffsetAndMetadata | None) -> int:
    return -1 if committed is None else int(committed.offset)


async def forget_user(settings: Settings, user_id: str, wait_seconds: float) -> dict[str, Any]:
    """Ask the worker owning ``user_id`` to erase them once it processed the user's older
    records; return its audit record."""
    deadline = time.monotonic() + wait_seconds
    request = {
        "request_id": f"forget-{uuid.uuid4().hex}",
        "action": "forget",
        "user_id": user_id,
        "requested_at": format_timestamp(int(time.time() * 1000)),
        "author": settings.author,
    }
    validator("user-request").check(request)
    requests = settings.topic(InputKind.USER_REQUESTS.value)
    # Also: never let a send auto-create the topic unpartitioned.
    partitions = await partitions_of(settings, requests)
    await _wait_for_older_events(settings, user_id, partitions, deadline)
    audit = TopicTail(settings, settings.topic(USER_AUDIT))
    try:
        await audit.start()  # at the end before the request is sent: its answer comes after
        producer = AIOKafkaProducer(**settings.kafka_producer_options())
        try:
            await producer.start()
            await producer.send_and_wait(requests, orjson.dumps(request), key=user_id.encode())
        finally:
            await producer.stop()
        while time.monotonic() < deadline:
            for record in await audit.read(quiet_seconds=0, max_seconds=0.5):
                if record.get("request_id") == request["request_id"]:
                    return record
    finally:
        await audit.stop()
    raise DeclicError(
        f"no worker carried out request {request['request_id']} within {wait_seconds:g}s: "
        "is a `declic worker` running on this cluster, of a release that reads "
        f"{requests} (older ones do not)? The request stays on {requests}: the worker "
        "owning the user carries it out once it runs, and writes "
        f"its record, with this request id, on {settings.topic(USER_AUDIT)}"
    )


@dataclass(slots=True)
class UserView:
    """What the state changelog holds about one user, as of ``end_offset``."""

    user_id: str
    partition: int
    end_offset: int
    state: dict[str, Any] | None = None
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    pending: list[dict[str, Any]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        """Return whether Declic holds nothing about the user."""
        return self.state is None and not self.deliveries and not self.pending

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "partition": self.partition,
            "changelog_end_offset": self.end_offset,
            "state": self.state,
            "deliveries": self.deliveries,
            "pending_deliveries": self.pending,
        }


class _Latest:
    """The latest value of each of one user's changelog keys (None: deleted)."""

    def __init__(self, user_id: str) -> None:
        self.user_id = user_id
        self.user_key = USER_PREFIX + user_id.encode()
        self.values: dict[bytes, Any] = {}

    def add(self, record: ConsumerRecord) -> None:
        key: bytes | None = record.key
        if key is None:
            return
        if record.value is None:
            if key in self.values:
                self.values[key] = None  # a tombstone: deleted, and compaction removes it
            return
        if key != self.user_key and not key.startswith((DELIVERY_PREFIX, PENDING_PREFIX)):
            return  # another user's state, or figures
        try:
            data = orjson.loads(decode(record.value, key))
        except orjson.JSONDecodeError:
            return  # no state a worker could read either
        if key == self.user_key or owned_by(key[:1].decode(), data, self.user_id):
            self.values[key] = data

    def view(self, partition: int, end_offset: int) -> UserView:
        view = UserView(self.user_id, partition, end_offset)
        for key, data in sorted(self.values.items()):
            if data is None:
                continue
            if key == self.user_key:
                view.state = readable_user_state(data)
            elif key.startswith(DELIVERY_PREFIX):
                view.deliveries.append(readable_delivery(data))
            else:
                view.pending.append(readable_pending(data))
        view.deliveries.sort(key=lambda delivery: str(delivery["created_at"]))
        return view


async def show_user(settings: Settings, user_id: str) -> UserView:
    """Read the user's partition of the state changelog to its end; return their keys."""
    topic = settings.internal_topic(STATE_CHANGELOG)
    partition = user_partition(user_id, await partitions_of(settings, topic))
    tp = TopicPartition(topic, partition)
    consumer = AIOKafkaConsumer(
        **settings.kafka_client_options(),
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",  # what a worker's recovery would read
        auto_offset_reset="earliest",
    )
    latest = _Latest(user_id)
    try:
        await consumer.start()
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        while await consumer.position(tp) < end:
            batch = await consumer.getmany(tp, timeout_ms=FETCH_TIMEOUT_MS)
            for record in batch.get(tp, []):
                latest.add(record)
    finally:
        await consumer.stop()
    return latest.view(partition, end)


def render_user(view: UserView) -> str:
    """Return the text ``declic users show`` prints."""
    where = f"partition {view.partition} of the state changelog, up to offset {view.end_offset}"
    if view.empty:
        return f"Declic holds nothing about user {view.user_id} ({where}).\n"
    lines = [f"user {view.user_id} ({where})"]
    state = view.state or {}
    lines.append("profile:" if state.get("profile") else "profile: none")
    for name, entry in state.get("profile", {}).items():
        value = orjson.dumps(entry["value"]).decode()
        lines.append(f"  {name} = {value}  (set {entry['set_at']})")
    last = state.get("last_delivered", {})
    lines.append("last delivery per engagement:" if last else "last delivery per engagement: none")
    lines += [f"  {engagement_id}  {at}" for engagement_id, at in last.items()]
    if state.get("capped_delivery_times"):
        lines.append("deliveries counted by caps: " + ", ".join(state["capped_delivery_times"]))
    for name, times in state.get("counted_events", {}).items():
        lines.append(f"counted event {name!r}: {len(times)} (latest {times[-1]})")
    for watch in state.get("conversion_watches", []):
        lines.append(
            f"conversion watch: {watch['engagement_id']} ({watch['variant']}) "
            f"until {watch['expires_at']}"
        )
    lines.append(f"deliveries stored: {len(view.deliveries)}")
    for delivery in view.deliveries:
        seen = ", ".join(delivery["interactions_seen"]) or "no interaction"
        test = " (test)" if delivery["test"] else ""
        lines.append(
            f"  {delivery['created_at']}  {delivery['engagement_id']} "
            f"v{delivery['engagement_version']} {delivery['variant']}{test}  "
            f"{delivery['delivery_id']}  seen: {seen}"
        )
    lines.append(f"pending deliveries: {len(view.pending)}")
    for pending in view.pending:
        lines.append(
            f"  due {pending['due_at']}  {pending['engagement_id']} ({pending['variant']})  "
            f"{pending['delivery_id']}"
        )
    return "\n".join(lines) + "\n"
