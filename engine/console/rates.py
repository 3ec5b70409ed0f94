"""Rates with their uncertainty, and which variant leads, in plain words.

A rate is successes over trials with a 95% Wilson score interval (it stays within 0..1
and behaves at 0 and at small counts, where the normal approximation does not). Per
variant (its counters: deliveries, impressions, clicks, conversions):

- impression rate = impressions / deliveries (how many deliveries the app showed);
- click rate = clicks / impressions;
- conversion rate = conversions / deliveries: per user reached, as the control group's
  is conversions / users (users it held out, shown nothing), so the two compare.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

# The 97.5th percentile of the standard normal: a two-sided 95% interval.
Z_95: Final = 1.959963984540054
SIGNIFICANCE: Final = 0.05
NO_VALUE: Final = "—"
_TO: Final = "\u2013"  # an en dash between the bounds of an interval
# metric -> (counter divided, name of the rate)
METRICS: Final[Mapping[str, tuple[str, str]]] = {
    "impressions": ("deliveries", "impression rate"),
    "clicks": ("impressions", "click rate"),
    "conversions": ("deliveries", "conversion rate"),
}
CONTROL: Final = "control"


@dataclass(frozen=True, slots=True)
class Rate:
    """``successes`` out of ``trials``; value and interval are None without trials.

    Successes above trials (a click counted before its impression) count as ``trials``.
    """

    successes: int
    trials: int

    def __post_init__(self) -> None:
        if self.successes < 0 or self.trials < 0:
            raise ValueError(f"counts must be >= 0, got {self.successes}/{self.trials}")

    @property
    def value(self) -> float | None:
        return min(self.successes, self.trials) / self.trials if self.trials else None

    @property
    def low(self) -> float | None:
        return self._wilson()[0] if self.trials else None

    @property
    def high(self) -> float | None:
        return self._wilson()[1] if self.trials else None

    def _wilson(self) -> tuple[float, float]:
        n = self.trials
        p = min(self.successes, n) / n
        z2 = Z_95 * Z_95
        center = (p + z2 / (2 * n)) / (1 + z2 / n)
        half = Z_95 / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
        return max(0.0, center - half), min(1.0, center + half)


def _percent(value: float) -> str:
    return f"{value * 100:.1f}%"


def format_rate(rate: Rate) -> str:
    """Return "12.4% (10.1-15.0%)" (an en dash between the bounds), or "—" without trials."""
    if rate.value is None or rate.low is None or rate.high is None:
        return NO_VALUE
    return f"{_percent(rate.value)} ({rate.low * 100:.1f}{_TO}{_percent(rate.high)})"


def two_proportion_p_value(first: Rate, second: Rate) -> float:
    """Return the two-sided p-value of a pooled two-proportion z-test (1.0 when either
    has no trials, or when the pooled rate is 0 or 1: no difference to see)."""
    if not first.trials or not second.trials:
        return 1.0
    x1, x2 = min(first.successes, first.trials), min(second.successes, second.trials)
    n1, n2 = first.trials, second.trials
    pooled = (x1 + x2) / (n1 + n2)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if spread == 0:
        return 1.0
    z = (x1 / n1 - x2 / n2) / spread
    return math.erfc(abs(z) / math.sqrt(2))


def _p_text(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.2g}"


def _who(name: str) -> str:
    return "the control group" if name == CONTROL else f"variant {name}"


def compare_variants(
    variants: Mapping[str, Mapping[str, int]], control: Mapping[str, int] | None, metric: str
) -> str:
    """Say in one sentence which variant leads on ``metric`` (impressions, clicks or
    conversions: see the module's rates), against the runner-up, and whether the
    difference is significant at 95% (two-proportion z-test). For conversions, a
    ``control`` with ``users`` and ``conversions`` competes as "the control group"."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    over, rate_name = METRICS[metric]
    rates = {
        name: Rate(counts.get(metric, 0), counts.get(over, 0)) for name, counts in variants.items()
    }
    if control is not None and metric == "conversions":
        rates[CONTROL] = Rate(control.get("conversions", 0), control.get("users", 0))
    measured = [(rate.value, name, rate) for name, rate in rates.items() if rate.value is not None]
    if not measured:
        return f"no data yet on {rate_name}"
    # Highest rate first; equal rates in name order, so the sentence does not flicker.
    ranked = sorted(measured, key=lambda item: (-(item[0] or 0.0), item[1]))
    _, best, best_rate = ranked[0]
    if len(ranked) == 1:
        return (
            f"{_who(best)} has {rate_name} {format_rate(best_rate)}; "
            "no other variant has data to compare with yet"
        )
    _, second, second_rate = ranked[1]
    p = two_proportion_p_value(best_rate, second_rate)
    lead = (
        f"{_who(best)} leads on {rate_name}: {format_rate(best_rate)} against "
        f"{format_rate(second_rate)} for {_who(second)}"
    )
    if p < SIGNIFICANCE:
        return f"{lead}; the difference is significant at 95% (two-proportion z-test, {_p_text(p)})"
    return f"not yet significant: {lead} (two-proportion z-test, {_p_text(p)}); needs more data"
