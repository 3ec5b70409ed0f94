"""Deterministic percentage bucketing: pinned values, uniformity, seed independence."""

from __future__ import annotations

import hashlib
import math

import pytest

from engine.core.bucketing import (
    AUDIENCE_SEED,
    HASH_VERSION,
    VARIANT_SEED,
    bucket,
    hash_prefix,
    in_percent,
    position_of,
    sample_threshold,
)

USERS = [f"user-{index}" for index in range(10_000)]


def _reference_bucket(seed: str, engagement_id: str, user_id: str) -> float:
    """The documented formula, recomputed here without the function under test."""
    digest = hashlib.sha256(f"{seed}:{engagement_id}:{user_id}".encode()).digest()
    return (int.from_bytes(digest[:8], "big") >> 11) / 2**53


def test_hash_version_is_frozen() -> None:
    # Changing the formula reshuffles every user: bump HASH_VERSION and migrate instead.
    assert HASH_VERSION == 1
    assert (AUDIENCE_SEED, VARIANT_SEED) == ("audience", "variant")


@pytest.mark.parametrize(
    ("seed", "engagement_id", "user_id", "expected"),
    [
        ("audience", "half-a", "user-42", 0.7447749053566383),
        ("audience", "half-c", "user-42", 0.4465667778351309),
        ("audience", "half-d", "user-42", 0.0516608190436284),
        ("audience", "thirty-b", "user-42", 0.5773203200680045),
    ],
)
def test_pinned_values(seed: str, engagement_id: str, user_id: str, expected: float) -> None:
    assert bucket(seed, engagement_id, user_id) == expected


def test_matches_reference_formula() -> None:
    for user_id in USERS[:500]:
        for seed in (AUDIENCE_SEED, VARIANT_SEED):
            assert bucket(seed, "spring-sale", user_id) == _reference_bucket(
                seed, "spring-sale", user_id
            )


def test_prefixed_form_is_the_same_formula() -> None:
    # The matcher encodes the engagement's part once and hashes it with each user's id.
    prefix = hash_prefix(AUDIENCE_SEED, "spring-sale")
    for user_id in [*USERS[:200], "usér-ü-🙂"]:
        expected = _reference_bucket(AUDIENCE_SEED, "spring-sale", user_id)
        assert position_of(prefix, user_id.encode()) / 2**53 == expected
        for percent in (0, 12.5, 50, 100):
            assert (
                position_of(prefix, user_id.encode()) < sample_threshold(percent)
            ) == in_percent(percent, AUDIENCE_SEED, "spring-sale", user_id)


@pytest.mark.parametrize("percent", [0, 1e-12, 5, 12.5, 33.3, 50, 99.999999, 100])
def test_sample_threshold_decides_as_the_float_formula(percent: float) -> None:
    threshold = sample_threshold(percent)
    # At the threshold the float formula turns from "in" to "out".
    for position in (threshold - 2, threshold - 1, threshold, threshold + 1):
        if 0 <= position < 2**53:
            assert (position < threshold) == (position / 2**53 * 100 < percent)
    prefix = hash_prefix(AUDIENCE_SEED, "spring-sale")
    for user_id in USERS[:300]:
        assert (position_of(prefix, user_id.encode()) < threshold) == in_percent(
            percent, AUDIENCE_SEED, "spring-sale", user_id
        )


def test_uniform_over_deciles() -> None:
    counts = [0] * 10
    for user_id in USERS:
        value = bucket(AUDIENCE_SEED, "spring-sale", user_id)
        assert 0.0 <= value < 1.0
        counts[int(value * 10)] += 1
    expected = len(USERS) / 10
    sigma = math.sqrt(len(USERS) * 0.1 * 0.9)
    assert all(abs(count - expected) <= 3 * sigma for count in counts), counts


def test_seeds_are_independent() -> None:
    both = sum(
        1
        for user_id in USERS
        if bucket(AUDIENCE_SEED, "spring-sale", user_id) < 0.5
        and bucket(VARIANT_SEED, "spring-sale", user_id) < 0.5
    )
    expected = len(USERS) * 0.25
    assert abs(both - expected) <= 3 * math.sqrt(len(USERS) * 0.25 * 0.75)


def test_engagements_are_independent() -> None:
    both = sum(
        1
        for user_id in USERS
        if bucket(AUDIENCE_SEED, "spring-sale", user_id) < 0.5
        and bucket(AUDIENCE_SEED, "autumn-sale", user_id) < 0.5
    )
    assert abs(both - len(USERS) * 0.25) <= 3 * math.sqrt(len(USERS) * 0.25 * 0.75)


def test_in_percent_edges() -> None:
    assert all(in_percent(100, AUDIENCE_SEED, "e", user_id) for user_id in USERS[:200])
    assert not any(in_percent(0, AUDIENCE_SEED, "e", user_id) for user_id in USERS[:200])
    share = sum(in_percent(30, AUDIENCE_SEED, "e", user_id) for user_id in USERS) / len(USERS)
    assert abs(share - 0.30) <= 3 * math.sqrt(0.3 * 0.7 / len(USERS))


def test_in_percent_is_monotonic() -> None:
    # Raising the percentage only ever adds users: nobody already in drops out.
    for user_id in USERS[:300]:
        inside = [in_percent(percent, AUDIENCE_SEED, "e", user_id) for percent in range(101)]
        assert inside == sorted(inside)
