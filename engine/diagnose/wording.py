"""Write numbers, shares, dates and durations the way a person reads them."""

from __future__ import annotations

import json
import math
from typing import Final

from engine.core.timestamps import format_timestamp

_VALUE_CHARS: Final = 48


def count_text(count: int) -> str:
    """Return ``count`` with thousands separators: 4210 -> ``4,210``."""
    return f"{count:,}"


def percent_text(share: float | None) -> str:
    """Return a share (0..1) as a whole percentage, ``<1%`` or ``>99%`` near the edges."""
    if share is None:
        return "n/a"
    percent = share * 100
    if percent <= 0:
        return "0%"
    if percent < 1:
        return "<1%"
    if 99 < percent < 100:
        return ">99%"
    return f"{whole(percent):,}%"


def whole(value: float) -> int:
    """Round to the nearest integer, halves up (62.5 -> 63), unlike ``round``."""
    return math.floor(value + 0.5)


def rate_text(rate: float) -> str:
    """Return a rate with one decimal below 10 (``0.5``), else a whole number (``1,234``)."""
    if rate < 10:
        text = f"{rate:.1f}"
        return text[:-2] if text.endswith(".0") else text
    return f"{whole(rate):,}"


def date_text(ms: int) -> str:
    """Return the UTC date of epoch milliseconds ``ms``: ``2026-11-20``."""
    return format_timestamp(ms)[:10]


def time_text(ms: int) -> str:
    """Return epoch milliseconds ``ms`` to the minute, in UTC: ``2026-11-20 14:02 UTC``."""
    return format_timestamp(ms)[:16].replace("T", " ") + " UTC"


def duration_text(seconds: float) -> str:
    """Return a duration in its largest whole unit that fits: ``45 s``, ``30 min``, ``2 days``."""
    for unit_seconds, unit in ((86_400, "day"), (3_600, "h"), (60, "min")):
        if seconds >= unit_seconds and seconds % unit_seconds == 0:
            amount = int(seconds // unit_seconds)
            plural = "s" if unit == "day" and amount != 1 else ""
            return f"{amount:,} {unit}{plural}"
    return f"{seconds:g} s"


def elapsed_text(ms: int) -> str:
    """Return a time elapsed, rounded down to its largest unit: ``5 min``, ``3 h``, ``45 s``."""
    seconds = max(0, ms // 1000)
    for unit_seconds in (86_400, 3_600, 60):
        if seconds >= unit_seconds:
            return duration_text(seconds - seconds % unit_seconds)
    return duration_text(seconds)


def value_text(value: object) -> str:
    """Return a field value as compact JSON (``none`` for null), shortened when long."""
    if value is None:
        return "none"
    text = json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    if len(text) > _VALUE_CHARS:
        return text[: _VALUE_CHARS - 1] + "…"
    return text
