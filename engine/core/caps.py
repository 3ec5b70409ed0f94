"""Engine-wide frequency caps: at most ``max`` deliveries per user per ``per_seconds``.

Caps count real deliveries at their event time (the trigger time, or the due time of a
delayed delivery); control assignments, test sends and engagements that set
``ignore_frequency_caps`` never count. A delivery at exactly ``per_seconds`` before the
event no longer counts (the window is half-open, like re-eligibility). The user state keeps
only the ``max(cap.max)`` most recent delivery times, which is all a check can need, and a
cap's ``max`` is at most ``MAX_CAP_DELIVERIES``, which bounds them.
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from engine.core.durations import MAX_DURATION_SECONDS
from engine.core.json_values import is_integer

# The largest ``max`` of a cap: the delivery times a user keeps for the caps.
MAX_CAP_DELIVERIES: Final = 100


@dataclass(frozen=True, slots=True)
class FrequencyCap:
    """At most ``max`` deliveries in any ``per_seconds`` window, per user."""

    max: int
    per_seconds: int
    per_ms: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("max", "per_seconds"):
            value = getattr(self, name)
            if not is_integer(value) or value < 1:
                raise ValueError(f"frequency cap {name} must be an integer >= 1, got {value!r}")
        if self.max > MAX_CAP_DELIVERIES:
            # Each user keeps the last `max` delivery times: a bound on the state too.
            raise ValueError(f"frequency cap max must be <= {MAX_CAP_DELIVERIES}, got {self.max!r}")
        if self.per_seconds > MAX_DURATION_SECONDS:
            # The same bound as every engagement duration: a longer window means nothing.
            raise ValueError(
                f"frequency cap per_seconds must be <= {MAX_DURATION_SECONDS} (10 years),"
                f" got {self.per_seconds!r}"
            )
        object.__setattr__(self, "per_ms", self.per_seconds * 1000)


DEFAULT_FREQUENCY_CAPS: Final = (FrequencyCap(1, 30), FrequencyCap(3, 86_400))


def history_limit(caps: Iterable[FrequencyCap]) -> int:
    """Return how many recent delivery times the caps need: the largest ``max``."""
    return max((cap.max for cap in caps), default=0)


def is_capped(times: list[int], timestamp_ms: int, caps: tuple[FrequencyCap, ...]) -> bool:
    """Return whether one more delivery at ``timestamp_ms`` would break a cap.

    ``times`` is sorted ascending: the ``max``-th most recent time is inside the window
    exactly when the window already holds ``max`` deliveries.
    """
    count = len(times)
    for cap in caps:
        if count >= cap.max and times[count - cap.max] > timestamp_ms - cap.per_ms:
            return True
    return False


def record_delivery_time(times: list[int], timestamp_ms: int, limit: int) -> None:
    """Insert ``timestamp_ms`` in order and keep only the ``limit`` most recent times."""
    insort(times, timestamp_ms)
    excess = len(times) - limit
    if excess > 0:
        del times[:excess]
