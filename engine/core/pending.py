"""Delayed deliveries waiting for their due time, and the rules that cancel them.

A delayed engagement's winner becomes a ``PendingDelivery`` stored on the user state
(one per engagement at most: while pending, the user is not re-eligible for it). A later
custom event of the user (timestamp in ``[triggered_at, due_at)``, another event id)
matching one of the engagement's ``cancel_on`` rules cancels it; otherwise the shell calls
``release_pending`` once ``due_at_ms`` has passed.

A user has at most ``MAX_PENDING_PER_USER`` pending deliveries: while that many wait, the
matcher finds the user not re-eligible for every other delayed engagement. An engagement
has at most ``MAX_CANCEL_RULES`` ``cancel_on`` rules (stated again in the engagement schema).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from engine.core.events import TriggerEvent, compile_custom_event_match
from engine.core.json_values import is_integer
from engine.core.operators import Predicate
from engine.errors import InvalidRecord

# Delayed deliveries waiting at once for one user.
MAX_PENDING_PER_USER: Final = 8
# cancel_on rules of one engagement.
MAX_CANCEL_RULES: Final = 20

_TEXT_FIELDS: Final = ("delivery_id", "engagement_id", "user_id", "trigger_event_id", "variant")
_INT_FIELDS: Final = ("engagement_version", "triggered_at_ms", "due_at_ms")


@dataclass(frozen=True, slots=True)
class PendingDelivery:
    """A delivery decided at trigger time, to be released at ``due_at_ms``.

    ``variant`` is the assigned variant id, or ``control`` for a control user (released as
    a control assignment, so the control group sees the same delay and cancellations).
    ``timezone`` is the user's zone at trigger time, kept for local-time schedules only.
    """

    delivery_id: str
    engagement_id: str
    engagement_version: int
    user_id: str
    trigger_event_id: str
    triggered_at_ms: int
    due_at_ms: int
    variant: str
    timezone: str | None = None

    def to_json_dict(self) -> dict[str, object]:
        """Return the JSON form (field names as attributes; ``timezone`` only when set)."""
        data: dict[str, object] = {
            "delivery_id": self.delivery_id,
            "engagement_id": self.engagement_id,
            "engagement_version": self.engagement_version,
            "user_id": self.user_id,
            "trigger_event_id": self.trigger_event_id,
            "triggered_at_ms": self.triggered_at_ms,
            "due_at_ms": self.due_at_ms,
            "variant": self.variant,
        }
        if self.timezone is not None:
            data["timezone"] = self.timezone
        return data

    @classmethod
    def from_json_dict(cls, data: object) -> PendingDelivery:
        """Rebuild a ``PendingDelivery`` from ``to_json_dict`` output."""
        if not isinstance(data, Mapping):
            raise InvalidRecord("invalid_state", "pending delivery must be an object")
        texts: dict[str, str] = {}
        for key in _TEXT_FIELDS:
            text = data.get(key)
            if not isinstance(text, str):
                raise InvalidRecord("invalid_state", f"pending {key} must be a string")
            texts[key] = text
        numbers: dict[str, int] = {}
        for key in _INT_FIELDS:
            number = data.get(key)
            if not is_integer(number):
                raise InvalidRecord("invalid_state", f"pending {key} must be an integer")
            numbers[key] = number
        timezone = data.get("timezone")
        if timezone is not None and not isinstance(timezone, str):
            raise InvalidRecord("invalid_state", "pending timezone must be a string")
        return cls(
            delivery_id=texts["delivery_id"],
            engagement_id=texts["engagement_id"],
            engagement_version=numbers["engagement_version"],
            user_id=texts["user_id"],
            trigger_event_id=texts["trigger_event_id"],
            triggered_at_ms=numbers["triggered_at_ms"],
            due_at_ms=numbers["due_at_ms"],
            variant=texts["variant"],
            timezone=timezone,
        )


@dataclass(frozen=True, slots=True)
class CancelRule:
    """A custom event (trigger key and ``where``) that cancels a pending delivery."""

    trigger_key: str
    where: Predicate


def compile_cancel_rules(specs: object) -> tuple[CancelRule, ...]:
    """Compile a ``cancel_on`` list of ``{"event": name, "where": [...]}``."""
    if specs is None:
        return ()
    if not isinstance(specs, list):
        raise InvalidRecord("invalid_engagement", "cancel_on must be an array")
    if len(specs) > MAX_CANCEL_RULES:
        raise InvalidRecord(
            "invalid_engagement",
            f"cancel_on holds {len(specs)} rules, more than the {MAX_CANCEL_RULES} allowed",
        )
    rules = []
    for spec in specs:
        if not isinstance(spec, Mapping):
            raise InvalidRecord("invalid_engagement", "each cancel_on rule must be an object")
        rules.append(CancelRule(*compile_custom_event_match(spec, "cancel_on")))
    return tuple(rules)


def cancels(rules: tuple[CancelRule, ...], pending: PendingDelivery, event: TriggerEvent) -> bool:
    """Return whether ``event`` cancels ``pending`` under ``rules``."""
    if event.event_id == pending.trigger_event_id:
        return False  # the trigger itself never cancels what it scheduled
    if not pending.triggered_at_ms <= event.timestamp_ms < pending.due_at_ms:
        return False
    for rule in rules:
        if rule.trigger_key == event.trigger_key and rule.where(event.properties):
            return True
    return False
