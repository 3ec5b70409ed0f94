"""Name the causes of missing impressions, each with the impressions it plausibly cost.

``r`` below is the observed impression ratio (impressions / deliveries, at most 1), or 1
before the first delivery so causes still rank. Estimates, in impressions:

* an outcome (``outside_schedule``, ``audience`` for ``audience_miss``, ``sampled_out``,
  ``not_re_eligible``, ``frequency_capped``, ``lower_priority``, ``control``,
  ``filter_miss``, ``stale``, ``cancelled``, ``expired``, ``inactive``): the evaluations
  it stopped x r, less those already blamed on a change after launch. This is an upper
  bound: it assumes each stopped evaluation would have passed the later checks.
* ``not_logging_impressions``: the deliveries lacking an impression, the larger of
  deliveries - impressions and the deliveries older than the threshold never seen.
  When no impression is logged at all, r is 0 and every other cause explains 0: nothing
  else matters until the app logs impressions.
* ``rare_trigger`` (fewer than ``RARE_EVENTS_PER_DAY`` trigger events projected over
  24 h): the events missing against that reference, over the last 24 h or over the whole
  counting period, whichever is more, x the share of trigger events delivered (1 when
  none were counted) x r.
* ``changed_after_launch``, ``users_reshuffled`` (0: see why there): see
  ``engine.diagnose.change_costs``.

Two verdicts name no cause and explain 0, so they rank after every cause (last in
``CAUSE_ORDER``); a report always holds at least one verdict:

* ``not_yet_judged``: a cause the figures are still too young to judge. ``rare_trigger``
  needs an hour of counting (``trigger.hours_24h`` >= 1), so it waits until ``since_ms`` +
  1 h. ``not_logging_impressions``, when some deliveries but not all got an impression,
  needs deliveries older than the unseen threshold, so it waits until ``since_ms`` + that
  threshold (with no impression at all it is judged at once). One verdict says what was
  seen so far and, for each cause waiting, when it can be judged.
* ``no_cause_found``: nothing else to say; it gives the key figures.

Causes that stop every delivery (``not_found``, ``archived``, ``inactive`` while paused or
draft) rank first; the rest rank by ``explains``, ties in the order of ``CAUSE_ORDER``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from engine.core.timestamps import parse_timestamp
from engine.diagnose.figures import HOUR_MS, Figures
from engine.diagnose.history import ChangeEntry, last_setting
from engine.diagnose.wording import (
    count_text,
    date_text,
    duration_text,
    elapsed_text,
    percent_text,
    time_text,
    whole,
)
from engine.errors import InvalidRecord

RARE_EVENTS_PER_DAY: Final = 50
CAUSE_ORDER: Final = (
    "not_found",
    "archived",
    "inactive",
    "not_logging_impressions",
    "outside_schedule",
    "changed_after_launch",
    "users_reshuffled",
    "audience",
    "sampled_out",
    "rare_trigger",
    "filter_miss",
    "not_re_eligible",
    "frequency_capped",
    "lower_priority",
    "control",
    "stale",
    "cancelled",
    "expired",
    "not_yet_judged",
    "no_cause_found",
)


@dataclass(frozen=True, slots=True)
class Verdict:
    """One cause of missing impressions; ``blocking`` causes stop every delivery."""

    cause: str
    explains: int
    message: str
    blocking: bool = field(default=False, compare=False)

    def to_json_dict(self) -> dict[str, Any]:
        """Return the verdict as JSON-ready values."""
        return {"cause": self.cause, "explains": self.explains, "message": self.message}


@dataclass(frozen=True, slots=True)
class Pending:
    """A cause the figures are too young to judge: ``subject`` can be judged from ``from_ms``,
    ``condition`` (``after an hour of counting``)."""

    subject: str
    from_ms: int
    condition: str


@dataclass(frozen=True, slots=True)
class Evidence:
    """What verdicts are judged on: the engagement, its figures and its changelog."""

    engagement_id: str
    document: Mapping[str, Any]
    figures: Figures
    life: tuple[ChangeEntry, ...]
    now_ms: int
    rivals: tuple[Mapping[str, Any], ...] = ()

    @property
    def impression_ratio(self) -> float:
        """Return the observed impressions per delivery, 1 before the first delivery."""
        totals = self.figures.totals
        if totals.deliveries == 0:
            return 1.0
        return min(1.0, totals.impressions / totals.deliveries)

    def section(self, name: str) -> Mapping[str, Any]:
        """Return the document's object ``name``, empty when absent."""
        value = self.document.get(name)
        return value if isinstance(value, Mapping) else {}


