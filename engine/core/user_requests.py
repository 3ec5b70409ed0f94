"""Requests about one user (``declic users forget``), their audit record, and readable
views of what the state holds about a user (``declic users show``).

The audit record names neither the user nor anything of theirs, not even a hash of the
user id: user ids are often guessable (numbers, e-mail addresses), so a hash would let
anyone reading the audit topic confirm that someone was a user. The request id, which
``declic users forget`` prints, is what links the record to the request's ticket.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.core.delivery_state import DeliveryState
from engine.core.pending import PendingDelivery
from engine.core.state import UserState
from engine.core.timestamps import format_timestamp
from engine.core.wire import UserRequestRecord, decode, requested_at_ms


def read_user_request(raw: bytes) -> UserRequestRecord:
    """Decode the JSON value of a ``user-requests`` record."""
    request = decode(raw, UserRequestRecord)
    requested_at_ms(request)  # its date-time must exist, as the schema says
    return request


@dataclass(frozen=True, slots=True)
class Removed:
    """How many state keys of each kind a request removed."""

    user_state: int = 0
    deliveries: int = 0
    pending_deliveries: int = 0

    def to_json_dict(self) -> dict[str, int]:
        return {
            "user_state": self.user_state,
            "deliveries": self.deliveries,
            "pending_deliveries": self.pending_deliveries,
        }


def audit_record(
    request: UserRequestRecord, partition: int, removed: Removed, done_ms: int
) -> dict[str, Any]:
    """Return the ``user-audit`` record of a request carried out at ``done_ms``."""
    return {
        "request_id": request.request_id,
        "action": request.action,
        "author": request.author,
        "requested_at": request.requested_at,
        "done_at": format_timestamp(done_ms),
        "partition": partition,
        "removed": removed.to_json_dict(),
    }


def readable_user_state(data: object) -> dict[str, Any]:
    """Return a stored user state (``UserState.to_json_dict`` form) with plain names."""
    user = UserState.from_json_dict(data)
    return {
        "profile": {
            name: {"value": value, "set_at": format_timestamp(user.attribute_times[name])}
            for name, value in sorted(user.attributes.items())
        },
        "last_delivered": {
            engagement_id: format_timestamp(at)
            for engagement_id, at in sorted(user.last_delivered.items())
        },
        "capped_delivery_times": [format_timestamp(at) for at in user.delivery_times],
        "counted_events": {
            name: [format_timestamp(at) for at in times]
            for name, times in sorted(user.event_times.items())
        },
        "pending": [readable_pending(item.to_json_dict()) for item in user.pending.values()],
        "conversion_watches": [
            {
                "delivery_id": watch.delivery_id,
                "engagement_id": watch.engagement_id,
                "variant": watch.variant,
                "started_at": format_timestamp(watch.started_at_ms),
                "expires_at": format_timestamp(watch.expires_at_ms),
            }
            for watch in user.watches
        ],
    }


def readable_delivery(data: object) -> dict[str, Any]:
    """Return a stored delivery state with plain names."""
    delivery = DeliveryState.from_json_dict(data)
    return {
        "delivery_id": delivery.delivery_id,
        "engagement_id": delivery.engagement_id,
        "engagement_version": delivery.engagement_version,
        "variant": delivery.variant,
        "created_at": format_timestamp(delivery.created_at_ms),
        "test": delivery.test,
        "interactions_seen": sorted(delivery.first_event_ids),
        "element_metrics_counted": sorted(delivery.metric_event_ids),
    }


def readable_pending(data: object) -> dict[str, Any]:
    """Return a stored pending delivery with plain names."""
    pending = PendingDelivery.from_json_dict(data)
    readable: dict[str, Any] = {
        "delivery_id": pending.delivery_id,
        "engagement_id": pending.engagement_id,
        "engagement_version": pending.engagement_version,
        "variant": pending.variant,
        "trigger_event_id": pending.trigger_event_id,
        "triggered_at": format_timestamp(pending.triggered_at_ms),
        "due_at": format_timestamp(pending.due_at_ms),
    }
    if pending.timezone is not None:
        readable["timezone"] = pending.timezone
    return readable


def owned_by(kind: str, data: object, user_id: str) -> bool:
    """Return whether a stored delivery (``kind`` "d") or pending delivery ("p") is the
    user's; a value of another shape is nobody's."""
    if not isinstance(data, Mapping):
        return False
    return data.get("u" if kind == "d" else "user_id") == user_id
