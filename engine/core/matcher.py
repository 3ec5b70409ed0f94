"""Match one trigger event against the catalog: the per-event hot path.

For each candidate engagement (non-archived, same trigger key) exactly one outcome is
reported, from the first check that fails, in this order:

``stale``            the event is older than ``max_age_ms`` or more than ``max_future_ms``
                     ahead of ``now_ms``; every candidate gets it, nothing else is checked,
                     and the event's attributes are not merged (a far-future timestamp
                     would otherwise outrank every later profile update)
``inactive``         the engagement's status is not ``active``
``filter_miss``      a trigger ``where`` filter fails on the event's properties
``outside_schedule`` the event's own timestamp is before ``start`` or at/after ``end``
``audience_miss``    an audience filter fails on the user's profile, merged with the
                     event's attributes first
``sampled_out``      the user's audience bucket is outside ``percent``
``not_re_eligible``  already delivered to the user: ever (``after_seconds`` null) or less
                     than ``after_seconds`` before this event, in event time
``delivered``        a delivery record is built and recorded on the user

Candidates are independent: one event can deliver several engagements.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.core.bucketing import AUDIENCE_SEED, in_percent
from engine.core.catalog import Catalog
from engine.core.deliveries import delivery_record
from engine.core.events import TriggerEvent
from engine.core.outcomes import Evaluation, Outcome
from engine.core.state import UserState
from engine.core.timestamps import format_timestamp

__all__ = ["Evaluation", "MatchPolicy", "MatchResult", "Outcome", "evaluate", "is_stale"]


@dataclass(frozen=True, slots=True)
class MatchPolicy:
    """How far from ``now_ms`` an event may be and still trigger anything."""

    max_age_ms: int = 3_600_000
    max_future_ms: int = 300_000


@dataclass(frozen=True, slots=True)
class MatchResult:
    """Evaluations in candidate order, the deliveries to emit, and whether to persist."""

    evaluations: list[Evaluation] = field(default_factory=list)
    deliveries: list[dict[str, object]] = field(default_factory=list)
    user_changed: bool = False


DEFAULT_POLICY = MatchPolicy()

# Module constants: enum attribute access costs ~100 ns, paid per candidate otherwise.
_STALE = Outcome.STALE
_INACTIVE = Outcome.INACTIVE
_FILTER_MISS = Outcome.FILTER_MISS
_OUTSIDE_SCHEDULE = Outcome.OUTSIDE_SCHEDULE
_AUDIENCE_MISS = Outcome.AUDIENCE_MISS
_SAMPLED_OUT = Outcome.SAMPLED_OUT
_NOT_RE_ELIGIBLE = Outcome.NOT_RE_ELIGIBLE
_DELIVERED = Outcome.DELIVERED


def is_stale(event: TriggerEvent, now_ms: int, policy: MatchPolicy = DEFAULT_POLICY) -> bool:
    """Return True when the event is too old or too far ahead to trigger anything."""
    timestamp_ms = event.timestamp_ms
    return now_ms - timestamp_ms > policy.max_age_ms or timestamp_ms - now_ms > policy.max_future_ms


def evaluate(
    event: TriggerEvent,
    user: UserState,
    catalog: Catalog,
    now_ms: int,
    policy: MatchPolicy = DEFAULT_POLICY,
) -> MatchResult:
    """Evaluate ``event`` for ``user``; mutate ``user`` (attributes, deliveries) as it goes."""
    candidates = catalog.candidates(event.trigger_key)
    timestamp_ms = event.timestamp_ms
    if is_stale(event, now_ms, policy):
        return MatchResult([candidate.evaluations[_STALE] for candidate in candidates], [], False)

    user_changed = user.merge_attributes(event.attributes, timestamp_ms)
    evaluations: list[Evaluation] = []
    deliveries: list[dict[str, object]] = []
    properties = event.properties
    profile = user.attributes
    last_delivered = user.last_delivered
    user_id = event.user_id
    formatted: tuple[str, str] | None = None  # (triggered_at, created_at), once per event
    for engagement in candidates:
        if not engagement.is_active:
            outcome = _INACTIVE
        elif not engagement.where(properties):
            outcome = _FILTER_MISS
        elif not engagement.window_start_ms <= timestamp_ms < engagement.window_end_ms:
            outcome = _OUTSIDE_SCHEDULE
        elif not engagement.audience(profile):
            outcome = _AUDIENCE_MISS
        elif engagement.percent < 100 and not in_percent(
            engagement.percent, AUDIENCE_SEED, engagement.id, user_id
        ):
            outcome = _SAMPLED_OUT
        elif not _re_eligible(
            last_delivered.get(engagement.id), engagement.reeligible_after_ms, timestamp_ms
        ):
            outcome = _NOT_RE_ELIGIBLE
        else:
            outcome = _DELIVERED
            if formatted is None:
                formatted = (format_timestamp(timestamp_ms), format_timestamp(now_ms))
            deliveries.append(delivery_record(engagement, event, *formatted))
            user.record_delivery(engagement.id, timestamp_ms)
            user_changed = True
        evaluations.append(engagement.evaluations[outcome])
    return MatchResult(evaluations, deliveries, user_changed)


def _re_eligible(last_triggered_ms: int | None, after_ms: int | None, timestamp_ms: int) -> bool:
    if last_triggered_ms is None:
        return True
    return after_ms is not None and timestamp_ms - last_triggered_ms >= after_ms
