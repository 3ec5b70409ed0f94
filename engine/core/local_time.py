"""Time zones and wall-clock time, for schedules read in the user's local time.

A wall-clock time is kept as "wall ms": the epoch ms that time would have if the zone were
UTC. Comparing wall ms needs no conversion back to instants, so a DST gap or overlap only
shifts which instants match a boundary, never breaks the comparison.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Final
from zoneinfo import ZoneInfo

MS_PER_DAY: Final = 86_400_000
_ONE_MS: Final = timedelta(milliseconds=1)
TIMEZONE_ATTRIBUTE: Final = "timezone"
# Zone names (and unknown names, as None) remembered: names come from events and profiles.
ZONE_CACHE_SIZE: Final = 1024
# Longer than any IANA name (the longest is about 32 characters): unknown, never cached.
MAX_ZONE_NAME_LENGTH: Final = 64


def load_zone(name: str) -> ZoneInfo | None:
    """Return the IANA zone ``name``, or None when it is unknown or malformed."""
    if len(name) > MAX_ZONE_NAME_LENGTH:
        return None
    return _load_zone(name)


@lru_cache(maxsize=ZONE_CACHE_SIZE)
def _load_zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError, OSError):  # not found, not a key, a directory...
        return None


def _named_zone(name: object) -> ZoneInfo | None:
    return load_zone(name) if isinstance(name, str) else None


def user_zone(
    device: Mapping[str, object] | None, profile: Mapping[str, object], default: ZoneInfo
) -> ZoneInfo:
    """Return the event's ``device.timezone``, else the profile's, else ``default``.

    An unknown zone name falls through to the next source, like a missing one.
    """
    if device is not None:
        zone = _named_zone(device.get(TIMEZONE_ATTRIBUTE))
        if zone is not None:
            return zone
    zone = _named_zone(profile.get(TIMEZONE_ATTRIBUTE))
    return default if zone is None else zone


def wall_clock_ms(timestamp_ms: int, zone: ZoneInfo) -> int:
    """Return the wall ms of instant ``timestamp_ms`` in ``zone``."""
    try:
        offset = datetime.fromtimestamp(timestamp_ms // 1000, zone).utcoffset()
    except (OverflowError, ValueError, OSError):  # at the edges of years 1 and 9999
        return timestamp_ms
    return timestamp_ms if offset is None else timestamp_ms + offset // _ONE_MS
