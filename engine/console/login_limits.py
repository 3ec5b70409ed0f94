"""Failed logins, counted per user name and per client address, to slow password guessing."""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable


class LoginLimiter:
    """At most ``per_user`` failed logins per user name and ``per_address`` per client
    address in ``window_seconds``; each table keeps at most ``max_keys`` (the least
    recent are forgotten)."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        per_user: int = 5,
        per_address: int = 20,
        window_seconds: float = 15 * 60,
        max_keys: int = 100_000,
    ) -> None:
        self.clock = clock
        self.per_user = per_user
        self.per_address = per_address
        self.window_seconds = window_seconds
        self.max_keys = max_keys
        self._users: OrderedDict[str, deque[float]] = OrderedDict()
        self._addresses: OrderedDict[str, deque[float]] = OrderedDict()

    def wait_seconds(self, address: str, username: str) -> float:
        """Return 0 if a login may be tried now, else the seconds to wait."""
        now = self.clock()
        return max(
            self._wait(self._users, username, self.per_user, now),
            self._wait(self._addresses, address, self.per_address, now),
        )

    def attempt(self, address: str, username: str) -> float:
        """Return the seconds to wait if a login may not be tried now; else 0, the attempt
        counted as failed until ``succeeded`` says otherwise.

        Counted before the password is checked (which takes a while, in a thread): logins
        sent at once are each counted, so a burst cannot pass the limit.
        """
        wait = self.wait_seconds(address, username)
        if wait <= 0:
            self.failed(address, username)
        return wait

    def failed(self, address: str, username: str) -> None:
        """Count a failed login."""
        now = self.clock()
        self._count(self._users, username, self.per_user, now)
        self._count(self._addresses, address, self.per_address, now)

    def succeeded(self, address: str, username: str) -> None:
        """Forget the user name's failures, and the address's count of this attempt."""
        self._users.pop(username, None)
        times = self._addresses.get(address)
        if times:
            times.pop()

    def _wait(
        self, table: OrderedDict[str, deque[float]], key: str, limit: int, now: float
    ) -> float:
        times = table.get(key)
        if times is None:
            return 0.0
        while times and times[0] <= now - self.window_seconds:
            times.popleft()
        if not times:
            del table[key]
            return 0.0
        if len(times) < limit:
            return 0.0
        return times[0] + self.window_seconds - now

    def _count(
        self, table: OrderedDict[str, deque[float]], key: str, limit: int, now: float
    ) -> None:
        times = table.pop(key, None)
        if times is None:
            times = deque(maxlen=limit)
        times.append(now)
        table[key] = times
        while len(table) > self.max_keys:
            table.popitem(last=False)
