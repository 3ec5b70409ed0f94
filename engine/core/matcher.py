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
                     event, in event time; or a delayed delivery of it is pending; or, for
                     a delayed engagement, ``MAX_PENDING_PER_USER`` deliveries are pending
``frequency_capped`` a policy frequency cap is reached (unless ``ignore_frequency_caps``)
``lower_priority``   eligible, but an earlier candidate in priority order won
``control``          the winner, for a user in the control group: nothing is delivered
``delivered``        the winner: a delivery record is built and recorded on the user

A delayed winner (``delay_seconds``) is not delivered: it is returned in ``scheduled`` and
stored on the user, and reports no outcome now (its cancel or release will).

The checks run on all candidates at once, as bits of an int (see ``plan``): property and
attribute filters through indexes by key, so an event costs a lookup per key rather than
a call per candidate; schedules, event counts and sampling through the indexes of
``checks`` (a bisection per event, a count per filtered name and window, the hash version
2 positions of all candidates with numpy); the user's history is walked, not the
candidates. Only hash version 1 sampling (legacy) still costs a SHA-256 per candidate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from engine.core.catalog import Catalog
from engine.core.conversions import ConversionWatch
from engine.core.deliveries import delivery_id, delivery_record
from engine.core.engagements import Engagement
from engine.core.events import CUSTOM_PREFIX, TriggerEvent
from engine.core.local_time import user_zone, wall_clock_ms
from engine.core.outcomes import Evaluation, Outcome
from engine.core.pending import MAX_PENDING_PER_USER, PendingDelivery
from engine.core.plan import TriggerPlan, bit_indexes
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


# (plan, outcome, candidates as bits): the outcome of every candidate whose bit is set.
OutcomeBits = tuple[TriggerPlan, Outcome, int]


# Not frozen: a frozen dataclass pays object.__setattr__ per field, ~1 µs per event here.
@dataclass(slots=True)
class MatchResult:
    """What one event did: outcomes, records to emit, delays, and whether to persist.

    Treat it as read-only. ``leading`` are the cancellations' evaluations; ``outcome_bits``
    give the candidates' outcomes as sets of candidates (a delayed winner is in none);
    ``evaluations`` lists both, one per engagement. ``scheduled`` are new pending
    deliveries to index by due time; ``cancelled`` are pending deliveries to drop from it.
    """

    leading: list[Evaluation] = field(default_factory=list)
    outcome_bits: list[OutcomeBits] = field(default_factory=list)
    deliveries: list[dict[str, object]] = field(default_factory=list)
    scheduled: Sequence[PendingDelivery] = ()
    cancelled: Sequence[PendingDelivery] = ()
    conversions: Sequence[dict[str, object]] = ()
    user_changed: bool = False

    @property
    def evaluations(self) -> list[Evaluation]:
        """Return the cancellations, then one evaluation per candidate in priority order."""
        by_index: dict[int, Evaluation] = {}
        for plan, outcome, bits in self.outcome_bits:
            for index in bit_indexes(bits):
                by_index[index] = plan.candidates[index].evaluations[outcome]
        return [*self.leading, *(by_index[index] for index in sorted(by_index))]


# Module constants: enum attribute access costs ~100 ns, paid on every event otherwise.
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


def is_too_far_ahead(timestamp_ms: int, now_ms: int, policy: MatchPolicy = DEFAULT_POLICY) -> bool:
    """Return True when ``timestamp_ms`` is further ahead of ``now_ms`` than the policy allows.

    A profile update from the future is not applied: newest timestamp wins, so it would
    pin its attributes until that time.
    """
    return timestamp_ms - now_ms > policy.max_future_ms


def evaluate(
    event: TriggerEvent,
    user: UserState,
    catalog: Catalog,
    now_ms: int,
    policy: MatchPolicy = DEFAULT_POLICY,
) -> MatchResult:
    """Evaluate ``event`` for ``user``; mutate ``user`` (profile, history) as it goes."""
    plan = catalog.plan(event.trigger_key)
    if is_stale(event, now_ms, policy):
        return MatchResult(outcome_bits=[(plan, _STALE, plan.everyone)] if plan.everyone else [])

    timestamp_ms = event.timestamp_ms
    result = MatchResult(user_changed=user.merge_attributes(event.attributes, timestamp_ms))
    if plan.count_spec is not None:
        user.count_event(event.event_name, timestamp_ms, catalog.counted_events)
        result.user_changed = True
    if (user.pending or user.watches) and event.trigger_key.startswith(CUSTOM_PREFIX):
        _cancel_and_convert(event, user, catalog, result)
    if plan.everyone:
        _match_candidates(plan, event, user, result, now_ms=now_ms, policy=policy)
    return result


