"""Resolve a pending delivery once its due time has passed.

Checks, in order: ``expired`` (the engagement was deleted, is no longer active, its
schedule ends at or before the due time, or the assigned variant no longer exists),
``frequency_capped`` (caps checked again at the due time), then ``control`` (a control
user: a conversion watch starts, nothing is delivered) or ``delivered``. The current
engagement version is used: its message, its version on the delivery. A delivery or a
control assignment is recorded for re-eligibility (and a delivery for caps) at the due
time, its event time.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.core.catalog import Catalog
from engine.core.conversions import ConversionWatch
from engine.core.deliveries import delivery_record
from engine.core.engagements import Engagement
from engine.core.local_time import load_zone, wall_clock_ms
from engine.core.outcomes import Evaluation, Outcome
from engine.core.pending import PendingDelivery
from engine.core.policy import DEFAULT_POLICY, MatchPolicy
from engine.core.state import UserState
from engine.core.timestamps import format_timestamp
from engine.core.variants import CONTROL


@dataclass(slots=True)  # not frozen: cheaper to build; treat it as read-only
class Release:
    """The outcome of releasing a pending delivery, and the delivery to emit if any.

    ``evaluation`` is None when the pending delivery was no longer stored on the user
    (already cancelled or released): nothing changed. Otherwise the user changed.
    """

    evaluation: Evaluation | None
    delivery: dict[str, object] | None = None


def release_pending(
    pending: PendingDelivery,
    user: UserState,
    catalog: Catalog,
    now_ms: int,
    policy: MatchPolicy = DEFAULT_POLICY,
) -> Release:
    """Resolve ``pending`` (due at or before ``now_ms``) for ``user``; mutate ``user``."""
    if user.take_pending(pending.engagement_id, pending.delivery_id) is None:
        return Release(None)
    engagement = catalog.get(pending.engagement_id)
    due_ms = pending.due_at_ms
    if engagement is None or not engagement.is_active or _ended_before(engagement, pending, policy):
        return Release(_evaluation(pending, engagement, Outcome.EXPIRED))
    variant = None
    if pending.variant != CONTROL:
        variant = engagement.variants.by_id.get(pending.variant)
        if variant is None:
            return Release(_evaluation(pending, engagement, Outcome.EXPIRED))
    if not engagement.ignore_frequency_caps and user.is_capped(due_ms, policy.frequency_caps):
        return Release(_evaluation(pending, engagement, Outcome.FREQUENCY_CAPPED))
    user.record_delivery(engagement.id, due_ms)
    if variant is None:
        if engagement.conversion is not None:
            expires_ms = due_ms + engagement.conversion.window_ms
            user.add_watch(ConversionWatch(None, engagement.id, CONTROL, due_ms, expires_ms))
        return Release(_evaluation(pending, engagement, Outcome.CONTROL))
    if not engagement.ignore_frequency_caps:
        user.count_towards_caps(due_ms, policy.cap_history)
    delivery = delivery_record(
        engagement,
        variant,
        delivery_id=pending.delivery_id,
        user_id=pending.user_id,
        trigger_event_id=pending.trigger_event_id,
        triggered_at=format_timestamp(pending.triggered_at_ms),
        created_at=format_timestamp(now_ms),
        created_at_ms=now_ms,
    )
    return Release(_evaluation(pending, engagement, Outcome.DELIVERED), delivery)


def _ended_before(engagement: Engagement, pending: PendingDelivery, policy: MatchPolicy) -> bool:
    due_ms = pending.due_at_ms
    if due_ms >= engagement.window_end_ms:
        return True
    clock = engagement.clock
    if clock is None or not clock.local_time:
        return False
    zone = None if pending.timezone is None else load_zone(pending.timezone)
    return wall_clock_ms(due_ms, zone or policy.default_zone) >= clock.end_wall_ms


def _evaluation(
    pending: PendingDelivery, engagement: Engagement | None, outcome: Outcome
) -> Evaluation:
    if engagement is not None:
        return engagement.evaluations[outcome]
    return Evaluation(pending.engagement_id, pending.engagement_version, outcome)
