"""Rate limits: a token bucket per key (a user, a client address), in bounded memory.

Each key gets ``rate`` requests per second, in bursts of up to ``BURST_SECONDS`` worth
(at least one request). Buckets are kept in least-recently-used order; past ``max_keys``
the least recent is forgotten (a forgotten key starts again with a full bucket, which a
key that recent would almost surely have). The clock is passed in, in seconds.
"""

from __future__ import annotations

import math
from collections import OrderedDict

BURST_SECONDS = 2.0
MAX_KEYS = 100_000


class RateLimiter:
    """Token buckets, one per key."""

    def __init__(self, rate: float, max_keys: int = MAX_KEYS) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.capacity = max(1.0, rate * BURST_SECONDS)
        self.max_keys = max_keys
        # key -> (tokens left, when counted)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str, now: float) -> float:
        """Take one request's token; return 0 if allowed, else the seconds to wait."""
        tokens, since = self._buckets.pop(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + max(0.0, now - since) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            wait = 0.0
        else:
            self._buckets[key] = (tokens, now)
            wait = (1.0 - tokens) / self.rate
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait


def retry_after(wait_seconds: float) -> str:
    """Return the Retry-After header's value: whole seconds, at least 1."""
    return str(max(1, math.ceil(wait_seconds)))
