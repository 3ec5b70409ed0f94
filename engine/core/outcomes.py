"""Outcomes of evaluating one engagement against one trigger event."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Outcome(StrEnum):
    """Why an engagement did or did not deliver, in the order the checks run."""

    STALE = "stale"
    INACTIVE = "inactive"
    FILTER_MISS = "filter_miss"
    OUTSIDE_SCHEDULE = "outside_schedule"
    AUDIENCE_MISS = "audience_miss"
    SAMPLED_OUT = "sampled_out"
    NOT_RE_ELIGIBLE = "not_re_eligible"
    DELIVERED = "delivered"


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The outcome of one (event, engagement) pair."""

    engagement_id: str
    engagement_version: int
    outcome: Outcome
