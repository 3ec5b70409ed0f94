"""Run every golden case under tests/golden against the matching core.

Matching cases (tests/golden/matching/*.json) give engagements, a stored user state, one
input record and the expected outcome per candidate engagement. State attributes without
an entry in ``attribute_times`` count as set at epoch 0. Expected deliveries are compared
field by field on the fields they list, in emission order.

Interaction cases (tests/golden/interactions/*.json) give a stored delivery (or null) and
interaction records applied in turn, each with the expected impression or error reason.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from engine.core.catalog import Catalog
from engine.core.engagements import compile_engagement
from engine.core.events import custom_event, interaction, session_event
from engine.core.interactions import join_interaction
from engine.core.matcher import MatchPolicy, evaluate
from engine.core.state import DeliveryState, UserState
from engine.core.timestamps import parse_timestamp
from engine.errors import InvalidRecord

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
MATCHING = sorted((GOLDEN / "matching").glob("*.json"))
INTERACTIONS = sorted((GOLDEN / "interactions").glob("*.json"))


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _user_state(state: dict[str, Any]) -> UserState:
    attributes = state.get("attributes", {})
    times = {name: parse_timestamp(at) for name, at in state.get("attribute_times", {}).items()}
    return UserState(
        attributes=attributes,
        attribute_times={name: times.get(name, 0) for name in attributes},
        last_delivered={
            engagement_id: parse_timestamp(at)
            for engagement_id, at in state.get("last_delivered", {}).items()
        },
    )


def test_golden_cases_exist() -> None:
    assert len(MATCHING) >= 25
    assert len(INTERACTIONS) >= 6


@pytest.mark.parametrize("path", MATCHING, ids=[path.stem for path in MATCHING])
def test_matching_case(path: Path) -> None:
    case = _load(path)
    expected = case["expected"]
    catalog = Catalog.build(
        compile_engagement(item["engagement"], item["version"]) for item in case["engagements"]
    )
    user = _user_state(case["state"])
    build_event = {"sessions": session_event, "custom-events": custom_event}[case["event"]["topic"]]
    if "error" in expected:
        with pytest.raises(InvalidRecord) as raised:
            build_event(case["event"]["record"])
        assert raised.value.reason == expected["error"]
        return
    event = build_event(case["event"]["record"])

    result = evaluate(
        event, user, catalog, parse_timestamp(case["now"]), MatchPolicy(**case.get("policy", {}))
    )

    outcomes = {item.engagement_id: str(item.outcome) for item in result.evaluations}
    assert outcomes == expected["outcomes"]
    if "evaluation_order" in expected:
        assert [item.engagement_id for item in result.evaluations] == expected["evaluation_order"]
    assert len(result.deliveries) == len(expected["deliveries"])
    for delivery, wanted in zip(result.deliveries, expected["deliveries"], strict=True):
        assert {key: delivery[key] for key in wanted} == wanted
    assert result.user_changed is expected["user_changed"]
    if "attributes" in expected:
        assert dict(user.attributes) == expected["attributes"]
    if "last_delivered" in expected:
        wanted_times = {key: parse_timestamp(at) for key, at in expected["last_delivered"].items()}
        assert dict(user.last_delivered) == wanted_times


def _reference_bucket(seed: str, engagement_id: str, user_id: str) -> float:
    """Recompute the documented hash formula without calling engine.core.bucketing."""
    digest = hashlib.sha256(f"{seed}:{engagement_id}:{user_id}".encode()).digest()
    return (int.from_bytes(digest[:8], "big") >> 11) / 2**53


def test_partial_percent_case_agrees_with_reference_formula() -> None:
    case = _load(GOLDEN / "matching" / "percent_partial.json")
    user_id = case["event"]["record"]["user_id"]
    for item in case["engagements"]:
        engagement = item["engagement"]
        inside = _reference_bucket("audience", engagement["id"], user_id) * 100 < float(
            engagement["audience"]["percent"]
        )
        expected = case["expected"]["outcomes"][engagement["id"]]
        assert expected == ("delivered" if inside else "sampled_out"), engagement["id"]


def _delivery_state(data: dict[str, Any] | None) -> DeliveryState | None:
    if data is None:
        return None
    return DeliveryState(
        delivery_id=data["delivery_id"],
        engagement_id=data["engagement_id"],
        engagement_version=data["engagement_version"],
        variant=data["variant"],
        user_id=data["user_id"],
        created_at_ms=parse_timestamp(data["created_at"]),
    )


@pytest.mark.parametrize("path", INTERACTIONS, ids=[path.stem for path in INTERACTIONS])
def test_interaction_case(path: Path) -> None:
    case = _load(path)
    delivery = _delivery_state(case["delivery"])
    for step in case["steps"]:
        wanted = step["expected"]
        if "error" in wanted:
            with pytest.raises(InvalidRecord) as raised:
                join_interaction(interaction(step["record"]), delivery)
            assert raised.value.reason == wanted["error"]
        else:
            assert join_interaction(interaction(step["record"]), delivery) == wanted["impression"]
    if "expected_kinds_seen" in case:
        assert delivery is not None
        assert sorted(delivery.kinds_seen) == case["expected_kinds_seen"]
