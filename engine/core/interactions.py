"""Join interactions to the deliveries they report on."""

from __future__ import annotations

from dataclasses import dataclass

from engine.core.catalog import Catalog
from engine.core.conversions import ConversionWatch
from engine.core.delivery_state import DeliveryState
from engine.core.events import Interaction
from engine.core.state import UserState
from engine.core.timestamps import format_timestamp
from engine.errors import InvalidRecord

IMPRESSION = "impression"
CLICK = "click"


# Not frozen: frozen dataclasses pay object.__setattr__ per field, on a per-event path.
@dataclass(slots=True)
class InteractionResult:
    """The impression record, the element metric a click counts for, and what to store.

    Treat it as read-only.
    """

    impression: dict[str, object]
    element_metric: str | None = None
    user_changed: bool = False
    delivery_changed: bool = False


def join_interaction(
    interaction: Interaction,
    delivery: DeliveryState | None,
    user: UserState,
    catalog: Catalog,
    now_ms: int,
) -> InteractionResult:
    """Return the impression record of ``interaction``; record it on ``delivery``.

    ``first`` is true only for the first interaction of its kind on the delivery; a
    redelivered interaction (same event id) is a duplicate and never first again. The
    first impression starts a conversion watch on ``user`` when the engagement has a
    conversion rule (from the impression's time, capped at ``now_ms`` so a device clock
    ahead of ours cannot push it into the future). A click on an element the engagement
    maps to a metric reports that metric once per delivery. Test deliveries mark their
    impressions ``"test": true`` and never start watches or count metrics.
    Raise ``InvalidRecord("unknown_delivery", ...)`` when the delivery is not stored or
    belongs to another user.
    """
    if delivery is None or delivery.delivery_id != interaction.delivery_id:
        raise InvalidRecord("unknown_delivery", f"delivery {interaction.delivery_id} is unknown")
    if delivery.user_id != interaction.user_id:
        raise InvalidRecord(
            "unknown_delivery", f"delivery {interaction.delivery_id} belongs to another user"
        )
    kind = interaction.kind
    first_event_ids = delivery.first_event_ids
    first = kind not in first_event_ids
    if first:
        first_event_ids[kind] = interaction.event_id
    impression: dict[str, object] = {
        "event_id": interaction.event_id,
        "delivery_id": delivery.delivery_id,
        "engagement_id": delivery.engagement_id,
        "variant": delivery.variant,
        "user_id": delivery.user_id,
        "kind": kind,
        "element": interaction.element,
        "timestamp": format_timestamp(interaction.timestamp_ms),
        "first": first,
    }
    if delivery.test:
        impression["test"] = True
        return InteractionResult(impression, delivery_changed=first)
    engagement = catalog.get(delivery.engagement_id)
    if engagement is None:
        return InteractionResult(impression, delivery_changed=first)
    user_changed = False
    if first and kind == IMPRESSION and engagement.conversion is not None:
        started_ms = min(interaction.timestamp_ms, now_ms)
        user.add_watch(
            ConversionWatch(
                delivery.delivery_id,
                delivery.engagement_id,
                delivery.variant,
                started_ms,
                started_ms + engagement.conversion.window_ms,
            )
        )
        user_changed = True
    metric = None
    if kind == CLICK and interaction.element is not None:
        metric = engagement.element_metrics.get(interaction.element)
        if metric is not None:
            if metric in delivery.metric_event_ids:
                metric = None  # already counted for this delivery (or a redelivered click)
            else:
                delivery.metric_event_ids[metric] = interaction.event_id
                return InteractionResult(impression, metric, user_changed, True)
    return InteractionResult(impression, metric, user_changed, first)
