"""Test vectors of both hash versions (tests/golden/bucketing), pinned when each appeared.

Version 1's were taken from the code before hash versions existed. A failing case here
means users would be reshuffled: fix the code, never the vectors.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from engine.core.bucketing import AUDIENCE_SEED, VARIANT_SEED, in_percent, position
from engine.core.variants import CONTROL, assign_variant, compile_variants

GOLDEN = Path(__file__).parents[1] / "golden" / "bucketing"
VECTORS: dict[int, dict[str, Any]] = {
    version: json.loads((GOLDEN / f"hash-v{version}.json").read_text("utf-8")) for version in (1, 2)
}
CASES = [
    pytest.param(version, case, id=f"v{version}-{index}")
    for version, vectors in VECTORS.items()
    for index, case in enumerate(vectors["cases"])
]
SPLITS = [
    pytest.param(version, split, id=f"v{version}-{split['name']}")
    for version, vectors in VECTORS.items()
    for split in vectors["splits"]
]


def _reference_position(version: int, seed: str, engagement_id: str, user_id: str) -> int:
    """The README's formulas, recomputed here without engine.core.bucketing."""
    if version == 1:
        digest = hashlib.sha256(f"{seed}:{engagement_id}:{user_id}".encode()).digest()
        return int.from_bytes(digest[:8], "big") >> 11
    user_hash = int.from_bytes(hashlib.blake2b(user_id.encode(), digest_size=8).digest(), "big")
    salt_text = f"{seed}:{engagement_id}".encode()
    salt = int.from_bytes(hashlib.blake2b(salt_text, digest_size=8).digest(), "big")
    z = user_hash ^ salt
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) % 2**64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) % 2**64
    return (z ^ (z >> 31)) >> 11


@pytest.mark.parametrize(("version", "case"), CASES)
def test_positions_and_samples(version: int, case: dict[str, Any]) -> None:
    engagement_id, user_id = case["engagement_id"], case["user_id"]
    for seed, field in ((AUDIENCE_SEED, "audience_position"), (VARIANT_SEED, "variant_position")):
        assert position(seed, engagement_id, user_id, version) == case[field]
        assert _reference_position(version, seed, engagement_id, user_id) == case[field]
    decisions = [
        in_percent(percent, AUDIENCE_SEED, engagement_id, user_id, version)
        for percent in VECTORS[version]["percents"]
    ]
    assert decisions == case["in_percent"]


@pytest.mark.parametrize(("version", "split"), SPLITS)
def test_variant_assignments(version: int, split: dict[str, Any]) -> None:
    specs = split["variants"]
    if specs is not None:
        specs = [{**spec, "message": {}} for spec in specs]
    variants = compile_variants(specs, split["control_percent"], {"title": "x"})
    assigned = []
    for case in VECTORS[version]["cases"]:
        variant = assign_variant(variants, case["engagement_id"], case["user_id"], version)
        assigned.append(CONTROL if variant is None else variant.id)
    assert assigned == split["assigned"]


def test_version_1_is_the_default() -> None:
    # Callers that do not say, like engagements that do not, get version 1's answers.
    case = VECTORS[1]["cases"][0]
    assert (
        position(AUDIENCE_SEED, case["engagement_id"], case["user_id"]) == case["audience_position"]
    )
