"""Blame evaluations on the changes made after launch that narrowed the engagement's reach.

Each narrowing field change takes evaluations from the outcome it feeds, so the outcome's
own verdict keeps only the rest (nothing is counted twice). Evaluations taken, by field:

* ``audience.percent`` lowered from a to b, now c: users sampled out now have buckets in
  [c, 100); those in [b, a) were cut by this change, so it takes ``sampled_out`` x
  |[b, a) ∩ [c, 100)| / (100 - c).
* ``control_percent`` raised from a to b, now c: likewise ``control`` x
  |[a, b) ∩ [0, c)| / c.
* ``schedule.start`` later or ``schedule.end`` earlier (not in local time): the trigger
  events counted, after the change, in the hours the change cut out of the schedule
  (capped by ``outside_schedule``).
* other narrowing changes (``schedule.hours``, local-time bounds, ``schedule.local_time``,
  ``audience.filters`` or ``trigger.where`` other than a removal, ``priority`` lowered,
  ``reeligibility.after_seconds`` raised or made once-ever, ``ignore_frequency_caps``
  turned off): the outcome they feed x the share of trigger events counted since the
  change. An upper bound: the whole outcome after the change is blamed on it.
* ``trigger.event`` / ``trigger.name``: reported, explaining 0 (``rare_trigger`` measures
  the traffic).

A change record explains its fields' evaluations x the impression ratio.

A change of ``audience.hash_version`` (absent counting as 1) gets its own verdict,
``users_reshuffled``, explaining 0: both versions keep the same share of users in the
sample, the control group and each variant, so it costs no impressions; it changes which
users those are, and figures counted across it mix the two populations.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

from engine.core.bucketing import LEGACY_HASH_VERSION
from engine.diagnose.causes import Evidence, Verdict, schedule_instant
from engine.diagnose.figures import HOUR_MS, OUTCOME_ORDER, Figures
from engine.diagnose.history import ChangeEntry, FieldChange
from engine.diagnose.wording import date_text, time_text, value_text, whole

# Narrowing changes measured by the share of traffic since the change: field -> outcome.
# (Every other schedule.* field feeds outside_schedule.)
_SHARE_SINCE: Final = {
    "audience.filters": "audience_miss",
    "trigger.where": "filter_miss",
    "priority": "lower_priority",
    "reeligibility.after_seconds": "not_re_eligible",
    "ignore_frequency_caps": "frequency_capped",
}
_TRIGGER_FIELDS: Final = frozenset({"trigger.event", "trigger.name"})


def _number(value: object, default: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    return float(value)


def _bound_narrows(change: FieldChange, local_time: bool) -> bool:
    """Return whether a start moved later or an end earlier (or appeared)."""
    old, new = schedule_instant(change.old, local_time), schedule_instant(change.new, local_time)
    if new is None:
        return False
    if change.field == "schedule.end":
        return old is None or new < old
    return old is None or new > old


def _is_removal(change: FieldChange) -> bool:
    """Return whether a list of filters only lost entries (which widens the reach)."""
    if change.new is None:
        return True
    old, new = change.old or [], change.new
    return isinstance(old, list) and isinstance(new, list) and all(item in old for item in new)


def _narrows(change: FieldChange) -> bool:
    """Return whether a change with a traffic-share cost narrows the reach."""
    old, new, name = change.old, change.new, change.field
    if name in ("audience.filters", "trigger.where"):
        return not _is_removal(change)
    if name == "priority":
        return _number(new, 0) < _number(old, 0)
    if name == "reeligibility.after_seconds":
        return old is not None and (new is None or _number(new, 0) > _number(old, 0))
    if name == "ignore_frequency_caps":
        return old is True and new is not True
    if name == "schedule.hours":
        return new is not None
    return True


def _share_since(figures: Figures, at_ms: int, now_ms: int) -> float:
    """Return the share of counted trigger events at or after ``at_ms`` (by hour)."""
    trigger = figures.trigger
    if trigger.total:
        hour_start = at_ms - at_ms % HOUR_MS
        return trigger.events_between(hour_start, float("inf")) / trigger.total
    since = figures.since_ms
    if since is None or now_ms <= since:
        return 1.0
    return min(1.0, max(0.0, (now_ms - max(at_ms, since)) / (now_ms - since)))


def _window_cut(entry: ChangeEntry, change: FieldChange, evidence: Evidence) -> int:
    """Return the trigger events, after the change, in the hours a bound change cut out."""
    old, new = schedule_instant(change.old, False), schedule_instant(change.new, False)
    trigger, after = evidence.figures.trigger, entry.at_ms - entry.at_ms % HOUR_MS
    if new is None:
        return 0
    if change.field == "schedule.end":
        return trigger.events_between(max(new, after), float("inf") if old is None else old)
    return trigger.events_between(after if old is None else max(after, old), new)


def _cost(entry: ChangeEntry, change: FieldChange, evidence: Evidence) -> tuple[str, int] | None:
    """Return (outcome, evaluations) a field change plausibly took, None when it widened."""
    figures, document = evidence.figures, evidence.document
    name = change.field
    if name == "audience.percent":
        old, new = _number(change.old, 100), _number(change.new, 100)
        audience = document.get("audience")
        now = _number(audience.get("percent") if isinstance(audience, Mapping) else None, 100)
        if new >= old:
            return None
        cut = max(0.0, min(old, 100) - max(new, now))
        share = cut / (100 - now) if now < 100 else 0.0
        return "sampled_out", whole(figures.outcome("sampled_out") * share)
    if name == "control_percent":
        old, new = _number(change.old, 0), _number(change.new, 0)
        now = _number(document.get("control_percent"), 0)
        if new <= old:
            return None
        share = max(0.0, min(new, now) - old) / now if now > 0 else 0.0
        return "control", whole(figures.outcome("control") * share)
    local = isinstance(document.get("schedule"), Mapping) and (
        document["schedule"].get("local_time") is True
    )
    if name in ("schedule.start", "schedule.end"):
        if not _bound_narrows(change, local):
            return None
        if not local:
            return "outside_schedule", _window_cut(entry, change, evidence)
    outcome = "outside_schedule" if name.startswith("schedule.") else _SHARE_SINCE.get(name)
    if outcome is None or not _narrows(change):
        return None
    share = _share_since(figures, entry.at_ms, evidence.now_ms)
    return outcome, whole(figures.outcome(outcome) * share)


def _hash_versions(changes: Sequence[FieldChange]) -> tuple[object, object] | None:
    """Return the (old, new) hash versions when a change record changed it, else None."""
    for change in changes:
        old, new = change.old, change.new
        if change.field == "audience" and isinstance(old, Mapping) and isinstance(new, Mapping):
            old, new = old.get("hash_version"), new.get("hash_version")
        elif change.field != "audience.hash_version":
            continue
        # Absent is version 1: engagements written before hash versions.
        old = LEGACY_HASH_VERSION if old is None else old
        new = LEGACY_HASH_VERSION if new is None else new
        if old != new:
            return old, new
    return None


def _reshuffled(entry: ChangeEntry) -> Verdict | None:
    versions = _hash_versions(entry.changes)
    if versions is None:
        return None
    old, new = (value_text(version) for version in versions)
    return Verdict(
        "users_reshuffled",
        0,
        f"users reshuffled on {time_text(entry.at_ms)} by {entry.author} "
        f"(audience.hash_version {old} → {new}): every user's sample and variant were drawn "
        "again; figures before and after mix two populations",
    )


def change_verdicts(
    evidence: Evidence, entries: Sequence[ChangeEntry]
) -> tuple[list[Verdict], dict[str, int]]:
    """Return a verdict per narrowing change record and per reshuffle, and the evaluations
    left unexplained."""
    unexplained = {name: evidence.figures.outcome(name) for name in OUTCOME_ORDER}
    verdicts = []
    for entry in entries:
        if entry.action in ("create", "delete"):
            continue
        reshuffled = _reshuffled(entry)
        if reshuffled is not None:
            verdicts.append(reshuffled)
        described, taken = [], 0
        for change in entry.changes:
            if change.field in _TRIGGER_FIELDS:
                described.append(change)
                continue
            cost = _cost(entry, change, evidence)
            if cost is None:
                continue
            outcome, evaluations = cost
            evaluations = min(evaluations, unexplained[outcome])
            unexplained[outcome] -= evaluations
            taken += evaluations
            described.append(change)
        if described:
            fields = ", ".join(
                f"{item.field} {value_text(item.old)} → {value_text(item.new)}"
                for item in described
            )
            message = (
                f"the engagement was changed after launch: {fields} by {entry.author} "
                f"on {date_text(entry.at_ms)}"
            )
            explains = whole(taken * evidence.impression_ratio)
            verdicts.append(Verdict("changed_after_launch", explains, message))
    return verdicts, unexplained
