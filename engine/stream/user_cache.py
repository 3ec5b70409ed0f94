"""The decoded user states of one partition: read once, changed in memory, staged at need."""

from __future__ import annotations

import logging

import orjson

from engine.core.state import UserState
from engine.errors import InvalidRecord
from engine.state.keys import USER_PREFIX
from engine.state.store import PartitionStore
from engine.stats.segments import SegmentCounts, stored_attributes

log = logging.getLogger(__name__)

# Decoded user states kept in memory: past this the cache is dropped whole, at a checkpoint
# or, when that many users are met between two, at once (the changed ones staged first).
USER_CACHE_LIMIT = 50_000


class UserCache:
    """Users read from a partition's store, with those changed since they were staged.

    Every change of a stored user's attributes, and every new user, is told to the
    engagement figures (``segments``) as it is staged.
    """

    def __init__(
        self, partition: int, store: PartitionStore, segments: SegmentCounts, max_bytes: int
    ) -> None:
        self.partition = partition
        self.store = store
        self.segments = segments
        self.max_bytes = max_bytes
        self._users: dict[str, UserState] = {}
        self._dirty: set[str] = set()
        # Cached users not stored yet: once staged, the engagement figures count them.
        self._new: set[str] = set()

    def __len__(self) -> int:
        return len(self._users)

    def get(self, user_id: str) -> UserState:
        """Return the user's state, read from the store (or new) the first time."""
        user = self._users.get(user_id)
        if user is None:
            if len(self._users) >= USER_CACHE_LIMIT:
                self.stage()  # the changed users are written before they are dropped
                self.clear()
            raw = self.store.get(USER_PREFIX + user_id.encode())
            if raw is None:
                user = UserState()
                self._new.add(user_id)
            else:
                user = UserState.from_json_dict(orjson.loads(raw))
            self._users[user_id] = user
        return user

    def changed(self, user_id: str) -> None:
        """Note that the cached state of ``user_id`` changed: it is staged next time."""
        self._dirty.add(user_id)

    def stage(self) -> None:
        """Stage every changed user state for the coming checkpoint.

        A state that cannot be encoded (or is larger than a record may be) is not staged:
        the user keeps their last staged or committed state, and the error is logged.
        """
        for user_id in self._dirty:
            user = self._users[user_id]
            try:
                value = orjson.dumps(user.to_json_dict())
                if len(value) > self.max_bytes:
                    raise InvalidRecord(
                        "invalid_state", f"state of {len(value)} bytes over max_record_bytes"
                    )
            except Exception as error:
                log.error(
                    "partition %d: state of user %r not saved, back to its last saved one: %r",
                    self.partition,
                    user_id,
                    error,
                )
                del self._users[user_id]
                continue
            key = USER_PREFIX + user_id.encode()
            # Both checked, always: taking the flag clears it.
            if user.take_attributes_changed() | (user_id in self._new):
                self._new.discard(user_id)
                self.segments.user_written(
                    user_id.encode(), stored_attributes(self.store.get(key)), dict(user.attributes)
                )
            self.store.put(key, value)
        self._dirty.clear()

    def forget(self, user_id: str) -> None:
        """Drop ``user_id`` (being erased): from the cache, and from the figures if stored.

        Call after ``stage`` and before the deletion is staged.
        """
        self._users.pop(user_id, None)
        self._dirty.discard(user_id)
        self._new.discard(user_id)
        before = stored_attributes(self.store.get(USER_PREFIX + user_id.encode()))
        if before is not None:
            self.segments.user_written(user_id.encode(), before, None)

    def clear_if_full(self) -> None:
        """Drop every cached user once the cache is full and none has changes to stage."""
        if len(self._users) >= USER_CACHE_LIMIT and not self._dirty:
            self.clear()

    def clear(self) -> None:
        """Drop every cached user, changed or not (staged ones stay staged)."""
        self._users.clear()
        self._dirty.clear()
        self._new.clear()
