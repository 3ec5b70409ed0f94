"""The per-user index of recent deliveries and shown marks, bounded in every direction.

Per user: the ``max_messages`` newest deliveries (by creation time, then topic position;
an older one arriving when the user is full is not kept) and the delivery ids marked
shown (at most ``MARKS_PER_MESSAGE`` times ``max_messages``, oldest marks dropped first;
marks are kept for deliveries not read yet, since an impression can be read before its
delivery). Users: at most ``max_users``, the one least recently given a delivery or a
mark dropped first, with all it held. No Kafka, aiohttp or clock import.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict

from engine.gateway.rules import Held

# Shown marks kept per user, as a multiple of the deliveries kept.
MARKS_PER_MESSAGE = 4


class UserDeliveries:
    """One user's held deliveries (oldest first) and shown marks."""

    __slots__ = ("held", "shown")

    def __init__(self) -> None:
        self.held: list[Held] = []
        # An ordered set: the oldest mark is the first key.
        self.shown: dict[str, None] = {}

    def find(self, delivery_id: str) -> Held | None:
        """Return the held delivery of that id, None if not held."""
        return next((entry for entry in self.held if entry.delivery_id == delivery_id), None)


class DeliveryIndex:
    """Every user's recent deliveries and shown marks, within fixed bounds."""

    def __init__(self, max_messages: int, max_users: int) -> None:
        if max_messages < 1 or max_users < 1:
            raise ValueError("max_messages and max_users must be at least 1")
        self.max_messages = max_messages
        self.max_users = max_users
        self.max_marks = MARKS_PER_MESSAGE * max_messages
        self._users: OrderedDict[str, UserDeliveries] = OrderedDict()
        self.deliveries = 0  # held, all users together
        self.users_dropped = 0

    def __len__(self) -> int:
        return len(self._users)

    def get(self, user_id: str) -> UserDeliveries | None:
        """Return what is held for a user (without making it recent)."""
        return self._users.get(user_id)

    def add(self, user_id: str, held: Held) -> bool:
        """Hold a delivery; return False if it is not kept (the same delivery_id or event
        id is held already, or it is older than all ``max_messages`` the user has)."""
        user = self._touch(user_id)
        if any(
            entry.delivery_id == held.delivery_id or entry.event_id == held.event_id
            for entry in user.held
        ):
            return False
        keys = [entry.order for entry in user.held]
        position = bisect.bisect(keys, held.order)
        if len(user.held) >= self.max_messages:
            if position == 0:
                return False
            user.held.pop(0)
            self.deliveries -= 1
            position -= 1
        user.held.insert(position, held)
        self.deliveries += 1
        self._bound_users()
        return True

    def mark_shown(self, user_id: str, delivery_id: str) -> bool:
        """Mark a delivery shown; return whether it was not marked before."""
        user = self._touch(user_id)
        if delivery_id in user.shown:
            return False
        user.shown[delivery_id] = None
        if len(user.shown) > self.max_marks:
            del user.shown[next(iter(user.shown))]
        self._bound_users()
        return True

    def _touch(self, user_id: str) -> UserDeliveries:
        user = self._users.get(user_id)
        if user is None:
            user = self._users[user_id] = UserDeliveries()
        else:
            self._users.move_to_end(user_id)
        return user

    def _bound_users(self) -> None:
        while len(self._users) > self.max_users:
            _, dropped = self._users.popitem(last=False)
            self.deliveries -= len(dropped.held)
            self.users_dropped += 1
