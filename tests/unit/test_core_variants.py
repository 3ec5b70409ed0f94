"""Variant and control assignment: deterministic, sticky, weighted, independent of sampling."""

from __future__ import annotations

from collections import Counter
from math import sqrt
from typing import Any

import pytest

from engine.core.bucketing import AUDIENCE_SEED, VARIANT_SEED, bucket, in_percent
from engine.core.engagements import compile_engagement
from engine.core.variants import CONTROL, assign_variant, compile_variants
from engine.errors import InvalidRecord

USERS = [f"user-{index}" for index in range(10_000)]
WEIGHTS = {"A": 50, "B": 30, "C": 20}


def _engagement(**fields: Any) -> Any:
    document = {
        "id": "hero-banner",
        "status": "active",
        "trigger": {"event": "session_start"},
        "message": {"title": "Default"},
        **fields,
    }
    return compile_engagement(document, 1)


def _split(control_percent: float = 10) -> Any:
    return _engagement(
        variants=[
            {"id": name, "weight": weight, "message": {"title": name}}
            for name, weight in WEIGHTS.items()
        ],
        control_percent=control_percent,
    )


def _label(engagement: Any, user_id: str) -> str:
    variant = assign_variant(engagement.variants, engagement.id, user_id)
    return CONTROL if variant is None else variant.id


def _within_three_sigma(count: int, total: int, expected: float) -> bool:
    sigma = sqrt(expected * (1 - expected) / total)
    return abs(count / total - expected) <= 3 * sigma


def test_split_and_control_shares_match_weights() -> None:
    engagement = _split(control_percent=10)
    counts = Counter(_label(engagement, user_id) for user_id in USERS)
    expected = {CONTROL: 0.10} | {name: 0.90 * weight / 100 for name, weight in WEIGHTS.items()}
    for label, share in expected.items():
        assert _within_three_sigma(counts[label], len(USERS), share), (label, counts)


def test_weights_are_normalised() -> None:
    scaled = _engagement(
        variants=[
            {"id": name, "weight": weight / 10, "message": {}} for name, weight in WEIGHTS.items()
        ],
        control_percent=10,
    )
    reference = _split(control_percent=10)
    assert [_label(scaled, u) for u in USERS[:2_000]] == [
        _label(reference, u) for u in USERS[:2_000]
    ]


def test_assignment_is_sticky_across_calls_and_compilations() -> None:
    first, second = _split(), _split()
    labels = [_label(first, user_id) for user_id in USERS[:1_000]]
    assert labels == [_label(first, user_id) for user_id in USERS[:1_000]]
    assert labels == [_label(second, user_id) for user_id in USERS[:1_000]]


def test_assignment_follows_the_documented_formula() -> None:
    engagement = _split(control_percent=10)
    for user_id in USERS[:500]:
        position = bucket(VARIANT_SEED, "hero-banner", user_id) * 100
        if position < 10:
            expected = CONTROL
        else:
            scaled = (position - 10) / 90 * 100
            expected = "A" if scaled < 50 else "B" if scaled < 80 else "C"
        assert _label(engagement, user_id) == expected


def test_assignment_is_independent_of_the_audience_sample() -> None:
    engagement = _split(control_percent=10)
    sampled_in = [u for u in USERS if in_percent(50, AUDIENCE_SEED, "hero-banner", u)]
    assert _within_three_sigma(len(sampled_in), len(USERS), 0.5)
    counts = Counter(_label(engagement, user_id) for user_id in sampled_in)
    assert _within_three_sigma(counts[CONTROL], len(sampled_in), 0.10)
    assert _within_three_sigma(counts["A"], len(sampled_in), 0.45)
    # Changing the audience percent changes who is sampled, never anyone's variant.
    narrower = _engagement(
        variants=[
            {"id": name, "weight": weight, "message": {"title": name}}
            for name, weight in WEIGHTS.items()
        ],
        control_percent=10,
        audience={"percent": 5},
    )
    assert all(_label(narrower, u) == _label(engagement, u) for u in USERS[:1_000])


def test_without_variants_users_get_the_default_variant() -> None:
    engagement = _engagement(control_percent=25)
    counts = Counter(_label(engagement, user_id) for user_id in USERS)
    assert set(counts) == {CONTROL, "default"}
    assert _within_three_sigma(counts[CONTROL], len(USERS), 0.25)
    variant = assign_variant(engagement.variants, engagement.id, "someone-treated")
    if variant is not None:
        assert variant.message == {"title": "Default"}


def test_common_case_needs_no_hash() -> None:
    assert _engagement().variants.split is None
    single = _engagement(variants=[{"id": "A", "weight": 3, "message": {}}])
    assert single.variants.split is None
    assert assign_variant(single.variants, single.id, "anyone").id == "A"  # type: ignore[union-attr]


def test_control_100_with_variants_holds_out_everyone() -> None:
    engagement = _split(control_percent=100)
    assert {_label(engagement, user_id) for user_id in USERS[:1_000]} == {CONTROL}


@pytest.mark.parametrize(
    ("variants", "control", "mentions"),
    [
        ([{"id": "A", "weight": 1, "message": {}}] * 2, 0, "duplicate variant id 'A'"),
        ([{"id": "A", "weight": 0, "message": {}}], 0, "weight must be > 0"),
        ([{"id": "A", "weight": -2, "message": {}}], 0, "weight must be > 0"),
        ([{"id": "A", "weight": True, "message": {}}], 0, "finite number"),
        ([{"id": "A", "weight": 1, "message": {}}], 101, "control_percent"),
        ([{"id": "A", "weight": 1, "message": {}}], -1, "control_percent"),
        (None, float("nan"), "control_percent"),
        ([], 0, "non-empty array"),
        ([{"id": "control", "weight": 1, "message": {}}], 0, "reserved"),
        ([{"id": "default", "weight": 1, "message": {}}], 0, "reserved"),
        ([{"id": "bad id", "weight": 1, "message": {}}], 0, "1-64 characters"),
        ([{"id": "A", "weight": 1}], 0, "message must be an object"),
    ],
)
def test_bad_sets_are_refused(variants: Any, control: Any, mentions: str) -> None:
    fields: dict[str, Any] = {"control_percent": control}
    if variants is not None:
        fields["variants"] = variants
    with pytest.raises(InvalidRecord) as raised:
        _engagement(**fields)
    assert raised.value.reason == "invalid_engagement"
    assert raised.value.detail.startswith("hero-banner: ")
    assert mentions in raised.value.detail


def test_variant_messages_are_private_copies() -> None:
    message = {"title": "A", "nested": {"k": 1}}
    variants = compile_variants([{"id": "A", "weight": 1, "message": message}], 50, {})
    message["nested"]["k"] = 2  # type: ignore[index]
    assert variants.by_id["A"].message == {"title": "A", "nested": {"k": 1}}


def test_assignment_is_the_same_in_a_new_process() -> None:
    """A restarted worker is a new process (new hash seed): users keep their variant."""
    import json
    import os
    import subprocess
    import sys

    sample = USERS[:500]
    script = (
        "import json, sys\n"
        "from tests.unit.test_core_variants import _label, _split\n"
        "engagement = _split(control_percent=10)\n"
        "print(json.dumps([_label(engagement, user) for user in json.load(sys.stdin)]))\n"
    )
    environment = {**os.environ, "PYTHONHASHSEED": "12345"}
    result = subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps(sample),
        capture_output=True,
        text=True,
        check=True,
        env=environment,
    )
    engagement = _split(control_percent=10)
    assert json.loads(result.stdout) == [_label(engagement, user) for user in sample]
