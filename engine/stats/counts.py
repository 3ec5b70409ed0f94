"""Per-engagement figures of one partition, and their sum over partitions.

Counts are folded in from each committed checkpoint's tally (never per event),
stored in the partition store when published, and published to the compacted
engagement-stats topic keyed by engagement and partition, so any number of
workers add up: the sum over partitions is the engagement's total.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

HOUR_MS = 3_600_000
KEPT_HOURS = 24 * 7
VARIANT_FIELDS = ("deliveries", "impressions", "clicks", "conversions")
# Activity (VARIANT_FIELDS by the hour the worker counted them) kept for the console's
# last-24-hours columns and trend: a day and the hour under way.
ACTIVITY_HOURS = 25


@dataclass(slots=True)
class EngagementCounts:
    """Cumulative figures of one engagement on one partition."""

    engagement_id: str
    since_ms: int
    outcomes: Counter[str] = field(default_factory=Counter)
    variants: dict[str, Counter[str]] = field(default_factory=dict)
    control_conversions: int = 0
    trigger_hours: Counter[int] = field(default_factory=Counter)
    segment: dict[str, int] | None = None
    unseen_deliveries: int = 0
    # Epoch hour of counting -> VARIANT_FIELDS over every variant (not the control's).
    activity_hours: dict[int, Counter[str]] = field(default_factory=dict)

    def variant(self, name: str) -> Counter[str]:
        """Return the counters of one variant."""
        counters = self.variants.get(name)
        if counters is None:
            counters = self.variants[name] = Counter()
        return counters

    def count_activity(self, now_ms: int, name: str, count: int) -> None:
        """Count ``count`` of ``name`` (one of VARIANT_FIELDS) in the hour of ``now_ms``."""
        if not count:
            return
        hour = now_ms // HOUR_MS
        counters = self.activity_hours.get(hour)
        if counters is None:
            counters = self.activity_hours[hour] = Counter()
        counters[name] += count

    def prune(self, now_ms: int) -> None:
        """Forget trigger hours older than a week, activity older than ACTIVITY_HOURS."""
        oldest = now_ms // HOUR_MS - KEPT_HOURS
        for hour in [hour for hour in self.trigger_hours if hour < oldest]:
            del self.trigger_hours[hour]
        oldest_activity = now_ms // HOUR_MS - ACTIVITY_HOURS + 1
        for hour in [hour for hour in self.activity_hours if hour < oldest_activity]:
            del self.activity_hours[hour]

    def to_json_dict(self) -> dict[str, Any]:
        """Return the figures in the published form."""
        return {
            "engagement_id": self.engagement_id,
            "since_ms": self.since_ms,
            "outcomes": dict(self.outcomes),
            "variants": {
                name: {key: counters[key] for key in VARIANT_FIELDS}
                for name, counters in self.variants.items()
            },
            "control": {
                "users": self.outcomes["control"],
                "conversions": self.control_conversions,
            },
            "trigger_hours": {str(hour): count for hour, count in self.trigger_hours.items()},
            "segment": self.segment,
            "unseen_deliveries": self.unseen_deliveries,
            "activity_hours": {
                str(hour): dict(counters) for hour, counters in self.activity_hours.items()
            },
        }

    @classmethod
    def from_json_dict(cls, data: dict[str, Any]) -> EngagementCounts:
        """Rebuild figures from their published form."""
        return cls(
            engagement_id=data["engagement_id"],
            since_ms=int(data["since_ms"]),
            outcomes=Counter(data.get("outcomes", {})),
            variants={name: Counter(values) for name, values in data.get("variants", {}).items()},
            control_conversions=int(data.get("control", {}).get("conversions", 0)),
            trigger_hours=Counter(
                {int(hour): count for hour, count in data.get("trigger_hours", {}).items()}
            ),
            segment=data.get("segment"),
            unseen_deliveries=int(data.get("unseen_deliveries", 0)),
            activity_hours={
                int(hour): Counter(counters)
                for hour, counters in data.get("activity_hours", {}).items()
            },
        )


def summed(engagement_id: str, parts: Iterable[dict[str, Any]], threshold_s: int) -> dict[str, Any]:
    """Return the sum of several partitions' published figures of one engagement."""
    total = EngagementCounts(engagement_id, since_ms=0)
    segment: Counter[str] = Counter()
    segment_times: list[int] = []
    since = []
    for part in parts:
        counts = EngagementCounts.from_json_dict(part)
        since.append(counts.since_ms)
        total.outcomes.update(counts.outcomes)
        for name, values in counts.variants.items():
            total.variant(name).update(values)
        total.control_conversions += counts.control_conversions
        total.trigger_hours.update(counts.trigger_hours)
        total.unseen_deliveries += counts.unseen_deliveries
        for hour, counters in counts.activity_hours.items():
            total.activity_hours.setdefault(hour, Counter()).update(counters)
        if counts.segment is not None:
            segment_times.append(counts.segment.pop("computed_at_ms", 0))
            segment.update(counts.segment)
    total.since_ms = min(since, default=0)
    document = total.to_json_dict()
    document["segment"] = (
        {**segment, "computed_at_ms": min(segment_times)} if segment_times else None
    )
    document["unseen_deliveries"] = {
        "older_than_seconds": threshold_s,
        "count": total.unseen_deliveries,
    }
    return document
