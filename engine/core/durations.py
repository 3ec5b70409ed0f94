"""The bound on every duration an engagement or a frequency cap can set.

``MAX_DURATION_SECONDS`` (10 years of 365 days) keeps every due, expiry and window time
far inside the epoch-ms range ``timestamps`` formats, and inside 64-bit integers once
stored. ``schemas/engagement.schema.json`` states the same number as ``maximum`` of each
duration field; a unit test holds the two equal.
"""

from __future__ import annotations

from typing import Final

from engine.core.json_values import is_integer
from engine.errors import InvalidRecord

MAX_DURATION_SECONDS: Final = 10 * 365 * 86_400  # 315,360,000
DURATION_RANGE: Final = f">= 1 and <= {MAX_DURATION_SECONDS} (10 years)"


def duration_seconds(value: object, field: str) -> int:
    """Return ``value``, an engagement duration in whole seconds, or raise naming ``field``."""
    if not is_integer(value) or not 1 <= value <= MAX_DURATION_SECONDS:
        raise InvalidRecord(
            "invalid_engagement", f"{field} must be an integer number of seconds {DURATION_RANGE}"
        )
    return value
