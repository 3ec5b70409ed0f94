"""Catalogs large enough for the all-at-once checks still give each candidate its outcome.

The differential test of ``test_core_matcher_index`` (its reference is the specification
as a loop over candidates) on catalogs whose plans hold from a few to well over
``VECTOR_MIN_CANDIDATES`` sampled version 2 candidates, so that events are matched on both
sides of the switch to the numpy path, with schedules and event counts as well.
"""

from __future__ import annotations

import random

import pytest

from engine.core.catalog import Catalog
from engine.core.checks import VECTOR_MIN_CANDIDATES
from engine.core.engagements import Engagement, compile_engagement
from engine.core.policy import MatchPolicy
from engine.schemas import apply_engagement_defaults
from tests.unit.test_core_matcher_index import _engagement, check_against_reference

# Outcomes given before the sampling check.
EARLIER = {"inactive", "filter_miss", "outside_schedule", "audience_miss"}


def _sampled_v2(item: Engagement) -> bool:
    return item.percent < 100 and item.hash_version == 2


@pytest.mark.parametrize(("seed", "engagements"), [(0, 40), (1, 150), (2, 400)])
def test_large_plans_give_the_outcomes_of_the_checks_run_one_by_one(
    seed: int, engagements: int
) -> None:
    rng = random.Random(seed)
    documents = [_engagement(rng, index) for index in range(engagements)]
    for document in documents:  # most in version 2, the fast one; some stay in version 1
        if rng.random() < 0.8:
            document["audience"]["hash_version"] = 2
    catalog = Catalog.build(
        compile_engagement(apply_engagement_defaults(document), 1) for document in documents
    )
    policy = MatchPolicy()
    sides = set()
    for number in range(300):
        event, expected = check_against_reference(rng, catalog, number, policy)
        # Sampled version 2 candidates that reach the sampling check: what picks the path.
        sampled = {item.id for item in catalog.candidates(event.trigger_key) if _sampled_v2(item)}
        reached = sum(i in sampled and o not in EARLIER for i, o in expected)
        sides.add(reached >= VECTOR_MIN_CANDIDATES)
    if engagements >= 400:
        assert sides == {False, True}  # events on both sides of the switch
    else:
        assert False in sides
