"""Variants and control group: compile them and assign users deterministically.

A user's bucket ``b = bucket(VARIANT_SEED, engagement_id, user_id, hash_version)``
(independent of the audience bucket; see ``bucketing``) decides, once and for all:

* ``b * 100 < control_percent``: the user is in the control group (receives nothing);
* otherwise ``position = (b * 100 - control) / (100 - control) * total_weight`` picks the
  first variant whose cumulative weight exceeds ``position``.

Without variants, non-control users get the ``default`` variant carrying the engagement's
message. Ids ``control`` and ``default`` are reserved, so reports never mix them up. An
engagement has at most ``MAX_VARIANTS`` variants (stated again in the engagement schema).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass
from math import isfinite
from typing import Final

from engine.core.bucketing import LEGACY_HASH_VERSION, VARIANT_SEED, position
from engine.core.fields import InvalidField
from engine.errors import InvalidRecord

CONTROL: Final = "control"
DEFAULT_VARIANT: Final = "default"
RESERVED_VARIANT_IDS: Final = frozenset({CONTROL, DEFAULT_VARIANT})
# Variants of one engagement: each a label of the delivery metrics, each message up to
# engagements.MAX_MESSAGE_BYTES in the engagement's record.
MAX_VARIANTS: Final = 16
# The largest weight: ample for any split, and the sum of 16 stays an exact float.
# Stated again in the engagement schema (a unit test holds the two equal).
MAX_WEIGHT: Final = 1_000_000
_TWO_POW_53: Final = float(2**53)
_VARIANT_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")


@dataclass(frozen=True, slots=True)
class Variant:
    """One version of the message; treat ``message`` as read-only."""

    id: str
    weight: float
    message: Mapping[str, object]


@dataclass(frozen=True, slots=True)
class Split:
    """How an engagement's users divide into control and weighted variants."""

    variants: tuple[Variant, ...]
    control_percent: float
    cumulative: tuple[float, ...]  # running weight totals, parallel to ``variants``


@dataclass(frozen=True, slots=True)
class Variants:
    """An engagement's compiled variants.

    ``split`` is None when every user gets ``fallback`` (no control group and at most one
    variant), so the common case needs no hash at all.
    """

    fallback: Variant
    split: Split | None
    by_id: Mapping[str, Variant]

    @property
    def first(self) -> Variant:
        """Return the first declared variant (``fallback`` without variants)."""
        return self.split.variants[0] if self.split is not None else self.fallback


def _fail(detail: str) -> InvalidRecord:
    return InvalidRecord("invalid_engagement", detail)


def _weight(spec: Mapping[str, object], variant_id: str, index: int) -> float:
    weight = spec.get("weight")
    path = ("variants", index, "weight")
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not isfinite(weight):
        raise InvalidField(path, f"variant {variant_id!r}: weight must be a finite number")
    if weight <= 0:
        raise InvalidField(path, f"variant {variant_id!r}: weight must be > 0, got {weight}")
    if weight > MAX_WEIGHT:
        raise InvalidField(
            path, f"variant {variant_id!r}: weight must be <= {MAX_WEIGHT}, got {weight}"
        )
    return float(weight)


def _variant(spec: object, seen: set[str], index: int) -> Variant:
    if not isinstance(spec, Mapping):
        raise InvalidField(("variants", index), "each variant must be an object")
    variant_id = spec.get("id")
    path = ("variants", index, "id")
    if not isinstance(variant_id, str) or not _VARIANT_ID.match(variant_id):
        raise InvalidField(
            path, f"variant id {variant_id!r} must be 1-64 characters among A-Z a-z 0-9 _ -"
        )
    if variant_id in RESERVED_VARIANT_IDS:
        raise InvalidField(path, f"variant id {variant_id!r} is reserved")
    if variant_id in seen:
        raise InvalidField(path, f"duplicate variant id {variant_id!r}")
    seen.add(variant_id)
    message = spec.get("message")
    if not isinstance(message, Mapping):
        raise InvalidField(
            ("variants", index, "message"), f"variant {variant_id!r}: message must be an object"
        )
    # A private copy: deliveries embed it, so later edits to the source must not leak in.
    return Variant(variant_id, _weight(spec, variant_id, index), copy.deepcopy(dict(message)))


def compile_variants(
    specs: object, control_percent: object, message: Mapping[str, object]
) -> Variants:
    """Compile ``variants`` and ``control_percent``; ``message`` backs the default variant."""
    if control_percent is None:
        control_percent = 0
    if (
        isinstance(control_percent, bool)
        or not isinstance(control_percent, int | float)
        or not isfinite(control_percent)
        or not 0 <= control_percent <= 100
    ):
        raise _fail(f"control_percent must be a number within 0..100, got {control_percent!r}")
    if specs is None:
        variants: tuple[Variant, ...] = (Variant(DEFAULT_VARIANT, 1.0, message),)
    else:
        if not isinstance(specs, list) or not specs:
            raise _fail("variants must be a non-empty array when present")
        if len(specs) > MAX_VARIANTS:
            raise _fail(
                f"variants holds {len(specs)} variants, more than the {MAX_VARIANTS} allowed"
            )
        seen: set[str] = set()
        variants = tuple(_variant(spec, seen, index) for index, spec in enumerate(specs))
    by_id = {variant.id: variant for variant in variants}
    if control_percent == 0 and len(variants) == 1:
        return Variants(variants[0], None, by_id)
    cumulative: list[float] = []
    total = 0.0
    for variant in variants:
        total += variant.weight
        cumulative.append(total)
    split = Split(variants, float(control_percent), tuple(cumulative))
    return Variants(variants[0], split, by_id)


def assign_variant(
    variants: Variants,
    engagement_id: str,
    user_id: str,
    hash_version: int = LEGACY_HASH_VERSION,
) -> Variant | None:
    """Return the user's sticky variant, or None for the control group."""
    split = variants.split
    if split is None:
        return variants.fallback
    control = split.control_percent
    drawn = position(VARIANT_SEED, engagement_id, user_id, hash_version) / _TWO_POW_53 * 100
    if drawn < control:
        return None
    scaled = (drawn - control) / (100 - control) * split.cumulative[-1]
    for variant, upper in zip(split.variants, split.cumulative, strict=True):
        if scaled < upper:
            return variant
    return split.variants[-1]  # only reachable through float rounding at the very top