def schedule_instant(value: object, local_time: bool) -> int | None:
    """Return a schedule bound as epoch ms (wall ms in local time), None when open or bad."""
    if not isinstance(value, str):
        return None
    try:
        return parse_timestamp(value + "Z" if local_time else value)
    except InvalidRecord:
        return None


def rank(verdicts: Iterable[Verdict]) -> tuple[Verdict, ...]:
    """Return the verdicts, blocking causes first, then by impressions explained."""
    return tuple(
        sorted(
            verdicts,
            key=lambda item: (not item.blocking, -item.explains, CAUSE_ORDER.index(item.cause)),
        )
    )


def _since_by(entry: ChangeEntry | None) -> str:
    return "" if entry is None else f" since {date_text(entry.at_ms)} by {entry.author}"


def status_verdict(evidence: Evidence) -> Verdict | None:
    """Return why the status stops deliveries, or what evaluations found it inactive."""
    status, figures = evidence.document.get("status"), evidence.figures
    inactive = figures.outcome("inactive")
    lost = whole(inactive * evidence.impression_ratio)
    counted = f"{count_text(inactive)} trigger events ({percent_text(figures.share('inactive'))})"
    if status == "archived":
        entry = last_setting(evidence.life, "archived")
        return Verdict(
            "archived",
            lost,
            f"the engagement is archived{_since_by(entry)}: archived engagements are not "
            "evaluated (apply it again with status active to bring it back)",
            blocking=True,
        )
    if status in ("paused", "draft"):
        entry = last_setting(evidence.life, str(status))
        state = "paused" if status == "paused" else "a draft"
        message = (
            f"the engagement is {state}{_since_by(entry)}: it delivers nothing until "
            f"`declic engagements resume {evidence.engagement_id}`"
        )
        if inactive:
            message += f"; {counted} found it inactive"
        return Verdict("inactive", lost, message, blocking=True)
    if inactive:
        resumed = last_setting(evidence.life, "active")
        last = "" if resumed is None else f" (active again since {date_text(resumed.at_ms)})"
        message = f"{counted} arrived while the engagement was paused or a draft{last}"
        return Verdict("inactive", lost, message)
    return None


def logging_verdict(evidence: Evidence) -> Verdict | None:
    """Return a verdict when deliveries are made but impressions do not come back."""
    figures = evidence.figures
    totals, unseen = figures.totals, figures.unseen_deliveries
    if totals.deliveries == 0 and unseen == 0:
        return None
    if totals.impressions > 0 and unseen <= totals.impressions:
        return None
    lacking = max(unseen, totals.deliveries - totals.impressions)
    if totals.impressions == 0:
        message = (
            f"deliveries are produced but 0 of {count_text(max(totals.deliveries, unseen))} "
            "got an impression: the app is not logging impressions (custom message UIs must "
            "log them)"
        )
    else:
        after = figures.unseen_after_seconds
        age = f" older than {duration_text(after)}" if after else ""
        message = (
            f"{count_text(unseen)} deliveries{age} never got an impression (only "
            f"{percent_text(totals.impression_ratio)} of deliveries were seen): the app is "
            "not logging every impression (custom message UIs must log them)"
        )
    return Verdict("not_logging_impressions", lacking, message)


def logging_pending(evidence: Evidence) -> Pending | None:
    """Return when unseen deliveries can be judged, if some lack an impression but none can
    be older than the unseen threshold yet (``logging_verdict`` needs such deliveries)."""
    figures = evidence.figures
    totals, after = figures.totals, figures.unseen_after_seconds
    if not 0 < totals.impressions < totals.deliveries or figures.unseen_deliveries:
        return None  # judged now: no delivery, none lacking, none seen at all, or some unseen
    if figures.since_ms is None or not after:
        return None
    from_ms = figures.since_ms + after * 1000
    if from_ms <= evidence.now_ms:
        return None
    return Pending("impression logging", from_ms, f"once deliveries are {duration_text(after)} old")


