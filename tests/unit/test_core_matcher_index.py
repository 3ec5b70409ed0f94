"""The indexed matcher gives every candidate the outcome of the checks run one by one.

The reference below is the specification written as a plain loop over candidates (the
first failing check names the outcome). Randomised catalogs, profiles and histories
exercise the indexes: shared and distinct filters on the same keys, missing and
mistyped values, schedules, event counts, sampling (both hash versions), re-eligibility
and caps.
"""

from __future__ import annotations

import copy
import random
from collections import Counter
from typing import Any

import pytest

from engine.core.bucketing import AUDIENCE_SEED, in_percent
from engine.core.catalog import Catalog
from engine.core.counters import counts_hold
from engine.core.engagements import Engagement, compile_engagement
from engine.core.events import TriggerEvent, custom_event, session_event
from engine.core.matcher import evaluate
from engine.core.outcomes import Outcome
from engine.core.plan import BitCounts
from engine.core.policy import MatchPolicy
from engine.core.state import UserState
from engine.core.timestamps import format_timestamp
from engine.schemas import apply_engagement_defaults

NOW_MS = 1_795_000_000_000
NAMES = ("viewed", "bought", "shared")
CATEGORIES = ("shoes", "books", "games")
COUNTRIES = ("FR", "BE", "DE", "US")


def _reference(
    candidates: tuple[Engagement, ...],
    properties: dict[str, Any],
    user: UserState,
    timestamp_ms: int,
    policy: MatchPolicy,
    user_id: str,
) -> list[tuple[str, str]]:
    """Return (engagement id, outcome) per candidate; the winner is marked "winner"."""
    outcomes = []
    won = False
    capped = user.is_capped(timestamp_ms, policy.frequency_caps)
    for engagement in candidates:
        last_ms = user.last_delivered.get(engagement.id)
        after_ms = engagement.reeligible_after_ms
        clock = engagement.clock
        if not engagement.is_active:
            outcome = "inactive"
        elif not engagement.where(properties):
            outcome = "filter_miss"
        elif not engagement.window_start_ms <= timestamp_ms < engagement.window_end_ms or (
            clock is not None and not clock.holds(timestamp_ms)
        ):
            outcome = "outside_schedule"
        elif not engagement.audience(user.attributes) or (
            engagement.count_filters
            and not counts_hold(engagement.count_filters, user.event_times, timestamp_ms)
        ):
            outcome = "audience_miss"
        elif not in_percent(
            engagement.percent, AUDIENCE_SEED, engagement.id, user_id, engagement.hash_version
        ):
            outcome = "sampled_out"
        elif engagement.id in user.pending or (
            last_ms is not None and (after_ms is None or timestamp_ms - last_ms < after_ms)
        ):
            outcome = "not_re_eligible"
        elif not engagement.ignore_frequency_caps and capped:
            outcome = "frequency_capped"
        elif won:
            outcome = "lower_priority"
        else:
            won = True
            outcome = "winner"
        outcomes.append((engagement.id, outcome))
    return outcomes


def _engagement(rng: random.Random, index: int) -> dict[str, Any]:
    name = rng.choice(NAMES)
    trigger: dict[str, Any] = (
        {"event": "session_start"} if rng.random() < 0.3 else {"event": "custom", "name": name}
    )
    if trigger["event"] == "custom" and rng.random() < 0.6:
        trigger["where"] = rng.sample(
            [
                {
                    "property": "price",
                    "op": rng.choice(["gte", "lt"]),
                    "value": rng.choice([10, 50]),
                },
                {"property": "category", "op": "in", "value": rng.sample(CATEGORIES, 2)},
                {"property": "category", "op": "eq", "value": rng.choice(CATEGORIES)},
                {"property": "coupon", "op": rng.choice(["exists", "not_exists"])},
                {"property": "tags", "op": "contains", "value": "sale"},
            ],
            rng.choice([1, 2]),
        )
    filters: list[dict[str, Any]] = rng.sample(
        [
            {"attribute": "country", "op": "in", "value": rng.sample(COUNTRIES, 2)},
            {"attribute": "country", "op": "ne", "value": rng.choice(COUNTRIES)},
            {"attribute": "age", "op": "gte", "value": rng.choice([18, 30])},
            {"attribute": "vip", "op": "eq", "value": True},
            {"attribute": "plan", "op": "exists"},
        ],
        rng.choice([0, 1, 2]),
    )
    if rng.random() < 0.15:
        filters.append(
            {"event": rng.choice(NAMES), "op": "gte", "count": 2, "within_seconds": 3600}
        )
    document: dict[str, Any] = {
        "id": f"e-{index:03d}",
        "name": f"E {index}",
        "status": rng.choice(["active"] * 8 + ["paused", "draft"]),
        "priority": rng.randint(0, 5),
        "trigger": trigger,
        "message": {"title": "hello"},
        "audience": {"filters": filters, "percent": rng.choice([100, 100, 50, 10, 0])},
    }
    if index % 3:  # absent (version 1), 1 and 2 in turn, leaving the random draws as they were
        document["audience"]["hash_version"] = index % 3
    if rng.random() < 0.2:
        start_ms, end_ms = rng.choice(
            [(-7_200_000, 7_200_000), (60_000, 7_200_000), (-7_200_000, -60_000)]
        )
        document["schedule"] = {
            "start": format_timestamp(NOW_MS + start_ms),
            "end": format_timestamp(NOW_MS + end_ms),
        }
    elif rng.random() < 0.1:
        document["schedule"] = {"hours": {"from": "09:00", "to": "17:00"}}
    if rng.random() < 0.3:
        document["ignore_frequency_caps"] = True
    if rng.random() < 0.5:
        document["reeligibility"] = {"after_seconds": rng.choice([0, 60, 86_400])}
    return document


