"""Summarise an engagement's counters: segment, trigger frequency, funnel and variants.

The counters come summed over partitions and cumulative since ``since_ms``; see
``engine.diagnose.report`` for their shape. Missing or malformed counts read as 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from engine.core.json_values import is_integer
from engine.core.outcomes import Outcome

HOUR_MS: Final = 3_600_000
# Every outcome, in the order the matcher checks them.
OUTCOME_ORDER: Final = tuple(outcome.value for outcome in Outcome)


def _count(value: object) -> int:
    """Read a counter: a non-negative integer, anything else 0."""
    if not is_integer(value):
        return 0
    return max(value, 0)


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def ratio(part: int, whole: int) -> float | None:
    """Return ``part / whole``, or None when ``whole`` is 0."""
    return part / whole if whole > 0 else None


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


@dataclass(frozen=True, slots=True)
class SegmentFigures:
    """How many known users the audience filters and the percentage keep."""

    known_users: int
    audience_users: int
    kept_users: int
    computed_at_ms: int | None

    @property
    def audience_share(self) -> float | None:
        """Return the share of known users the audience filters keep."""
        return ratio(self.audience_users, self.known_users)

    @property
    def kept_share(self) -> float | None:
        """Return the share of audience users ``audience.percent`` keeps."""
        return ratio(self.kept_users, self.audience_users)

    def to_json_dict(self) -> dict[str, Any]:
        """Return the figures as JSON-ready values."""
        return {
            "known_users": self.known_users,
            "audience_users": self.audience_users,
            "audience_share": _rounded(self.audience_share),
            "kept_users": self.kept_users,
            "kept_share": _rounded(self.kept_share),
            "computed_at_ms": self.computed_at_ms,
        }


@dataclass(frozen=True, slots=True)
class TriggerFrequency:
    """Trigger events that passed the trigger's filters, by epoch hour.

    A window (24 h, 7 days) holds the hours that start inside it; ``hours_*`` is the time
    they cover since counting began, so averages stay fair when counting began recently.
    ``silent_hours_24h`` counts the complete, fully counted hours of the 24 h window
    without a single event.
    """

    hourly: tuple[tuple[int, int], ...]  # (epoch hour, events), ascending
    last_24h: int
    last_7d: int
    hours_24h: float
    hours_7d: float
    silent_hours_24h: int

    @property
    def total(self) -> int:
        """Return every counted event."""
        return sum(count for _, count in self.hourly)

    @property
    def per_hour_24h(self) -> float:
        """Return the average events an hour over the 24 h window."""
        return self.last_24h / self.hours_24h if self.hours_24h > 0 else 0.0

    @property
    def per_hour_7d(self) -> float:
        """Return the average events an hour over the 7-day window."""
        return self.last_7d / self.hours_7d if self.hours_7d > 0 else 0.0

    def events_between(self, start_ms: float, end_ms: float) -> int:
        """Return the events of the hours starting in ``[start_ms, end_ms)``."""
        return sum(count for hour, count in self.hourly if start_ms <= hour * HOUR_MS < end_ms)

    def to_json_dict(self) -> dict[str, Any]:
        """Return the figures as JSON-ready values (without the hourly counts)."""
        return {
            "total": self.total,
            "last_24h": self.last_24h,
            "per_hour_24h": round(self.per_hour_24h, 2),
            "silent_hours_24h": self.silent_hours_24h,
            "last_7d": self.last_7d,
            "per_hour_7d": round(self.per_hour_7d, 2),
            "hours_counted_24h": round(self.hours_24h, 2),
            "hours_counted_7d": round(self.hours_7d, 2),
        }


@dataclass(frozen=True, slots=True)
class FunnelStep:
    """One outcome: its evaluations and their share of all evaluations."""

    outcome: str
    count: int
    share: float

    def to_json_dict(self) -> dict[str, Any]:
        """Return the step as JSON-ready values."""
        return {"outcome": self.outcome, "count": self.count, "share": round(self.share, 4)}


@dataclass(frozen=True, slots=True)
class VariantFigures:
    """What one variant (or all of them) produced, test sends excluded."""

    variant: str
    deliveries: int
    impressions: int
    clicks: int
    conversions: int

    @property
    def impression_ratio(self) -> float | None:
        """Return impressions / deliveries, or None before the first delivery."""
        return ratio(self.impressions, self.deliveries)

    def to_json_dict(self) -> dict[str, Any]:
        """Return the figures as JSON-ready values."""
        return {
            "variant": self.variant,
            "deliveries": self.deliveries,
            "impressions": self.impressions,
            "clicks": self.clicks,
            "conversions": self.conversions,
            "impression_ratio": _rounded(self.impression_ratio),
            "click_ratio": _rounded(ratio(self.clicks, self.impressions)),
            "conversion_ratio": _rounded(ratio(self.conversions, self.deliveries)),
        }


@dataclass(frozen=True, slots=True)
class Figures:
    """Everything counted about one engagement."""

    since_ms: int | None
    segment: SegmentFigures | None
    trigger: TriggerFrequency
    funnel: tuple[FunnelStep, ...]
    variants: tuple[VariantFigures, ...]
    control_users: int
    control_conversions: int
    unseen_deliveries: int
    unseen_after_seconds: int | None

    @property
    def evaluations(self) -> int:
        """Return every evaluation, whatever its outcome."""
        return sum(step.count for step in self.funnel)

    def outcome(self, name: str) -> int:
        """Return the evaluations that ended with outcome ``name``."""
        return next((step.count for step in self.funnel if step.outcome == name), 0)

    def share(self, name: str) -> float:
        """Return the share of all evaluations that ended with outcome ``name``."""
        return ratio(self.outcome(name), self.evaluations) or 0.0

    @property
    def totals(self) -> VariantFigures:
        """Return the sums over variants."""
        return VariantFigures(
            "total",
            sum(item.deliveries for item in self.variants),
            sum(item.impressions for item in self.variants),
            sum(item.clicks for item in self.variants),
            sum(item.conversions for item in self.variants),
        )

    def to_json_dict(self) -> dict[str, Any]:
        """Return the figures as JSON-ready values."""
        return {
            "since_ms": self.since_ms,
            "segment": None if self.segment is None else self.segment.to_json_dict(),
            "trigger": self.trigger.to_json_dict(),
            "evaluations": self.evaluations,
            "funnel": [step.to_json_dict() for step in self.funnel],
            "variants": [item.to_json_dict() for item in self.variants],
            "totals": self.totals.to_json_dict(),
            "control": {
                "users": self.control_users,
                "conversions": self.control_conversions,
                "conversion_ratio": _rounded(ratio(self.control_conversions, self.control_users)),
            },
            "unseen_deliveries": {
                "older_than_seconds": self.unseen_after_seconds,
                "count": self.unseen_deliveries,
            },
        }


def _trigger(hours: Mapping[str, Any], since_ms: int | None, now_ms: int) -> TriggerFrequency:
    counts: dict[int, int] = {}
    for key, value in hours.items():
        try:
            hour = int(key)
        except ValueError:
            continue
        counts[hour] = counts.get(hour, 0) + _count(value)
    counted_from = since_ms if since_ms is not None else -(2**63)

    last = now_ms // HOUR_MS

    def window(hours_back: int) -> tuple[int, int, float]:
        first = -((hours_back * HOUR_MS - now_ms) // HOUR_MS)  # first hour starting inside
        events = sum(count for hour, count in counts.items() if first <= hour <= last)
        start_ms = max(first * HOUR_MS, counted_from)
        return first, events, max(0.0, (now_ms - start_ms) / HOUR_MS)

    first_of_day, last_24h, hours_24h = window(24)
    _, last_7d, hours_7d = window(168)
    silent = sum(
        1
        for hour in range(first_of_day, last)  # the complete hours
        if hour * HOUR_MS >= counted_from and counts.get(hour, 0) == 0
    )
    hourly = tuple(sorted((hour, count) for hour, count in counts.items() if count))
    return TriggerFrequency(hourly, last_24h, last_7d, hours_24h, hours_7d, silent)


def _funnel(outcomes: Mapping[str, Any]) -> tuple[FunnelStep, ...]:
    names = [*OUTCOME_ORDER, *sorted(set(outcomes) - set(OUTCOME_ORDER))]
    counts = [(name, _count(outcomes.get(name))) for name in names]
    total = sum(count for _, count in counts)
    return tuple(FunnelStep(name, count, ratio(count, total) or 0.0) for name, count in counts)


def _segment(value: object) -> SegmentFigures | None:
    if not isinstance(value, Mapping):
        return None
    computed_at = value.get("computed_at_ms")
    return SegmentFigures(
        _count(value.get("known_users")),
        _count(value.get("audience_users")),
        _count(value.get("kept_users")),
        computed_at if isinstance(computed_at, int) else None,
    )


def compute_figures(stats: Mapping[str, Any], now_ms: int) -> Figures:
    """Summarise the summed counters ``stats`` as of ``now_ms``."""
    since = stats.get("since_ms")
    since_ms = since if isinstance(since, int) and not isinstance(since, bool) else None
    variants = tuple(
        VariantFigures(
            str(name),
            _count(_mapping(item).get("deliveries")),
            _count(_mapping(item).get("impressions")),
            _count(_mapping(item).get("clicks")),
            _count(_mapping(item).get("conversions")),
        )
        for name, item in sorted(_mapping(stats.get("variants")).items())
    )
    control = _mapping(stats.get("control"))
    unseen = _mapping(stats.get("unseen_deliveries"))
    unseen_after = unseen.get("older_than_seconds")
    return Figures(
        since_ms=since_ms,
        segment=_segment(stats.get("segment")),
        trigger=_trigger(_mapping(stats.get("trigger_hours")), since_ms, now_ms),
        funnel=_funnel(_mapping(stats.get("outcomes"))),
        variants=variants,
        control_users=_count(control.get("users")),
        control_conversions=_count(control.get("conversions")),
        unseen_deliveries=_count(unseen.get("count")),
        unseen_after_seconds=unseen_after if isinstance(unseen_after, int) else None,
    )
