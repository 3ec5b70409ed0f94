"""Compile engagement documents once, so matching does no parsing on the hot path.

A document that cannot be compiled raises ``InvalidRecord("invalid_engagement", ...)``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from math import isfinite
from typing import Final

from engine.core.events import CUSTOM_PREFIX, SESSION_END, SESSION_START
from engine.core.operators import Predicate, compile_filters
from engine.core.outcomes import Evaluation, Outcome
from engine.core.timestamps import MAX_EPOCH_MS, MIN_EPOCH_MS, parse_timestamp
from engine.errors import InvalidRecord

STATUSES: Final = frozenset({"draft", "active", "paused", "archived"})
ACTIVE: Final = "active"
ARCHIVED: Final = "archived"


# eq=False: predicates are closures, so field-wise equality would be misleading.
@dataclass(frozen=True, slots=True, eq=False)
class Engagement:
    """A compiled engagement; treat ``message`` and ``document`` as read-only."""

    id: str
    name: str
    version: int
    status: str
    priority: int
    trigger_key: str
    where: Predicate
    schedule_start_ms: int | None
    schedule_end_ms: int | None
    audience: Predicate
    percent: float
    message: Mapping[str, object]
    reeligible_after_seconds: float | None
    document: Mapping[str, object]
    # Derived at compile time for the matcher.
    is_active: bool
    window_start_ms: int  # schedule as a half-open [start, end) range, open sides as sentinels
    window_end_ms: int
    reeligible_after_ms: int | None
    evaluations: Mapping[Outcome, Evaluation]


class _Fields:
    """Typed, failing readers over one engagement document."""

    __slots__ = ("engagement_id",)

    def __init__(self, engagement_id: str) -> None:
        self.engagement_id = engagement_id

    def fail(self, detail: str) -> InvalidRecord:
        return InvalidRecord("invalid_engagement", f"{self.engagement_id}: {detail}")

    def mapping(self, parent: Mapping[str, object], field: str) -> Mapping[str, object]:
        value = parent.get(field)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self.fail(f"{field} must be an object")
        return value

    def filters(self, parent: Mapping[str, object], field: str, key_field: str) -> Predicate:
        specs = parent.get(field)
        if specs is None:
            specs = []
        if not isinstance(specs, list):
            raise self.fail(f"{field} must be an array")
        try:
            return compile_filters(specs, key_field)
        except InvalidRecord as error:
            raise self.fail(error.detail) from None

    def number(self, parent: Mapping[str, object], field: str) -> float | None:
        value = parent.get(field)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not isfinite(value):
            raise self.fail(f"{field} must be a finite number")
        return value

    def instant(self, parent: Mapping[str, object], field: str) -> int | None:
        value = parent.get(field)
        if value is None:
            return None
        try:
            return parse_timestamp(value)
        except InvalidRecord as error:
            raise self.fail(f"schedule {field}: {error.detail}") from None


def _trigger_key(fields: _Fields, trigger: Mapping[str, object]) -> str:
    event = trigger.get("event")
    if event in (SESSION_START, SESSION_END):
        return event
    if event == "custom":
        name = trigger.get("name")
        if not isinstance(name, str) or not name:
            raise fields.fail("a custom trigger needs a non-empty name")
        return CUSTOM_PREFIX + name
    raise fields.fail(f"unknown trigger event {event!r}")


def compile_engagement(document: Mapping[str, object], version: int) -> Engagement:
    """Compile a validated engagement document at catalog version ``version``."""
    engagement_id = document.get("id")
    if not isinstance(engagement_id, str) or not engagement_id:
        raise InvalidRecord("invalid_engagement", "id must be a non-empty string")
    fields = _Fields(engagement_id)
    if isinstance(version, bool) or not isinstance(version, int):
        raise fields.fail("version must be an integer")
    status = document.get("status")
    if not isinstance(status, str) or status not in STATUSES:
        raise fields.fail(f"unknown status {status!r}")
    priority = document.get("priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise fields.fail("priority must be an integer")
    name = document.get("name", "")
    if not isinstance(name, str):
        raise fields.fail("name must be a string")

    trigger = fields.mapping(document, "trigger")
    schedule = fields.mapping(document, "schedule")
    start_ms = fields.instant(schedule, "start")
    end_ms = fields.instant(schedule, "end")
    if start_ms is not None and end_ms is not None and start_ms >= end_ms:
        raise fields.fail("schedule start must be before end")
    audience = fields.mapping(document, "audience")
    percent = fields.number(audience, "percent")
    if percent is None:
        percent = 100.0
    if not 0 <= percent <= 100:
        raise fields.fail("audience percent must be within 0..100")
    after_seconds = fields.number(fields.mapping(document, "reeligibility"), "after_seconds")
    if after_seconds is not None and after_seconds < 0:
        raise fields.fail("reeligibility after_seconds must not be negative")
    message = fields.mapping(document, "message")

    return Engagement(
        id=engagement_id,
        name=name,
        version=version,
        status=status,
        priority=priority,
        trigger_key=_trigger_key(fields, trigger),
        where=fields.filters(trigger, "where", "property"),
        schedule_start_ms=start_ms,
        schedule_end_ms=end_ms,
        audience=fields.filters(audience, "filters", "attribute"),
        percent=percent,
        # A private copy: deliveries embed it, so later edits to the source must not leak in.
        message=copy.deepcopy(dict(message)),
        reeligible_after_seconds=after_seconds,
        document=document,
        is_active=status == ACTIVE,
        window_start_ms=MIN_EPOCH_MS if start_ms is None else start_ms,
        window_end_ms=MAX_EPOCH_MS + 1 if end_ms is None else end_ms,
        reeligible_after_ms=None if after_seconds is None else round(after_seconds * 1000),
        # Evaluations are immutable, so share one per outcome instead of one per event.
        evaluations={outcome: Evaluation(engagement_id, version, outcome) for outcome in Outcome},
    )
