"""Delayed deliveries of one partition, ordered by due time.

Each pending delivery has a key in the partition store, so it is committed and
recovered with the rest of the state; a heap in memory says which is due next.
Removals are lazy: a popped entry whose key is gone was cancelled.
"""

from __future__ import annotations

import heapq
import logging

import orjson

from engine.core.pending import PendingDelivery
from engine.state.keys import PENDING_PREFIX
from engine.state.store import PartitionStore

log = logging.getLogger(__name__)


def _key(pending: PendingDelivery) -> bytes:
    # Zero-padded due time first: the store iterates keys in due order.
    return PENDING_PREFIX + f"{pending.due_at_ms:015d}:{pending.delivery_id}".encode()


class DueIndex:
    """Pending deliveries by due time, backed by the partition store."""

    def __init__(self, store: PartitionStore) -> None:
        self._store = store
        self._heap: list[tuple[int, bytes]] = []
        self._live: set[bytes] = set()
        self.reload()

    def reload(self) -> None:
        """Rebuild the heap from the committed store (at open, and after a rollback)."""
        self._heap = []
        self._live = set()
        for key, value in self._store.items(PENDING_PREFIX):
            pending = _read(key, value)
            if pending is not None:
                self._heap.append((pending.due_at_ms, key))
                self._live.add(key)
        heapq.heapify(self._heap)

    def __len__(self) -> int:
        return len(self._live)

    def add(self, pending: PendingDelivery) -> None:
        """Index a new pending delivery."""
        key = _key(pending)
        self._store.put(key, orjson.dumps(pending.to_json_dict()))
        heapq.heappush(self._heap, (pending.due_at_ms, key))
        self._live.add(key)

    def remove(self, pending: PendingDelivery) -> None:
        """Drop a pending delivery (it was cancelled)."""
        key = _key(pending)
        self._store.delete(key)
        self._live.discard(key)

    def next_due_ms(self) -> int | None:
        """Return the due time of the earliest live entry, if any."""
        while self._heap and self._heap[0][1] not in self._live:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now_ms: int) -> list[PendingDelivery]:
        """Remove and return every pending delivery due at or before now_ms."""
        due: list[PendingDelivery] = []
        while (next_ms := self.next_due_ms()) is not None and next_ms <= now_ms:
            _, key = heapq.heappop(self._heap)
            raw = self._store.get(key)
            self._live.discard(key)
            if raw is None:
                continue
            pending = _read(key, raw)
            if pending is not None:
                self._store.delete(key)
                due.append(pending)
        return due


def _read(key: bytes, value: bytes | memoryview) -> PendingDelivery | None:
    """Decode a stored pending delivery; log and skip one that cannot be read.

    It stays stored (a later version may read it), but never stops the others.
    """
    try:
        return PendingDelivery.from_json_dict(orjson.loads(value))
    except Exception as error:
        log.error("pending delivery %r cannot be read, skipped: %r", key, error)
        return None
