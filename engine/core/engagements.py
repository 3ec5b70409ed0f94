"""Compile engagement documents once, so matching does no parsing on the hot path.

A document that cannot be compiled raises ``InvalidRecord("invalid_engagement",
"<id>: <detail>")``: bad sets (duplicate variant ids, weights <= 0, ``cancel_on`` without
a delay...) are refused, never silently fixed. Where the field is known the error is an
``InvalidField`` naming it, and ``engagement_problems`` returns the same as data, for
the tools that tell authors what to fix.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from math import isfinite
from types import MappingProxyType
from typing import Final

from engine.core.bucketing import (
    AUDIENCE_SEED,
    HASH_VERSIONS,
    LEGACY_HASH_VERSION,
    hash_prefix,
    mixed_position,
    position_of,
    salt_of,
    sample_threshold,
)
from engine.core.conversions import ConversionRule, compile_conversion
from engine.core.counters import CountFilter, check_count_filter_total, compile_count_filter
from engine.core.durations import MAX_DURATION_SECONDS, duration_seconds
from engine.core.events import CUSTOM_PREFIX, SESSION_END, SESSION_START
from engine.core.fields import FieldPath, FieldProblem, InvalidField, number_problems
from engine.core.json_values import is_integer
from engine.core.operators import (
    Atom,
    Predicate,
    check_filter_count,
    compile_atoms,
    conjunction,
)
from engine.core.outcomes import Evaluation, Outcome
from engine.core.pending import CancelRule, compile_cancel_rules
from engine.core.schedule import ClockRules, compile_schedule
from engine.core.variants import Variants, compile_variants
from engine.errors import InvalidRecord

# The largest message a delivery may carry, as compact JSON: with the ids around it, a
# delivery then stays under the smallest record limit a worker takes (64 KiB).
MAX_MESSAGE_BYTES: Final = 48 * 1024
# Entries of `elements`: each a label of declic_element_clicks_total per variant.
MAX_ELEMENTS: Final = 32
STATUSES: Final = frozenset({"draft", "active", "paused", "archived"})
ACTIVE: Final = "active"
ARCHIVED: Final = "archived"
_METRIC_NAME: Final = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")


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
    schedule_start_ms: int | None  # absolute bounds; None when open or in local time
    schedule_end_ms: int | None
    audience: Predicate  # attribute filters only; see count_filters
    percent: float
    message: Mapping[str, object]
    reeligible_after_seconds: float | None
    document: Mapping[str, object]
    variants: Variants
    count_filters: tuple[CountFilter, ...]
    ignore_frequency_caps: bool
    delay_ms: int  # 0: deliver at trigger time
    cancel_on: tuple[CancelRule, ...]
    expires_after_ms: int | None
    conversion: ConversionRule | None
    element_metrics: Mapping[str, str]  # clicked element -> metric name
    # Derived at compile time for the matcher.
    is_active: bool
    window_start_ms: int  # schedule as a half-open [start, end) range, open sides as sentinels
    window_end_ms: int
    clock: ClockRules | None  # local-time bounds and daily hours; None in the common case
    start_order_ms: int  # priority tie-break: earliest start first, open start earliest
    reeligible_after_ms: int | None
    evaluations: Mapping[Outcome, Evaluation]
    # The bucketing formula of both draws (sample, variant): see engine.core.bucketing.
    hash_version: int
    sample_prefix: bytes  # version 1: hashed before the user id to place the user in ``percent``
    sample_salt: int  # version 2: mixed with the user's hash to place the user in ``percent``
    sample_threshold: int  # users whose position is below it are in ``percent``
    where_atoms: tuple[Atom, ...]  # ``where`` is their conjunction
    audience_atoms: tuple[Atom, ...]  # ``audience`` is their conjunction


def sample_position(engagement: Engagement, user_key: bytes, hashed: int) -> int:
    """Return the audience position of the user id ``user_key`` (UTF-8) in ``engagement``.

    ``hashed`` is ``user_hash(user_key)``, read by version 2 only: callers placing one
    user in many engagements hash the user once.
    """
    if engagement.hash_version == LEGACY_HASH_VERSION:
        return position_of(engagement.sample_prefix, user_key)
    return mixed_position(hashed, engagement.sample_salt)


class _Fields:
    """Typed, failing readers over one engagement document."""

    __slots__ = ()

    def fail(self, detail: str, path: FieldPath = ()) -> InvalidRecord:
        if path:
            return InvalidField(path, detail)
        return InvalidRecord("invalid_engagement", detail)

    def mapping(self, parent: Mapping[str, object], field: str) -> Mapping[str, object]:
        value = parent.get(field)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self.fail(f"{field} must be an object")
        return value

    def array(self, parent: Mapping[str, object], field: str) -> list[object]:
        value = parent.get(field)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(f"{field} must be an array")
        return value

    def number(self, parent: Mapping[str, object], field: str) -> float | None:
        value = parent.get(field)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not isfinite(value):
            raise self.fail(f"{field} must be a finite number")
        return value

    def seconds_ms(self, parent: Mapping[str, object], field: str) -> int | None:
        value = parent.get(field)
        if value is None:
            return None
        return duration_seconds(value, field) * 1000

    def flag(self, parent: Mapping[str, object], field: str) -> bool:
        value = parent.get(field, False)
        if not isinstance(value, bool):
            raise self.fail(f"{field} must be a boolean")
        return value


_FIELDS: Final = _Fields()


def _trigger_key(trigger: Mapping[str, object]) -> str:
    event = trigger.get("event")
    if event in (SESSION_START, SESSION_END):
        return event
    if event == "custom":
        name = trigger.get("name")
        if not isinstance(name, str) or not name:
            raise _FIELDS.fail("a custom trigger needs a non-empty name")
        return CUSTOM_PREFIX + name
    raise _FIELDS.fail(f"unknown trigger event {event!r}")


def _audience(filters: list[object]) -> tuple[tuple[Atom, ...], tuple[CountFilter, ...]]:
    """Split audience filters into attribute filters and event-count filters."""
    check_filter_count(len(filters), "audience filters")
    attribute_specs: list[object] = []
    count_filters: list[CountFilter] = []
    for spec in filters:
        if isinstance(spec, Mapping) and "event" in spec:
            count_filters.append(compile_count_filter(spec))
        else:
            attribute_specs.append(spec)
    check_count_filter_total(len(count_filters))
    return compile_atoms(attribute_specs, "attribute"), tuple(count_filters)


def _element_metrics(specs: list[object]) -> Mapping[str, str]:
    if len(specs) > MAX_ELEMENTS:
        raise _FIELDS.fail(
            f"elements holds {len(specs)} entries, more than the {MAX_ELEMENTS} allowed",
            ("elements",),
        )
    metrics: dict[str, str] = {}
    for index, spec in enumerate(specs):
        element = spec.get("element") if isinstance(spec, Mapping) else None
        metric = spec.get("metric") if isinstance(spec, Mapping) else None
        if not isinstance(element, str) or not element:
            raise _FIELDS.fail(
                "each elements entry needs a non-empty element", ("elements", index, "element")
            )
        if not isinstance(metric, str) or not _METRIC_NAME.match(metric):
            raise _FIELDS.fail(
                f"element {element!r}: metric must be 1-64 of A-Z a-z 0-9 _ -",
                ("elements", index, "metric"),
            )
        if element in metrics:
            raise _FIELDS.fail(
                f"element {element!r} is listed twice", ("elements", index, "element")
            )
        metrics[element] = metric
    return MappingProxyType(metrics)


def compile_engagement(document: Mapping[str, object], version: int) -> Engagement:
    """Compile a validated engagement document at catalog version ``version``."""
    engagement_id = document.get("id")
    if not isinstance(engagement_id, str) or not engagement_id:
        raise InvalidRecord("invalid_engagement", "id must be a non-empty string")
    try:
        return _compile(engagement_id, document, version)
    except InvalidField as error:
        raise InvalidField(error.path, error.message, engagement_id=engagement_id) from None
    except InvalidRecord as error:
        raise InvalidRecord("invalid_engagement", f"{engagement_id}: {error.detail}") from None


def authoring_problems(document: Mapping[str, object]) -> list[FieldProblem]:
    """Return what keeps a document being written from becoming a publishable engagement,
    whatever else is wrong with it: each number out of a record's range, and a ``message``
    beside ``variants``, which would be silently unused (a rule for new documents only:
    those already published stay readable)."""
    problems = number_problems(document)
    if "variants" in document and "message" in document:
        problems.append(
            FieldProblem(
                ("message",),
                "is never delivered when variants are given (each variant carries its own "
                "message): remove it, or the variants",
            )
        )
    return problems


def engagement_problems(document: Mapping[str, object]) -> list[FieldProblem]:
    """Return what keeps a schema-valid engagement document being written from being
    published, each at its field: the ``authoring_problems``, else the first problem the
    compile meets; empty when it would be published as it is."""
    problems = authoring_problems(document)
    if problems:
        return problems
    engagement_id = document.get("id")
    if not isinstance(engagement_id, str) or not engagement_id:
        return [FieldProblem(("id",), "must be a non-empty string")]
    try:
        _compile(engagement_id, document, 1)
    except InvalidField as error:
        return [error.problem]
    except InvalidRecord as error:
        return [FieldProblem((), error.detail)]
    return []


def _compile(engagement_id: str, document: Mapping[str, object], version: int) -> Engagement:
    fields = _FIELDS
    if not is_integer(version):
        raise fields.fail("version must be an integer")
    # A number no record can carry would fail only when published, or turn into null.
    unrepresentable = number_problems(document)
    if unrepresentable:
        raise InvalidField(*unrepresentable[0])
    status = document.get("status")
    if not isinstance(status, str) or status not in STATUSES:
        raise fields.fail(f"unknown status {status!r}")
    priority = document.get("priority", 0)
    if not is_integer(priority):
        raise fields.fail("priority must be an integer")
    name = document.get("name", "")
    if not isinstance(name, str):
        raise fields.fail("name must be a string")

    trigger = fields.mapping(document, "trigger")
    delay_ms = fields.seconds_ms(trigger, "delay_seconds")
    cancel_on = compile_cancel_rules(trigger.get("cancel_on"))
    if cancel_on and delay_ms is None:
        raise fields.fail("trigger cancel_on needs delay_seconds: only a delay can be cancelled")
    schedule = compile_schedule(fields.mapping(document, "schedule"))
    audience = fields.mapping(document, "audience")
    audience_atoms, count_filters = _audience(fields.array(audience, "filters"))
    where_atoms = compile_atoms(fields.array(trigger, "where"), "property")
    percent = fields.number(audience, "percent")
    if percent is None:
        percent = 100.0
    if not 0 <= percent <= 100:
        raise fields.fail("audience percent must be within 0..100")
    # Absent: written before hash versions, so version 1 keeps every user's answer.
    hash_version = audience.get("hash_version", LEGACY_HASH_VERSION)
    if not is_integer(hash_version) or hash_version not in HASH_VERSIONS:
        raise fields.fail(f"must be 1 or 2, got {hash_version!r}", ("audience", "hash_version"))
    after_seconds = fields.number(fields.mapping(document, "reeligibility"), "after_seconds")
    # Laxer than the schema's minimum (0 and fractions pass, as they always have), but
    # never beyond the bound every duration shares.
    if after_seconds is not None and not 0 <= after_seconds <= MAX_DURATION_SECONDS:
        raise fields.fail(
            f"reeligibility after_seconds must be within 0..{MAX_DURATION_SECONDS} seconds"
            " (10 years)"
        )
    # A private copy: deliveries embed it, so later edits to the source must not leak in.
    message = copy.deepcopy(dict(fields.mapping(document, "message")))

    variants = compile_variants(document.get("variants"), document.get("control_percent"), message)
    declared = document.get("variants") is not None
    for index, variant in enumerate(variants.by_id.values()):
        size = len(json.dumps(variant.message, separators=(",", ":"), ensure_ascii=False).encode())
        if size > MAX_MESSAGE_BYTES:
            raise fields.fail(
                f"the message of variant {variant.id!r} takes {size} bytes as JSON, more than "
                f"the {MAX_MESSAGE_BYTES} a delivery may carry",
                ("variants", index, "message") if declared else ("message",),
            )
    return Engagement(
        id=engagement_id,
        name=name,
        version=version,
        status=status,
        priority=priority,
        trigger_key=_trigger_key(trigger),
        where=conjunction(where_atoms),
        schedule_start_ms=schedule.start_ms,
        schedule_end_ms=schedule.end_ms,
        audience=conjunction(audience_atoms),
        percent=percent,
        message=message,
        reeligible_after_seconds=after_seconds,
        document=document,
        variants=variants,
        count_filters=count_filters,
        ignore_frequency_caps=fields.flag(document, "ignore_frequency_caps"),
        delay_ms=delay_ms or 0,
        cancel_on=cancel_on,
        expires_after_ms=fields.seconds_ms(document, "expires_after_seconds"),
        conversion=compile_conversion(document.get("conversion")),
        element_metrics=_element_metrics(fields.array(document, "elements")),
        is_active=status == ACTIVE,
        window_start_ms=schedule.window_start_ms,
        window_end_ms=schedule.window_end_ms,
        clock=schedule.clock,
        start_order_ms=schedule.start_order_ms,
        reeligible_after_ms=None if after_seconds is None else round(after_seconds * 1000),
        # Evaluations are immutable, so share one per outcome instead of one per event.
        evaluations={outcome: Evaluation(engagement_id, version, outcome) for outcome in Outcome},
        hash_version=hash_version,
        sample_prefix=hash_prefix(AUDIENCE_SEED, engagement_id),
        sample_salt=salt_of(AUDIENCE_SEED, engagement_id),
        sample_threshold=sample_threshold(percent),
        where_atoms=where_atoms,
        audience_atoms=audience_atoms,
    )
