"""Word the verdicts of the outcomes that stopped evaluations (estimates: see ``causes``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from engine.diagnose.causes import Evidence, Verdict, schedule_instant
from engine.diagnose.figures import ratio
from engine.diagnose.wording import (
    count_text,
    date_text,
    duration_text,
    percent_text,
    value_text,
    whole,
)


def schedule_phrase(schedule: Mapping[str, Any], now_ms: int) -> str:
    """Return which part of the schedule bites: ``, which ended on 2026-11-20``."""
    local = schedule.get("local_time") is True
    start, end = (
        schedule_instant(schedule.get("start"), local),
        schedule_instant(schedule.get("end"), local),
    )
    zone = "users' local time" if local else "UTC"
    if end is not None and end <= now_ms:
        return f", which ended on {date_text(end)}" + (f" ({zone})" if local else "")
    if start is not None and start > now_ms:
        return f", which starts on {date_text(start)}" + (f" ({zone})" if local else "")
    hours = schedule.get("hours")
    if isinstance(hours, Mapping):
        return f", which runs only {hours.get('from')}-{hours.get('to')} each day ({zone})"
    if start is not None and end is not None:
        return f", which runs from {date_text(start)} to {date_text(end)}"
    return ""


def _rank_key(document: Mapping[str, Any]) -> tuple[int, int, str]:
    """Return the matcher's order among eligible engagements: lower wins."""
    priority = document.get("priority", 0)
    schedule = document.get("schedule")
    start = None
    if isinstance(schedule, Mapping):
        start = schedule_instant(schedule.get("start"), schedule.get("local_time") is True)
    return (
        -priority if isinstance(priority, int) else 0,
        -(2**63) if start is None else start,
        str(document.get("id")),
    )


def _lower_priority(evidence: Evidence, counted: str, count: int) -> str:
    document, trigger = evidence.document, evidence.section("trigger")
    ours = _rank_key(document)
    winners = []
    for record in evidence.rivals:
        rival = record.get("engagement", record)
        if not isinstance(rival, Mapping) or rival.get("id") == evidence.engagement_id:
            continue
        other = rival.get("trigger")
        same_trigger = isinstance(other, Mapping) and all(
            other.get(key) == trigger.get(key) for key in ("event", "name")
        )
        if rival.get("status") == "active" and same_trigger and _rank_key(rival) < ours:
            winners.append((_rank_key(rival), rival))
    ours_text = f"this one has priority {value_text(document.get('priority', 0))}"
    if not winners:
        return f"another engagement with a higher priority won {counted}; {ours_text}"
    names = ", ".join(
        f"{rival.get('id')} (priority {value_text(rival.get('priority', 0))})"
        for _, rival in sorted(winners, key=lambda item: item[0])
    )
    return f"a higher-priority engagement won {counted}: {names}; {ours_text}"


def _schedule(evidence: Evidence, counted: str, count: int) -> str:
    phrase = schedule_phrase(evidence.section("schedule"), evidence.now_ms)
    return f"{counted} fell outside the schedule{phrase}"


def _audience(evidence: Evidence, counted: str, count: int) -> str:
    segment = evidence.figures.segment
    if segment is None or not segment.known_users:
        return f"{counted} came from users outside the audience filters"
    return (
        f"the audience filters keep {percent_text(segment.audience_share)} of known users "
        f"({count_text(segment.audience_users)} of {count_text(segment.known_users)}); "
        f"{counted} came from users outside the audience"
    )


def _sampled_out(evidence: Evidence, counted: str, count: int) -> str:
    percent = value_text(evidence.section("audience").get("percent", 100))
    message = f"audience.percent is {percent}: {counted} came from users it leaves out"
    segment = evidence.figures.segment
    if segment is not None and segment.audience_users:
        message += (
            f" (it keeps {count_text(segment.kept_users)} of "
            f"{count_text(segment.audience_users)} audience users)"
        )
    return message


def _not_re_eligible(evidence: Evidence, counted: str, count: int) -> str:
    after = evidence.section("reeligibility").get("after_seconds")
    rule = "once per user, ever"
    if isinstance(after, int | float) and after > 0:
        rule = f"again only {duration_text(after)} after the last delivery"
    return f"{counted} came from users not yet re-eligible ({rule})"


def _control(evidence: Evidence, counted: str, count: int) -> str:
    percent = value_text(evidence.document.get("control_percent", 0))
    return (
        f"control_percent is {percent}: {counted} held the user out as control (by design: "
        "control users are shown nothing)"
    )


def _filter_miss(evidence: Evidence, counted: str, count: int) -> str:
    figures = evidence.figures
    reached = figures.evaluations - figures.outcome("stale") - figures.outcome("inactive")
    return (
        f"the trigger's where filters reject {percent_text(ratio(count, reached))} of events "
        f"({count_text(count)} of {count_text(reached)})"
    )


def _fixed(text: str) -> Callable[[Evidence, str, int], str]:
    return lambda evidence, counted, count: f"{counted} {text}"


# outcome -> (cause, how to word it from the evidence, "N% of trigger events (n)", n)
_OUTCOME_CAUSES: Final[dict[str, tuple[str, Callable[[Evidence, str, int], str]]]] = {
    "outside_schedule": ("outside_schedule", _schedule),
    "audience_miss": ("audience", _audience),
    "sampled_out": ("sampled_out", _sampled_out),
    "not_re_eligible": ("not_re_eligible", _not_re_eligible),
    "frequency_capped": (
        "frequency_capped",
        _fixed("hit the engine-wide frequency caps (DECLIC_FREQUENCY_CAPS)"),
    ),
    "lower_priority": ("lower_priority", _lower_priority),
    "control": ("control", _control),
    "filter_miss": ("filter_miss", _filter_miss),
    "stale": (
        "stale",
        _fixed(
            "were stale: they arrived later than DECLIC_MAX_EVENT_AGE_SECONDS or ahead of the "
            "workers' clocks (check the publishers' clocks and lag)"
        ),
    ),
    "cancelled": ("cancelled", _fixed("had their delayed delivery cancelled by a cancel_on event")),
    "expired": (
        "expired",
        _fixed(
            "had their delayed delivery expire (due after the schedule ended, or the "
            "engagement was paused or removed meanwhile)"
        ),
    ),
}


def outcome_verdicts(evidence: Evidence, unexplained: Mapping[str, int]) -> list[Verdict]:
    """Return one verdict per outcome that stopped evaluations no change explains."""
    figures, verdicts = evidence.figures, []
    for outcome, (cause, word) in _OUTCOME_CAUSES.items():
        left = unexplained.get(outcome, 0)
        if left > 0:
            count = figures.outcome(outcome)
            counted = (
                f"{percent_text(figures.share(outcome))} of trigger events ({count_text(count)})"
            )
            message = word(evidence, counted, count)
            verdicts.append(Verdict(cause, whole(left * evidence.impression_ratio), message))
    return verdicts