def _trigger_label(evidence: Evidence) -> str:
    trigger = evidence.section("trigger")
    event = trigger.get("event")
    label = f"'{trigger.get('name')}'" if event == "custom" else str(event)
    return label + (" (with its where filters met)" if trigger.get("where") else "")


def rare_trigger_pending(evidence: Evidence) -> Pending | None:
    """Return when the trigger frequency can be judged, if counting began under an hour ago."""
    figures = evidence.figures
    if figures.since_ms is None or figures.trigger.hours_24h >= 1:
        return None
    return Pending("trigger frequency", figures.since_ms + HOUR_MS, "after an hour of counting")


def rare_trigger_verdict(evidence: Evidence) -> Verdict | None:
    """Return a verdict when the trigger event arrives less than the reference rate."""
    figures, trigger = evidence.figures, evidence.figures.trigger
    if trigger.hours_24h < 1 or trigger.per_hour_24h * 24 >= RARE_EVENTS_PER_DAY:
        return None
    per_hour = RARE_EVENTS_PER_DAY / 24
    if figures.since_ms is None:
        period_hours = trigger.hours_7d
    else:
        period_hours = (evidence.now_ms - figures.since_ms) / HOUR_MS
    missing_events = max(
        0.0,
        per_hour * trigger.hours_24h - trigger.last_24h,
        per_hour * period_hours - trigger.total,
    )
    delivered = figures.outcome("delivered")
    delivered_share = min(1.0, delivered / trigger.total) if trigger.total else 1.0
    explains = whole(missing_events * delivered_share * evidence.impression_ratio)
    window = "24 h" if trigger.hours_24h > 23 else f"{whole(trigger.hours_24h)} h"
    label = _trigger_label(evidence)
    if trigger.last_24h == 0:
        message = f"the trigger event {label} did not arrive in the last {window}"
        if evidence.section("trigger").get("event") == "custom":
            message += ": check that the app still sends it, under exactly this name"
    else:
        times = "once" if trigger.last_24h == 1 else f"{count_text(trigger.last_24h)} times"
        message = (
            f"the trigger event {label} arrived {times} in the last {window} "
            f"({trigger.silent_hours_24h} hours with none), fewer than {RARE_EVENTS_PER_DAY} a day"
        )
    return Verdict("rare_trigger", explains, message)


def _seen(figures: Figures, period: str) -> str:
    """Return ``3 trigger events{period}, 3 delivered, 2 shown``."""
    events, totals = figures.evaluations, figures.totals
    seen = (
        f"{count_text(events)} trigger event{'' if events == 1 else 's'}{period}, "
        f"{count_text(totals.deliveries)} delivered, {count_text(totals.impressions)} shown"
    )
    if totals.deliveries:
        seen += f" ({percent_text(totals.impression_ratio)})"
    return seen


def not_yet_judged_verdict(evidence: Evidence, pending: Iterable[Pending]) -> Verdict:
    """Return what was seen so far, and when each cause waiting can be judged."""
    since = evidence.figures.since_ms
    period = "" if since is None else f" in the first {elapsed_text(evidence.now_ms - since)}"
    clauses = [
        f"{item.subject}{' can be judged' if index == 0 else ''} from "
        f"{time_text(item.from_ms)}, {item.condition}"
        for index, item in enumerate(sorted(pending, key=lambda item: item.from_ms))
    ]
    seen = _seen(evidence.figures, period + (" of counting" if period else ""))
    message = f"too early to judge every cause: so far {seen}; " + "; ".join(clauses)
    return Verdict("not_yet_judged", 0, message)


def no_cause_verdict(evidence: Evidence) -> Verdict:
    """Return the verdict of a report that found nothing costing impressions."""
    since = evidence.figures.since_ms
    period = "" if since is None else f" since {date_text(since)}"
    seen = _seen(evidence.figures, period)
    return Verdict("no_cause_found", 0, f"nothing found that costs impressions: {seen}")
