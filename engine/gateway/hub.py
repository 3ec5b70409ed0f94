"""Ingestion and fan-out: what the Kafka follower feeds, and what streams and requests read.

This is the gateway's seam: the follower (``kafka_io.Follower``) calls ``add_delivery``
and ``mark_shown`` for every record it reads; the unit tests call them directly. Every
method runs on the event loop, none awaits: opening a stream (its replay computed and the
stream registered) is atomic with respect to ingestion, so a delivery is either in the
replay or pushed live, never both, never neither.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from engine.gateway.index import DeliveryIndex
from engine.gateway.metrics import GatewayMetrics
from engine.gateway.records import Delivery, Shown
from engine.gateway.rules import (
    Cursor,
    EventId,
    Held,
    is_offered,
    newest_event_id,
    pending,
    replay_after,
)

# Deliveries waiting to be written on one stream; a client too slow to take them is
# disconnected (its EventSource reconnects with Last-Event-ID and gets the replay).
STREAM_QUEUE_SIZE = 256
# Streams one user may hold open at once (a tab each).
MAX_STREAMS_PER_USER = 8


class Stream:
    """One connected SSE stream of one user."""

    __slots__ = ("cursor", "overflowed", "queue", "user_id")

    def __init__(self, user_id: str, cursor: Cursor) -> None:
        self.user_id = user_id
        self.cursor = cursor
        # None: the stream must end (gateway stopping, or the client too slow).
        self.queue: asyncio.Queue[Held | None] = asyncio.Queue(STREAM_QUEUE_SIZE + 1)
        self.overflowed = False

    def offer(self, held: Held) -> None:
        """Queue a delivery for sending, unless sent already; end a stream falling behind."""
        if self.overflowed or not self.cursor.admits(held):
            return
        if self.queue.qsize() >= STREAM_QUEUE_SIZE:
            self.overflowed = True
            self.queue.put_nowait(None)
            return
        self.cursor.advance(held)
        self.queue.put_nowait(held)

    def end(self) -> None:
        """Make the stream's handler return."""
        if not self.overflowed:
            self.overflowed = True
            self.queue.put_nowait(None)


@dataclass(frozen=True, slots=True)
class Messages:
    """What /messages answers for a user."""

    offered: list[Held]
    last_event_id: EventId | None


class Hub:
    """The index of recent deliveries, and the streams connected to the gateway."""

    def __init__(
        self, index: DeliveryIndex, metrics: GatewayMetrics, clock: Callable[[], int]
    ) -> None:
        self.index = index
        self.metrics = metrics
        self.clock = clock  # epoch milliseconds
        self.caught_up = asyncio.Event()  # set once the history of the topics is read
        self.closing = False
        self._streams: dict[str, set[Stream]] = {}
        self._places: dict[str, int] = {}  # streams admitted per user, open or opening

    @property
    def stream_count(self) -> int:
        return sum(len(streams) for streams in self._streams.values())

    def add_delivery(self, delivery: Delivery) -> None:
        """Hold a delivery read from the topic and push it to the user's streams."""
        if not self.index.add(delivery.user_id, delivery.held):
            return
        streams = self._streams.get(delivery.user_id)
        if streams:
            user = self.index.get(delivery.user_id)
            shown = user.shown if user is not None else {}
            if is_offered(delivery.held, shown, self.clock()):
                for stream in streams:
                    stream.offer(delivery.held)

    def mark_shown(self, shown: Shown) -> None:
        """Mark a delivery shown: it is offered no more, and not pushed."""
        self.index.mark_shown(shown.user_id, shown.delivery_id)

    def find(self, user_id: str, delivery_id: str) -> Held | None:
        """Return a delivery of this user the gateway holds, None if it holds none."""
        user = self.index.get(user_id)
        return user.find(delivery_id) if user is not None else None

    def messages(self, user_id: str, limit: int) -> Messages:
        """Return the user's offered deliveries, newest first, and the newest event id."""
        user = self.index.get(user_id)
        if user is None:
            return Messages([], None)
        offered = pending(user.held, user.shown, self.clock(), limit)
        return Messages(offered, newest_event_id(user.held))

    def open(self, user_id: str, last_event_id: EventId | None) -> tuple[Stream, list[Held]]:
        """Register a stream for a user; return it with the deliveries to replay first
        (those after ``last_event_id``; none without one)."""
        cursor = Cursor(last_event_id)
        replay: list[Held] = []
        user = self.index.get(user_id)
        if last_event_id is not None and user is not None:
            replay = replay_after(user.held, last_event_id, user.shown, self.clock())
            for held in replay:
                cursor.advance(held)
        stream = Stream(user_id, cursor)
        self._streams.setdefault(user_id, set()).add(stream)
        return stream, replay

    def admit(self, user_id: str) -> bool:
        """Take one of the user's MAX_STREAMS_PER_USER places for a stream about to open;
        return False when all are taken. ``release`` gives it back."""
        taken = self._places.get(user_id, 0)
        if taken >= MAX_STREAMS_PER_USER:
            return False
        self._places[user_id] = taken + 1
        return True

    def release(self, user_id: str) -> None:
        """Give back a place ``admit`` took."""
        left = self._places.get(user_id, 0) - 1
        if left > 0:
            self._places[user_id] = left
        else:
            self._places.pop(user_id, None)

    def streams_of(self, user_id: str) -> int:
        """Return how many streams a user holds open (registered: pushed to)."""
        return len(self._streams.get(user_id, ()))

    def close(self, stream: Stream) -> None:
        """Unregister a stream."""
        streams = self._streams.get(stream.user_id)
        if streams is not None:
            streams.discard(stream)
            if not streams:
                del self._streams[stream.user_id]

    def close_all(self) -> None:
        """End every stream: the gateway is stopping."""
        self.closing = True
        for streams in self._streams.values():
            for stream in streams:
                stream.end()

    def update_gauges(self) -> None:
        """Set the gauges of what is held (after each batch of records)."""
        self.metrics.users_held.set(len(self.index))
        self.metrics.deliveries_held.set(self.index.deliveries)
