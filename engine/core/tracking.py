"""What a custom event does besides triggering: cancel delays and convert watches.

Each function mutates ``user`` and reports what happened; the matcher runs them (after
counting the event) before evaluating the event's own candidates, so an event never
cancels or converts what it triggers itself.
"""

from __future__ import annotations

from engine.core.catalog import Catalog
from engine.core.conversions import ConversionWatch, conversion_record
from engine.core.events import TriggerEvent
from engine.core.pending import PendingDelivery, cancels
from engine.core.state import UserState


def cancel_pending(event: TriggerEvent, user: UserState, catalog: Catalog) -> list[PendingDelivery]:
    """Remove and return the user's pending deliveries that ``event`` cancels."""
    cancelled: list[PendingDelivery] = []
    for pending in list(user.pending.values()):
        engagement = catalog.get(pending.engagement_id)
        # A deleted engagement cannot cancel; its pending delivery expires on release.
        if engagement is not None and cancels(engagement.cancel_on, pending, event):
            user.take_pending(pending.engagement_id, pending.delivery_id)
            cancelled.append(pending)
    return cancelled


def convert_watches(
    event: TriggerEvent, user: UserState, catalog: Catalog
) -> tuple[list[dict[str, object]], bool]:
    """Return the conversions ``event`` produces and whether the watch list changed.

    Watches that expired by the event's time, or whose engagement lost its conversion
    rule (or was deleted), are dropped on the way.
    """
    timestamp_ms = event.timestamp_ms
    conversions: list[dict[str, object]] = []

    def keep(watch: ConversionWatch) -> bool:
        if watch.expires_at_ms <= timestamp_ms:
            return False
        engagement = catalog.get(watch.engagement_id)
        rule = None if engagement is None else engagement.conversion
        if rule is None:
            return False
        if watch.started_at_ms <= timestamp_ms and rule.matches(event):
            conversions.append(conversion_record(event, watch))
            return False
        return True

    dropped = user.take_watches(keep)
    return conversions, bool(dropped)
