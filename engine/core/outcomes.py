"""Outcomes of evaluating one engagement against one trigger event or one pending delivery."""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple


class Outcome(StrEnum):
    """Why an engagement did or did not deliver, in the order the checks run.

    ``cancelled`` and ``expired`` end a delayed delivery after its trigger: a cancel event
    or ``release_pending`` reports them (a release may also report ``frequency_capped``,
    ``control`` or ``delivered``).
    """

    STALE = "stale"
    INACTIVE = "inactive"
    FILTER_MISS = "filter_miss"
    OUTSIDE_SCHEDULE = "outside_schedule"
    AUDIENCE_MISS = "audience_miss"
    SAMPLED_OUT = "sampled_out"
    NOT_RE_ELIGIBLE = "not_re_eligible"
    FREQUENCY_CAPPED = "frequency_capped"
    LOWER_PRIORITY = "lower_priority"
    CONTROL = "control"
    DELIVERED = "delivered"
    CANCELLED = "cancelled"
    EXPIRED = "expired"

    # Enum hashes by name in Python code; a member equals its value, so hashing it as that
    # string is consistent and runs in C (outcomes key dicts on the per-candidate path).
    __hash__ = str.__hash__


class Evaluation(NamedTuple):
    """The outcome of one (event, engagement) pair.

    A tuple, not a dataclass: the engine counts these per event by hashing them, and a
    tuple's hash runs in C.
    """

    engagement_id: str
    engagement_version: int
    outcome: Outcome