def _user(rng: random.Random, catalog: Catalog) -> UserState:
    attributes: dict[str, Any] = {}
    if rng.random() < 0.9:
        attributes["country"] = rng.choice([*COUNTRIES, 7])  # 7: a mistyped value
    if rng.random() < 0.8:
        attributes["age"] = rng.choice([16, 18, 29, 30, 45, 30.0, "30"])
    if rng.random() < 0.5:
        attributes["vip"] = rng.choice([True, False, 1])
    if rng.random() < 0.5:
        attributes["plan"] = rng.choice(["free", None])
    ids = [engagement.id for engagement in catalog]
    history = rng.sample(ids, rng.choice([0, 1, 3]))
    user = UserState(
        attributes,
        dict.fromkeys(attributes, NOW_MS - 60_000),
        {engagement_id: NOW_MS - rng.choice([10_000, 3_600_000]) for engagement_id in history},
        delivery_times=[NOW_MS - rng.choice([5_000, 120_000])] if rng.random() < 0.4 else [],
    )
    for _ in range(rng.choice([0, 3])):
        user.count_event(rng.choice(NAMES), NOW_MS - 1_000, catalog.counted_events)
    return user


def _event(rng: random.Random, number: int, user_id: str) -> Any:
    timestamp = format_timestamp(NOW_MS - rng.choice([0, 1_000, 30_000]))
    if rng.random() < 0.3:
        return session_event(
            {
                "event_id": f"ev-{number}",
                "user_id": user_id,
                "type": "session_start",
                "timestamp": timestamp,
                "session_id": f"s-{number}",
            }
        )
    properties: dict[str, Any] = {}
    if rng.random() < 0.9:
        properties["price"] = rng.choice([5, 10, 49.5, 50, 80, "80", True])
    if rng.random() < 0.9:
        properties["category"] = rng.choice([*CATEGORIES, None])
    if rng.random() < 0.3:
        properties["coupon"] = "X"
    if rng.random() < 0.3:
        properties["tags"] = rng.choice([["sale", "new"], ["new"], "sale!"])
    return custom_event(
        {
            "event_id": f"ev-{number}",
            "user_id": user_id,
            "name": rng.choice(NAMES),
            "timestamp": timestamp,
            "properties": properties,
        }
    )


def check_against_reference(
    rng: random.Random, catalog: Catalog, number: int, policy: MatchPolicy
) -> tuple[TriggerEvent, list[tuple[str, str]]]:
    """Match one random event of a random user, assert each candidate's outcome is the
    reference's, and return the event and the reference's outcomes."""
    user_id = f"user-{rng.randrange(50)}"
    user = _user(rng, catalog)
    event = _event(rng, number, user_id)
    before_candidates = copy.deepcopy(user)
    if catalog.count_spec(event.trigger_key) is not None:
        # evaluate() counts the event before it checks the candidates.
        before_candidates.count_event(event.event_name, event.timestamp_ms, catalog.counted_events)
    expected = _reference(
        catalog.candidates(event.trigger_key),
        event.properties,
        before_candidates,
        event.timestamp_ms,
        policy,
        user_id,
    )
    result = evaluate(event, user, catalog, NOW_MS, policy)
    actual = [(item.engagement_id, str(item.outcome)) for item in result.evaluations]
    winners = [engagement_id for engagement_id, outcome in expected if outcome == "winner"]
    resolved = expected
    if winners:
        won = dict(actual)[winners[0]]
        assert won in (Outcome.DELIVERED, Outcome.CONTROL)
        resolved = [(i, won if o == "winner" else o) for i, o in expected]
    assert actual == resolved
    return event, expected


@pytest.mark.parametrize("seed", range(6))
def test_indexed_outcomes_equal_the_checks_run_one_by_one(seed: int) -> None:
    rng = random.Random(seed)
    catalog = Catalog.build(
        compile_engagement(apply_engagement_defaults(_engagement(rng, index)), 1)
        for index in range(60)
    )
    policy = MatchPolicy()
    checked = 0
    for number in range(400):
        checked += len(check_against_reference(rng, catalog, number, policy)[1])
    assert checked > 5_000  # the catalogs gave the events many candidates


def test_bit_counts_count_each_index_like_a_counter() -> None:
    rng = random.Random(7)
    many, few = BitCounts(), BitCounts()
    expected_many, expected_few = Counter[int](), Counter[int]()
    for counts, expected, adds in ((many, expected_many, 300), (few, expected_few, 3)):
        for _ in range(adds):
            bits = rng.getrandbits(90)
            counts.add(bits)
            expected.update(index for index in range(90) if bits >> index & 1)
    assert many.counts() == dict(expected_many)
    assert few.counts() == dict(expected_few)
    # Merging works either way round: into fewer planes than the other has, and into more.
    into_few, into_many = BitCounts(), BitCounts()
    into_few.merge(few)
    into_few.merge(many)
    into_many.merge(many)
    into_many.merge(few)
    assert into_few.counts() == into_many.counts() == dict(expected_many + expected_few)
    assert BitCounts().counts() == {}
