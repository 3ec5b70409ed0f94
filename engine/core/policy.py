"""Engine-wide matching policy: event time tolerance, frequency caps, default time zone."""

from __future__ import annotations

from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from engine.core.caps import DEFAULT_FREQUENCY_CAPS, FrequencyCap, history_limit
from engine.core.local_time import load_zone
from engine.errors import ConfigError


@dataclass(frozen=True, slots=True)
class MatchPolicy:
    """How far from ``now_ms`` an event may be, the caps, and the fallback time zone."""

    max_age_ms: int = 3_600_000
    max_future_ms: int = 300_000
    frequency_caps: tuple[FrequencyCap, ...] = DEFAULT_FREQUENCY_CAPS
    default_timezone: str = "UTC"
    # Derived once, read on the hot path.
    cap_history: int = field(init=False, repr=False, compare=False)
    default_zone: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        caps = tuple(self.frequency_caps)
        if not all(isinstance(cap, FrequencyCap) for cap in caps):
            raise ConfigError("frequency_caps must hold FrequencyCap values")
        zone = load_zone(self.default_timezone)
        if zone is None:
            raise ConfigError(f"unknown default_timezone {self.default_timezone!r}")
        object.__setattr__(self, "frequency_caps", caps)
        object.__setattr__(self, "cap_history", history_limit(caps))
        object.__setattr__(self, "default_zone", zone)


DEFAULT_POLICY = MatchPolicy()
