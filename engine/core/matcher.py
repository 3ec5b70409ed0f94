"""Match one trigger event against the catalog: the per-event hot path.

Before the candidates, a fresh (non-stale) event merges its attributes into the profile;
a custom event is then counted (when an active event-count filter names it), cancels the
user's pending deliveries whose ``cancel_on`` it matches (outcome ``cancelled``, reported
first) and converts the conversion watches it matches.

For each candidate engagement (non-archived, same trigger key, in priority order) one
outcome is reported, from the first check that fails, in this order:

``stale``            the event is older than ``max_age_ms`` or more than ``max_future_ms``
                     ahead of ``now_ms``; every candidate gets it, nothing else happens
                     (no attribute merge, count, cancellation or conversion)
``inactive``         the engagement's status is not ``active``
``filter_miss``      a trigger ``where`` filter fails on the event's properties
``outside_schedule`` the event is outside ``[start, end)`` or the daily ``hours``, in UTC or
                     in the user's local time (``schedule.local_time``)
``audience_miss``    an attribute filter fails on the profile (merged with the event's
                     attributes first) or an event-count filter fails
``sampled_out``      the user's audience bucket is outside ``percent``
``not_re_eligible``  already delivered (or control-assigned) to the user: ever
                     (``after_seconds`` null) or less than ``after_seconds`` before this
                     event, in event time; or a delayed delivery of it is pending
``frequency_capped`` a policy frequency cap is reached (unless ``ignore_frequency_caps``)
``lower_priority``   eligible, but an earlier candidate in priority order won
``control``          the winner, for a user in the control group: nothing is delivered
``delivered``        the winner: a delivery record is built and recorded on the user

A delayed winner (``delay_seconds``) is not delivered: it is returned in ``scheduled`` and
stored on the user, and reports no outcome now (its cancel or release will).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from engine.core.bucketing import sampled_in
from engine.core.catalog import Catalog
from engine.core.conversions import ConversionWatch
from engine.core.counters import counts_hold
from engine.core.deliveries import delivery_id, delivery_record
from engine.core.engagements import Engagement
from engine.core.events import CUSTOM_PREFIX, TriggerEvent
from engine.core.local_time import user_zone, wall_clock_ms
from engine.core.operators import always_true
from engine.core.outcomes import Evaluation, Outcome
from engine.core.pending import PendingDelivery
from engine.core.policy import DEFAULT_POLICY, MatchPolicy
from engine.core.state import UserState
from engine.core.timestamps import format_timestamp
from engine.core.tracking import cancel_pending, convert_watches
from engine.core.variants import CONTROL, assign_variant

__all__ = [
    "DEFAULT_POLICY",
    "Evaluation",
    "MatchPolicy",
    "MatchResult",
    "Outcome",
    "evaluate",
    "is_stale",
]


# Not frozen: a frozen dataclass pays object.__setattr__ per field, ~1 µs per event here.
@dataclass(slots=True)
class MatchResult:
    """What one event did: outcomes, records to emit, delays, and whether to persist.

    Treat it as read-only. ``evaluations`` lists cancellations first, then candidates in
    priority order (a delayed winner is absent). ``scheduled`` are new pending deliveries
    to index by due time; ``cancelled`` are pending deliveries to drop from that index.
    """

    evaluations: list[Evaluation] = field(default_factory=list)
    deliveries: list[dict[str, object]] = field(default_factory=list)
    scheduled: Sequence[PendingDelivery] = ()
    cancelled: Sequence[PendingDelivery] = ()
    conversions: Sequence[dict[str, object]] = ()
    user_changed: bool = False


# Module constants: enum attribute access costs ~100 ns, paid per candidate otherwise.
_STALE = Outcome.STALE
_INACTIVE = Outcome.INACTIVE
_FILTER_MISS = Outcome.FILTER_MISS
_OUTSIDE_SCHEDULE = Outcome.OUTSIDE_SCHEDULE
_AUDIENCE_MISS = Outcome.AUDIENCE_MISS
_SAMPLED_OUT = Outcome.SAMPLED_OUT
_NOT_RE_ELIGIBLE = Outcome.NOT_RE_ELIGIBLE
_FREQUENCY_CAPPED = Outcome.FREQUENCY_CAPPED
_LOWER_PRIORITY = Outcome.LOWER_PRIORITY
_CONTROL = Outcome.CONTROL
_DELIVERED = Outcome.DELIVERED
_CANCELLED = Outcome.CANCELLED


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
    """Evaluate ``event`` for ``user``; mutate ``user`` (profile, history) as it goes."""
    plan = catalog.plan(event.trigger_key)
    candidates = plan.candidates
    timestamp_ms = event.timestamp_ms
    if is_stale(event, now_ms, policy):
        return MatchResult([candidate.evaluations[_STALE] for candidate in candidates])

    user_changed = user.merge_attributes(event.attributes, timestamp_ms)
    evaluations: list[Evaluation] = []
    deliveries: list[dict[str, object]] = []
    scheduled: Sequence[PendingDelivery] = ()
    cancelled: Sequence[PendingDelivery] = ()
    conversions: Sequence[dict[str, object]] = ()
    if plan.count_spec is not None:
        user.count_event(event.event_name, timestamp_ms, catalog.counted_events)
        user_changed = True
    pending = user.pending
    if (pending or user.watches) and event.trigger_key.startswith(CUSTOM_PREFIX):
        cancelled, conversions, changed = _cancel_and_convert(event, user, catalog, evaluations)
        user_changed = user_changed or changed

    properties = event.properties
    profile = user.attributes
    last_delivered = user.last_delivered
    user_key = event.user_id.encode()  # hashed after each sampled candidate's prefix
    # Once per event, not per candidate: the zone depends on the event and profile only.
    local_zone = (
        user_zone(event.device, profile, policy.default_zone) if plan.uses_local_time else None
    )
    local_wall_ms = timestamp_ms if local_zone is None else wall_clock_ms(timestamp_ms, local_zone)
    capped: bool | None = None  # computed once, by the first candidate that needs it
    won = False
    for engagement in candidates:
        if not engagement.is_active:
            outcome = _INACTIVE
        # Skipping a call to the empty filter saves more than the identity test costs.
        elif (where := engagement.where) is not always_true and not where(properties):
            outcome = _FILTER_MISS
        elif not engagement.window_start_ms <= timestamp_ms < engagement.window_end_ms or (
            (clock := engagement.clock) is not None
            and not clock.holds(local_wall_ms if clock.local_time else timestamp_ms)
        ):
            outcome = _OUTSIDE_SCHEDULE
        elif ((audience := engagement.audience) is not always_true and not audience(profile)) or (
            engagement.count_filters
            and not counts_hold(engagement.count_filters, user.event_times, timestamp_ms)
        ):
            outcome = _AUDIENCE_MISS
        elif engagement.percent < 100 and not sampled_in(
            engagement.percent, engagement.sample_prefix, user_key
        ):
            outcome = _SAMPLED_OUT
        elif (pending and engagement.id in pending) or (
            # Inlined re-eligibility (a call per candidate costs more than the test): a
            # previous delivery blocks forever without after_ms, else for after_ms.
            (last_ms := last_delivered.get(engagement.id)) is not None
            and (
                (after_ms := engagement.reeligible_after_ms) is None
                or timestamp_ms - last_ms < after_ms
            )
        ):
            outcome = _NOT_RE_ELIGIBLE
        elif not engagement.ignore_frequency_caps and (
            capped
            if capped is not None
            else (capped := user.is_capped(timestamp_ms, policy.frequency_caps))
        ):
            outcome = _FREQUENCY_CAPPED
        elif won:
            outcome = _LOWER_PRIORITY
        else:
            won = user_changed = True
            won_outcome = _win(
                engagement,
                event,
                user,
                now_ms=now_ms,
                policy=policy,
                zone_name=None if local_zone is None else local_zone.key,
                deliveries=deliveries,
            )
            if isinstance(won_outcome, PendingDelivery):
                scheduled = (won_outcome,)
                continue  # delayed: reported by its cancel or release
            outcome = won_outcome
        evaluations.append(engagement.evaluations[outcome])
    return MatchResult(evaluations, deliveries, scheduled, cancelled, conversions, user_changed)


def _cancel_and_convert(
    event: TriggerEvent, user: UserState, catalog: Catalog, evaluations: list[Evaluation]
) -> tuple[list[PendingDelivery], list[dict[str, object]], bool]:
    """Apply a custom event to the user's pending deliveries and conversion watches.

    Return the cancelled deliveries, the conversions and whether the user changed.
    """
    cancelled = cancel_pending(event, user, catalog)
    evaluations.extend(_cancelled(pending, catalog) for pending in cancelled)
    if not user.watches:
        return cancelled, [], bool(cancelled)
    conversions, watches_changed = convert_watches(event, user, catalog)
    return cancelled, conversions, bool(cancelled) or watches_changed


def _win(
    engagement: Engagement,
    event: TriggerEvent,
    user: UserState,
    *,
    now_ms: int,
    policy: MatchPolicy,
    zone_name: str | None,
    deliveries: list[dict[str, object]],
) -> Outcome | PendingDelivery:
    """Act on the priority winner; return its outcome, or its pending delivery if delayed."""
    user_id = event.user_id
    timestamp_ms = event.timestamp_ms
    variant = assign_variant(engagement.variants, engagement.id, user_id)
    if engagement.delay_ms:
        clock = engagement.clock
        later = PendingDelivery(
            delivery_id=delivery_id(engagement.id, user_id, event.event_id),
            engagement_id=engagement.id,
            engagement_version=engagement.version,
            user_id=user_id,
            trigger_event_id=event.event_id,
            triggered_at_ms=timestamp_ms,
            due_at_ms=timestamp_ms + engagement.delay_ms,
            variant=CONTROL if variant is None else variant.id,
            timezone=zone_name if clock is not None and clock.local_time else None,
        )
        user.add_pending(later)
        return later
    user.record_delivery(engagement.id, timestamp_ms)
    if variant is None:
        if engagement.conversion is not None:
            expires_ms = timestamp_ms + engagement.conversion.window_ms
            user.add_watch(ConversionWatch(None, engagement.id, CONTROL, timestamp_ms, expires_ms))
        return _CONTROL
    deliveries.append(
        delivery_record(
            engagement,
            variant,
            delivery_id=delivery_id(engagement.id, user_id, event.event_id),
            user_id=user_id,
            trigger_event_id=event.event_id,
            triggered_at=format_timestamp(timestamp_ms),
            created_at=format_timestamp(now_ms),
            created_at_ms=now_ms,
        )
    )
    if not engagement.ignore_frequency_caps:
        user.count_towards_caps(timestamp_ms, policy.cap_history)
    return _DELIVERED


def _cancelled(pending: PendingDelivery, catalog: Catalog) -> Evaluation:
    engagement = catalog.get(pending.engagement_id)
    if engagement is not None and engagement.version == pending.engagement_version:
        return engagement.evaluations[_CANCELLED]
    return Evaluation(pending.engagement_id, pending.engagement_version, _CANCELLED)
