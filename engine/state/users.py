"""Every key a partition store holds about one user, and their erasure.

A user has three kinds of keys (``engine.state.keys``): their state under ``u:`` + user
id (profile, last deliveries, capped delivery times, counted events, pending deliveries,
conversion watches), one delivery state per delivery under ``d:`` + delivery id, and
one entry per delayed delivery waiting under ``p:``. Delivery ids are hashes (see
``engine.core.deliveries``), so the user's ``d:`` and ``p:`` keys are found by reading
their values, which name the user. The ``s:`` figures count users per engagement and
name none: they are no user's.

A scan reads every delivery of the partition: a rare request (an erasure) pays it rather
than every delivery paying for an index by user.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import orjson

from engine.core.pending import PendingDelivery
from engine.core.user_requests import Removed, owned_by
from engine.state.format import Payload
from engine.state.keys import DELIVERY_PREFIX, PENDING_PREFIX, USER_PREFIX
from engine.state.store import PartitionStore

log = logging.getLogger(__name__)


@dataclass(slots=True)
class UserKeys:
    """The keys of one user in a store, by kind, with their payloads."""

    user: list[tuple[bytes, Payload]] = field(default_factory=list)
    deliveries: list[tuple[bytes, Payload]] = field(default_factory=list)
    pending: list[tuple[bytes, Payload]] = field(default_factory=list)

    def all_keys(self) -> list[bytes]:
        return [key for key, _ in (*self.user, *self.deliveries, *self.pending)]

    def removed(self) -> Removed:
        return Removed(len(self.user), len(self.deliveries), len(self.pending))

    def pending_deliveries(self) -> list[PendingDelivery]:
        """Return the pending deliveries, decoded (an unreadable one is left out)."""
        decoded = []
        for key, value in self.pending:
            try:
                decoded.append(PendingDelivery.from_json_dict(orjson.loads(value)))
            except Exception as error:  # its key is deleted all the same
                log.error("pending delivery %r cannot be read: %r", key, error)
        return decoded


def user_keys(store: PartitionStore, user_id: str) -> UserKeys:
    """Return every key of ``user_id`` in ``store``, staged writes included."""
    found = UserKeys()
    user_key = USER_PREFIX + user_id.encode()
    value = store.get(user_key)
    if value is not None:
        found.user.append((user_key, value))
    needle = _needle(user_id)
    for prefix, kind, into in (
        (DELIVERY_PREFIX, "d", found.deliveries),
        (PENDING_PREFIX, "p", found.pending),
    ):
        for key, payload in store.live_items(prefix):
            if needle is not None and needle not in bytes(payload):
                continue  # half the time of parsing every value
            if _owned(kind, key, payload, user_id):
                into.append((key, payload))
    return found


def erase_user(store: PartitionStore, user_id: str) -> UserKeys:
    """Stage the deletion of every key of ``user_id``: the next checkpoint writes a
    tombstone for each to the changelog. Return what was found."""
    found = user_keys(store, user_id)
    for key in found.all_keys():
        store.delete(key)
    return found


def _needle(user_id: str) -> bytes | None:
    """Return the bytes every JSON text holding ``user_id`` as a string contains: the id
    quoted, when no JSON encoder may escape it (printable ASCII without quote, backslash
    or slash); else None (every value is parsed)."""
    if user_id.isascii() and user_id.isprintable() and not {'"', "\\", "/"} & set(user_id):
        return b'"' + user_id.encode() + b'"'
    return None


def _owned(kind: str, key: bytes, payload: Payload, user_id: str) -> bool:
    try:
        return owned_by(kind, orjson.loads(payload), user_id)
    except orjson.JSONDecodeError:
        log.error("stored value %r is not JSON: no user's", key)
        return False
