"""Join interactions to the deliveries they report on."""

from __future__ import annotations

from engine.core.events import Interaction
from engine.core.state import DeliveryState
from engine.core.timestamps import format_timestamp
from engine.errors import InvalidRecord


def join_interaction(interaction: Interaction, delivery: DeliveryState | None) -> dict[str, object]:
    """Return the impression record of ``interaction``; record it on ``delivery``.

    ``first`` is true only for the first interaction of its kind on the delivery; a
    redelivered interaction (same event id) is a duplicate and never first again. The
    delivery changes, and must be stored again, exactly when ``first`` is true.
    Raise ``InvalidRecord("unknown_delivery", ...)`` when the delivery is not stored or
    belongs to another user.
    """
    if delivery is None or delivery.delivery_id != interaction.delivery_id:
        raise InvalidRecord("unknown_delivery", f"delivery {interaction.delivery_id} is unknown")
    if delivery.user_id != interaction.user_id:
        raise InvalidRecord(
            "unknown_delivery", f"delivery {interaction.delivery_id} belongs to another user"
        )
    first_event_ids = delivery.first_event_ids
    first = interaction.kind not in first_event_ids
    if first:
        first_event_ids[interaction.kind] = interaction.event_id
    return {
        "event_id": interaction.event_id,
        "delivery_id": delivery.delivery_id,
        "engagement_id": delivery.engagement_id,
        "variant": delivery.variant,
        "user_id": delivery.user_id,
        "kind": interaction.kind,
        "element": interaction.element,
        "timestamp": format_timestamp(interaction.timestamp_ms),
        "first": first,
    }