def _match_candidates(
    plan: TriggerPlan,
    event: TriggerEvent,
    user: UserState,
    result: MatchResult,
    *,
    now_ms: int,
    policy: MatchPolicy,
) -> None:
    """Give every candidate of ``plan`` its outcome; act on the winner, if any.

    Each check takes the candidates still in the running (``remaining``), as bits, and
    removes those it fails: the first failing check gives a candidate its outcome.
    """
    outcome_bits = result.outcome_bits
    timestamp_ms = event.timestamp_ms
    profile = user.attributes
    remaining = plan.everyone
    for outcome, failing in (
        (_INACTIVE, plan.inactive),
        (_FILTER_MISS, plan.where.failing(event.properties)),
    ):
        if failing := failing & remaining:
            outcome_bits.append((plan, outcome, failing))
            remaining ^= failing
    # Once per event, not per candidate: the zone depends on the event and profile only.
    local_zone = (
        user_zone(event.device, profile, policy.default_zone) if plan.uses_local_time else None
    )
    if remaining & plan.scheduled:
        local_wall_ms = (
            timestamp_ms if local_zone is None else wall_clock_ms(timestamp_ms, local_zone)
        )
        if failing := plan.schedule_index.failing(timestamp_ms, local_wall_ms) & remaining:
            outcome_bits.append((plan, _OUTSIDE_SCHEDULE, failing))
            remaining ^= failing
    if not remaining:
        return
    failing = plan.audience.failing(profile) & remaining
    if (remaining ^ failing) & plan.counted:
        failing |= plan.count_index.failing(user.event_times, timestamp_ms) & remaining
    if failing:
        outcome_bits.append((plan, _AUDIENCE_MISS, failing))
        remaining ^= failing
    if (sampled := remaining & plan.sampled) and (
        failing := plan.sample_index.failing(sampled, event.user_id.encode())
    ):
        outcome_bits.append((plan, _SAMPLED_OUT, failing))
        remaining ^= failing
    if remaining and (failing := _not_re_eligible(plan, user, timestamp_ms) & remaining):
        outcome_bits.append((plan, _NOT_RE_ELIGIBLE, failing))
        remaining ^= failing
    if (failing := remaining & plan.obeys_caps) and user.is_capped(
        timestamp_ms, policy.frequency_caps
    ):
        outcome_bits.append((plan, _FREQUENCY_CAPPED, failing))
        remaining ^= failing
    if not remaining:
        return
    winner = remaining & -remaining
    if remaining ^ winner:
        outcome_bits.append((plan, _LOWER_PRIORITY, remaining ^ winner))
    result.user_changed = True
    won = _win(
        plan.candidates[winner.bit_length() - 1],
        event,
        user,
        now_ms=now_ms,
        policy=policy,
        zone_name=None if local_zone is None else local_zone.key,
        deliveries=result.deliveries,
    )
    if isinstance(won, PendingDelivery):
        result.scheduled = (won,)  # delayed: reported by its cancel or release
    else:
        outcome_bits.append((plan, won, winner))


def _not_re_eligible(plan: TriggerPlan, user: UserState, timestamp_ms: int) -> int:
    """Return the candidates pending for the user, or delivered to them too recently, and
    the delayed ones when the user has ``MAX_PENDING_PER_USER`` pending deliveries.

    Walks the user's history, not the candidates: it names few engagements.
    """
    blocked = plan.delayed if len(user.pending) >= MAX_PENDING_PER_USER else 0
    position = plan.position
    for engagement_id in user.pending:
        if (index := position.get(engagement_id)) is not None:
            blocked |= 1 << index
    for engagement_id, last_ms in user.last_delivered.items():
        if (index := position.get(engagement_id)) is not None:
            after_ms = plan.candidates[index].reeligible_after_ms
            # Without after_ms a delivery blocks for ever.
            if after_ms is None or timestamp_ms - last_ms < after_ms:
                blocked |= 1 << index
    return blocked


def _cancel_and_convert(
    event: TriggerEvent, user: UserState, catalog: Catalog, result: MatchResult
) -> None:
    """Apply a custom event to the user's pending deliveries and conversion watches."""
    cancelled = cancel_pending(event, user, catalog)
    if cancelled:
        result.cancelled = cancelled
        result.leading.extend(_cancelled(pending, catalog) for pending in cancelled)
        result.user_changed = True
    if user.watches:
        conversions, watches_changed = convert_watches(event, user, catalog)
        result.conversions = conversions
        result.user_changed = result.user_changed or watches_changed


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
    variant = assign_variant(engagement.variants, engagement.id, user_id, engagement.hash_version)
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
