"""Deterministic percentage bucketing: pinned values, uniformity, seed independence.

Test vectors of both hash versions are in test_core_bucketing_vectors.py.
"""

from __future__ import annotations

import hashlib
import math

import pytest

from engine.core.bucketing import (
    AUDIENCE_SEED,
    HASH_VERSIONS,
    LEGACY_HASH_VERSION,
    NEW_HASH_VERSION,
    VARIANT_SEED,
    bucket,
    hash_prefix,
    in_percent,
    mixed_position,
    position,
    position_of,
    salt_of,
    sample_threshold,
    user_hash,
)

USERS = [f"user-{index}" for index in range(10_000)]


def _reference_bucket(seed: str, engagement_id: str, user_id: str) -> float:
    """The documented formula, recomputed here without the function under test."""
    digest = hashlib.sha256(f"{seed}:{engagement_id}:{user_id}".encode()).digest()
    return (int.from_bytes(digest[:8], "big") >> 11) / 2**53


def test_hash_versions_are_frozen() -> None:
    # Changing a formula reshuffles every user of it: add a version instead.
    assert (LEGACY_HASH_VERSION, NEW_HASH_VERSION, HASH_VERSIONS) == (1, 2, (1, 2))
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
    for placed in (threshold - 2, threshold - 1, threshold, threshold + 1):
        if 0 <= placed < 2**53:
            assert (placed < threshold) == (placed / 2**53 * 100 < percent)
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


def test_unknown_hash_version_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown hash version 3"):
        position(AUDIENCE_SEED, "e", "u", 3)


MANY_USERS = [f"user-{index}" for index in range(100_000)]
# The chi-square critical value at p = 0.001 for 100 cells of known expectation (99
# degrees of freedom): a fair split exceeds it once in a thousand user sets.
_CHI2_99 = 148.2


def _chi_square(counts: list[int], expected: float) -> float:
    return sum((count - expected) ** 2 / expected for count in counts)


def test_version_2_hashes_each_user_once_for_every_engagement() -> None:
    # The matcher hashes the user once per event and mixes in each engagement's salt.
    for user_id in [*USERS[:200], "usér-ü-🙂", ""]:
        hashed = user_hash(user_id.encode())
        for engagement_id in ("spring-sale", "autumn-sale"):
            for seed in (AUDIENCE_SEED, VARIANT_SEED):
                drawn = mixed_position(hashed, salt_of(seed, engagement_id))
                assert drawn == position(seed, engagement_id, user_id, 2)
                assert 0 <= drawn < 2**53


def test_version_2_is_uniform_over_a_hundred_buckets() -> None:
    counts = [0] * 100
    salt = salt_of(AUDIENCE_SEED, "spring-sale")
    for user_id in MANY_USERS:
        counts[mixed_position(user_hash(user_id.encode()), salt) * 100 >> 53] += 1
    assert _chi_square(counts, len(MANY_USERS) / 100) < _CHI2_99, counts


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ((AUDIENCE_SEED, "spring-sale"), (VARIANT_SEED, "spring-sale")),
        ((AUDIENCE_SEED, "spring-sale"), (AUDIENCE_SEED, "autumn-sale")),
        ((AUDIENCE_SEED, "e-1"), (AUDIENCE_SEED, "e-2")),  # ids one character apart
    ],
)
def test_version_2_draws_are_independent(first: tuple[str, str], second: tuple[str, str]) -> None:
    # Every cell of the 10 x 10 grid of the two draws' deciles holds a hundredth of users.
    cells = [0] * 100
    salts = salt_of(*first), salt_of(*second)
    for user_id in MANY_USERS:
        hashed = user_hash(user_id.encode())
        row, column = (mixed_position(hashed, salt) * 10 >> 53 for salt in salts)
        cells[row * 10 + column] += 1
    assert _chi_square(cells, len(MANY_USERS) / 100) < _CHI2_99, cells


def test_version_2_in_percent_edges_and_monotony() -> None:
    assert all(in_percent(100, AUDIENCE_SEED, "e", user_id, 2) for user_id in USERS[:200])
    assert not any(in_percent(0, AUDIENCE_SEED, "e", user_id, 2) for user_id in USERS[:200])
    share = sum(in_percent(30, AUDIENCE_SEED, "e", user_id, 2) for user_id in USERS) / len(USERS)
    assert abs(share - 0.30) <= 3 * math.sqrt(0.3 * 0.7 / len(USERS))
    for user_id in USERS[:300]:
        inside = [in_percent(percent, AUDIENCE_SEED, "e", user_id, 2) for percent in range(101)]
        assert inside == sorted(inside)


def test_versions_place_users_differently() -> None:
    # Changing an engagement's version draws its users again: about half of the users
    # in a 50% sample under one version are out under the other.
    both = sum(
        1
        for user_id in USERS
        if bucket(AUDIENCE_SEED, "spring-sale", user_id, 1) < 0.5
        and bucket(AUDIENCE_SEED, "spring-sale", user_id, 2) < 0.5
    )
    assert abs(both - len(USERS) * 0.25) <= 3 * math.sqrt(len(USERS) * 0.25 * 0.75)
