"""Deterministic percentage bucketing of users, modeled on growthbook-python's hashing.

Formula, hash version 1 (frozen forever: changing it reshuffles every user)::

    digest = sha256(f"{seed}:{engagement_id}:{user_id}".encode("utf-8")).digest()
    bucket = (int.from_bytes(digest[:8], "big") >> 11) / 2**53  # float in [0, 1)

Keeping the top 53 bits of the first 8 digest bytes makes the division exact: a float
holds 53 bits, and dividing all 64 could round the largest values up to 1.0.

A user is in an engagement's audience sample when ``bucket * 100 < percent``, so percent
100 admits everyone and 0 no one. Each decision uses its own seed (``AUDIENCE_SEED`` for
the sample, ``VARIANT_SEED`` for variant assignment), which keeps the decisions
independent: being sampled in says nothing about the variant drawn. The result depends
only on its inputs, so every process gives a user the same answer.
"""

from __future__ import annotations

from hashlib import sha256
from struct import Struct
from typing import Final

HASH_VERSION: Final = 1
AUDIENCE_SEED: Final = "audience"
VARIANT_SEED: Final = "variant"

_TWO_POW_53: Final = float(2**53)
_FIRST_8_BYTES: Final = Struct(">Q").unpack_from


def hash_prefix(seed: str, engagement_id: str) -> bytes:
    """Return the hashed text's part before the user id, to encode once per engagement."""
    return f"{seed}:{engagement_id}:".encode()


def position_of(prefix: bytes, user_key: bytes) -> int:
    """Return the 53-bit position of the user id ``user_key`` (UTF-8) after ``prefix``."""
    first_8_bytes: int = _FIRST_8_BYTES(sha256(prefix + user_key).digest())[0]
    return first_8_bytes >> 11


def sample_threshold(percent: float) -> int:
    """Return how many 53-bit positions fall in the first ``percent`` percent.

    ``position < sample_threshold(percent)`` decides exactly as ``bucket * 100 < percent``
    (that float expression grows with the position, so a binary search finds where it
    turns), with an integer comparison instead of float arithmetic per user.
    """
    if percent >= 100:
        return 2**53
    if percent <= 0:
        return 0
    low, high = 0, 2**53  # the answer lies in [low, high]
    while low < high:
        middle = (low + high) // 2
        if middle / _TWO_POW_53 * 100 < percent:
            low = middle + 1
        else:
            high = middle
    return low


def bucket(seed: str, engagement_id: str, user_id: str) -> float:
    """Return the user's position in [0, 1) for ``seed`` and ``engagement_id``."""
    return position_of(hash_prefix(seed, engagement_id), user_id.encode()) / _TWO_POW_53


def in_percent(percent: float, seed: str, engagement_id: str, user_id: str) -> bool:
    """Return whether the user falls within the first ``percent`` percent of buckets."""
    if percent >= 100:
        return True
    if percent <= 0:
        return False
    return bucket(seed, engagement_id, user_id) * 100 < percent
