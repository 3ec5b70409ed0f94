"""What the pages show, computed from records and figures: pure, no aiohttp, no clock."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from engine.diagnose.wording import duration_text
from engine.stats.counts import HOUR_MS, VARIANT_FIELDS

STATUSES: Final = ("draft", "active", "paused", "archived")
DAY_HOURS: Final = 24


@dataclass(frozen=True, slots=True)
class Activity:
    """One engagement's last 24 hours: totals and deliveries hour by hour, oldest first."""

    totals: dict[str, int]
    hourly: dict[str, list[int]]


def last_day(figures: Mapping[str, Any] | None, now_ms: int) -> Activity:
    """Return the activity of the 24 hours ending with the hour under way at ``now_ms``."""
    end = now_ms // HOUR_MS
    hours = range(end - DAY_HOURS + 1, end + 1)
    counted = (figures or {}).get("activity_hours") or {}
    hourly = {
        name: [int((counted.get(str(hour)) or {}).get(name, 0)) for hour in hours]
        for name in VARIANT_FIELDS
    }
    return Activity({name: sum(values) for name, values in hourly.items()}, hourly)


def trigger_text(engagement: Mapping[str, Any]) -> str:
    """Return ``session_start`` or ``custom: checkout (2 conditions), after 10 min``."""
    trigger = engagement["trigger"]
    text = str(trigger["event"])
    if trigger["event"] == "custom":
        text = f"custom: {trigger.get('name', '?')}"
    where = trigger.get("where") or []
    if where:
        text += f" ({len(where)} condition{'s' if len(where) > 1 else ''})"
    delay = trigger.get("delay_seconds")
    if delay:
        text += f", after {duration_text(int(delay))}"
    return text


def schedule_text(engagement: Mapping[str, Any]) -> str:
    """Return the schedule in words: ``from 2026-12-01 09:00 to ..., 08:00-20:00 local``."""
    schedule = engagement.get("schedule") or {}
    start, end = schedule.get("start"), schedule.get("end")
    parts = []
    if start is None and end is None:
        parts.append("always")
    if start is not None:
        parts.append(f"from {_when(start)}")
    if end is not None:
        parts.append(f"until {_when(end)}")
    hours = schedule.get("hours")
    if hours:
        parts.append(f"{hours['from']}-{hours['to']} daily")
    text = " ".join(parts)
    return text + (" (user's local time)" if schedule.get("local_time") else "")


def _when(value: object) -> str:
    # As written, offset and all: the engagement's own words, not a conversion of them.
    return str(value).replace("T", " ", 1)


def matches(record: Mapping[str, Any], status: str, query: str) -> bool:
    """Whether an engagement passes the list's filters (status, words of name or id)."""
    engagement = record["engagement"]
    if status and engagement["status"] != status:
        return False
    text = f"{engagement['name']} {engagement['id']}".casefold()
    return all(word in text for word in query.casefold().split())


def known_users(figures: Mapping[str, Mapping[str, Any]]) -> int | None:
    """Return the users the workers know, from any engagement's last segment measure."""
    counts = [
        int(segment.get("known_users", 0))
        for part in figures.values()
        if (segment := part.get("segment"))
    ]
    return max(counts) if counts else None


def audience_estimate(figures: Mapping[str, Any] | None, known: int | None, percent: float) -> str:
    """Return the estimated audience in words, from the engagement's segment if measured."""
    segment = (figures or {}).get("segment")
    if segment:
        audience = int(segment.get("audience_users", 0))
        users = int(segment.get("known_users", 0))
        kept = round(audience * percent / 100)
        return (
            f"{audience:,} of {users:,} known users match the filters as saved; at "
            f"{percent:g}% about {kept:,} would be reached"
        )
    if known is None:
        return "no user figures yet: the workers measure segments once they have users"
    return (
        f"{known:,} users known; at {percent:g}% about {round(known * percent / 100):,} before "
        "filters (the workers measure the filters once the engagement is saved)"
    )
