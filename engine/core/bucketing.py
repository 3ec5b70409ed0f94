"""Deterministic percentage bucketing of users: two hash versions, each frozen forever.

Every engagement draws a user's *position*, an integer in [0, 2**53), once per decision:
the audience sample with seed ``AUDIENCE_SEED`` and the control group and variant with
seed ``VARIANT_SEED``, so the two decisions are independent. ``audience.hash_version``
says which formula an engagement uses for both; absent means 1 (engagements written
before versions existed), and ``declic engagements apply`` gives new engagements 2.

Hash version 1, modeled on growthbook-python's hashing::

    digest = sha256(f"{seed}:{engagement_id}:{user_id}".encode("utf-8")).digest()
    position = int.from_bytes(digest[:8], "big") >> 11

It costs one SHA-256 per user, engagement and decision.

Hash version 2 hashes the user once for every engagement, then mixes in the engagement
(all arithmetic modulo 2**64; ``mix64`` is the splitmix64 finalizer)::

    user_hash = int.from_bytes(blake2b(user_id.encode("utf-8"), digest_size=8).digest(), "big")
    salt = int.from_bytes(blake2b(f"{seed}:{engagement_id}".encode("utf-8"),
                                  digest_size=8).digest(), "big")
    position = mix64(user_hash ^ salt) >> 11

    def mix64(z):
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) % 2**64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) % 2**64
        return z ^ (z >> 31)

BLAKE2b is taken with an 8-byte digest (``digest_size=8``: no key, salt or
personalization), which is not the first 8 bytes of a longer BLAKE2b digest. The salt
is computed once per engagement and the user hash once per event, so each engagement
costs only the mixing step. ``mix64`` is a bijection whose every output bit depends on
every input bit, so distinct salts give independent-looking positions.

Both versions then decide alike. ``bucket = position / 2**53``, a float in [0, 1):
keeping the top 53 of 64 bits makes the division exact (a float holds 53 bits, and
dividing all 64 could round the largest values up to 1.0). A user is in an engagement's
audience sample when ``bucket * 100 < percent``, so percent 100 admits everyone and 0 no
one. The result depends only on its inputs, so every process gives a user the same answer.
"""

from __future__ import annotations

from hashlib import blake2b, sha256
from struct import Struct
from typing import Final

# Engagements without audience.hash_version: they keep version 1, and every user's answer.
LEGACY_HASH_VERSION: Final = 1
# What `declic engagements apply` gives a new engagement that does not say.
NEW_HASH_VERSION: Final = 2
HASH_VERSIONS: Final = (1, 2)
AUDIENCE_SEED: Final = "audience"
VARIANT_SEED: Final = "variant"

_TWO_POW_53: Final = float(2**53)
_MASK_64: Final = 2**64 - 1
_FIRST_8_BYTES: Final = Struct(">Q").unpack_from


def hash_prefix(seed: str, engagement_id: str) -> bytes:
    """Return version 1's hashed text before the user id, to encode once per engagement."""
    return f"{seed}:{engagement_id}:".encode()


def position_of(prefix: bytes, user_key: bytes) -> int:
    """Return the version 1 position of the user id ``user_key`` (UTF-8) after ``prefix``."""
    first_8_bytes: int = _FIRST_8_BYTES(sha256(prefix + user_key).digest())[0]
    return first_8_bytes >> 11


def user_hash(user_key: bytes) -> int:
    """Return version 2's hash of the user id ``user_key`` (UTF-8), shared by engagements."""
    hashed: int = _FIRST_8_BYTES(blake2b(user_key, digest_size=8).digest())[0]
    return hashed


def salt_of(seed: str, engagement_id: str) -> int:
    """Return version 2's salt of one engagement's decision, computed once per engagement."""
    salt: int = _FIRST_8_BYTES(blake2b(f"{seed}:{engagement_id}".encode(), digest_size=8).digest())[
        0
    ]
    return salt


def mixed_position(hashed: int, salt: int) -> int:
    """Return the version 2 position of the user whose ``user_hash`` is ``hashed``."""
    z = hashed ^ salt
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK_64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK_64
    return (z ^ (z >> 31)) >> 11


def position(
    seed: str, engagement_id: str, user_id: str, hash_version: int = LEGACY_HASH_VERSION
) -> int:
    """Return the user's position in [0, 2**53) for one decision, in ``hash_version``."""
    if hash_version == LEGACY_HASH_VERSION:
        return position_of(hash_prefix(seed, engagement_id), user_id.encode())
    if hash_version == NEW_HASH_VERSION:
        return mixed_position(user_hash(user_id.encode()), salt_of(seed, engagement_id))
    raise ValueError(f"unknown hash version {hash_version!r}")


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


def bucket(
    seed: str, engagement_id: str, user_id: str, hash_version: int = LEGACY_HASH_VERSION
) -> float:
    """Return the user's position in [0, 1) for ``seed`` and ``engagement_id``."""
    return position(seed, engagement_id, user_id, hash_version) / _TWO_POW_53


def in_percent(
    percent: float,
    seed: str,
    engagement_id: str,
    user_id: str,
    hash_version: int = LEGACY_HASH_VERSION,
) -> bool:
    """Return whether the user falls within the first ``percent`` percent of buckets."""
    if percent >= 100:
        return True
    if percent <= 0:
        return False
    return bucket(seed, engagement_id, user_id, hash_version) * 100 < percent
