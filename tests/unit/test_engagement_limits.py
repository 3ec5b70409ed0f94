"""Engagements that would make matching pathological are refused, naming the limit.

Each limit is stated twice, as ``maxItems`` (or ``maxContains``) in
``schemas/engagement.schema.json`` and as a named constant of the core compile: a test
holds the two equal, and each is tested at the limit (accepted) and one past it (refused,
by the schema and by the core, with the number in the message).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from engine.core.counters import MAX_COUNT, MAX_COUNT_FILTERS
from engine.core.engagements import MAX_ELEMENTS, compile_engagement
from engine.core.operators import MAX_FILTERS, MAX_IN_VALUES
from engine.core.pending import MAX_CANCEL_RULES
from engine.core.variants import MAX_VARIANTS
from engine.errors import InvalidRecord
from engine.schemas import apply_engagement_defaults, load_schema, validator


def _document(**fields: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "id": "big",
        "name": "Big",
        "status": "active",
        "trigger": {"event": "custom", "name": "Open"},
        "message": {"title": "Hi"},
    }
    return document | fields


def _where(count: int) -> list[dict[str, Any]]:
    return [{"property": f"p{index}", "op": "exists"} for index in range(count)]


def _attribute_filters(count: int) -> list[dict[str, Any]]:
    return [{"attribute": f"a{index}", "op": "exists"} for index in range(count)]


def _count_filters(count: int) -> list[dict[str, Any]]:
    return [
        {"event": f"e{index}", "op": "gte", "count": 1, "within_seconds": 60}
        for index in range(count)
    ]


def _delayed(cancel_on: list[dict[str, Any]]) -> dict[str, Any]:
    return {"event": "custom", "name": "Open", "delay_seconds": 60, "cancel_on": cancel_on}


# name: (core constant, schema location of the number, keyword, document with n items,
#        instance path of the violation)
LIMITS: dict[str, tuple[int, str, str, Callable[[int], dict[str, Any]], str]] = {
    "trigger.where": (
        MAX_FILTERS,
        "/properties/trigger/properties/where",
        "maxItems",
        lambda n: _document(trigger={"event": "custom", "name": "Open", "where": _where(n)}),
        "trigger.where",
    ),
    "audience.filters": (
        MAX_FILTERS,
        "/properties/audience/properties/filters",
        "maxItems",
        lambda n: _document(audience={"filters": _attribute_filters(n)}),
        "audience.filters",
    ),
    "audience count filters": (
        MAX_COUNT_FILTERS,
        "/properties/audience/properties/filters",
        "maxContains",
        lambda n: _document(audience={"filters": _count_filters(n)}),
        "audience.filters",
    ),
    "trigger.cancel_on": (
        MAX_CANCEL_RULES,
        "/properties/trigger/properties/cancel_on",
        "maxItems",
        lambda n: _document(trigger=_delayed([{"event": f"e{i}"} for i in range(n)])),
        "trigger.cancel_on",
    ),
    "cancel_on where": (
        MAX_FILTERS,
        "/$defs/cancel_rule/properties/where",
        "maxItems",
        lambda n: _document(trigger=_delayed([{"event": "Buy", "where": _where(n)}])),
        "trigger.cancel_on[0].where",
    ),
    "conversion where": (
        MAX_FILTERS,
        "/$defs/conversion/properties/where",
        "maxItems",
        lambda n: _document(conversion={"event": "Buy", "window_seconds": 60, "where": _where(n)}),
        "conversion.where",
    ),
    "in values": (
        MAX_IN_VALUES,
        "/$defs/operator_value_rules/allOf/1/then/properties/value",
        "maxItems",
        lambda n: _document(
            audience={"filters": [{"attribute": "country", "op": "in", "value": list(range(n))}]}
        ),
        "audience.filters[0].value",
    ),
    "variants": (
        MAX_VARIANTS,
        "/properties/variants",
        "maxItems",
        lambda n: _document(
            variants=[{"id": f"v{i}", "weight": 1, "message": {"title": "Hi"}} for i in range(n)]
        ),
        "variants",
    ),
    "elements": (
        MAX_ELEMENTS,
        "/properties/elements",
        "maxItems",
        lambda n: _document(elements=[{"element": f"b{i}", "metric": "m"} for i in range(n)]),
        "elements",
    ),
}


def _schema_node(location: str) -> dict[str, Any]:
    node: Any = load_schema("engagement")
    for token in location.strip("/").split("/"):
        node = node[int(token)] if isinstance(node, list) else node[token]
    assert isinstance(node, dict)
    return node


@pytest.mark.parametrize("name", sorted(LIMITS))
def test_the_schema_states_the_core_limit(name: str) -> None:
    limit, location, keyword, _, _ = LIMITS[name]
    node = _schema_node(location)
    assert node[keyword] == limit
    assert str(limit) in node["errorMessage"]
    assert str(limit) in node.get("description", "") or name == "in values"


def test_the_in_limit_is_in_the_operator_description() -> None:
    described = load_schema("engagement")["$defs"]["operator"]["description"]
    assert f"at most {MAX_IN_VALUES} scalars" in described


def test_the_count_maximum_is_the_core_one() -> None:
    node = _schema_node("/$defs/event_count_condition/properties/count")
    assert node["maximum"] == MAX_COUNT


@pytest.mark.parametrize("name", sorted(LIMITS))
def test_at_the_limit_schema_and_core_accept(name: str) -> None:
    limit, _, _, document_with, _ = LIMITS[name]
    document = document_with(limit)
    assert validator("engagement").errors(document) == []
    compile_engagement(apply_engagement_defaults(document), 1)


@pytest.mark.parametrize("name", sorted(LIMITS))
def test_one_past_the_limit_the_schema_refuses_naming_it(name: str) -> None:
    limit, _, _, document_with, path = LIMITS[name]
    violations = validator("engagement").errors(document_with(limit + 1))
    assert [violation.path for violation in violations] == [path]
    assert str(limit) in violations[0].message


@pytest.mark.parametrize("name", sorted(LIMITS))
def test_one_past_the_limit_the_core_refuses_naming_it(name: str) -> None:
    limit, _, _, document_with, _ = LIMITS[name]
    with pytest.raises(InvalidRecord) as raised:
        compile_engagement(apply_engagement_defaults(document_with(limit + 1)), 1)
    assert raised.value.reason == "invalid_engagement"
    assert raised.value.detail.startswith("big: ")
    assert str(limit) in raised.value.detail
    assert str(limit + 1) in raised.value.detail  # what the file holds, too


def test_count_filters_and_attribute_filters_share_the_audience_limit() -> None:
    filters = _count_filters(MAX_COUNT_FILTERS) + _attribute_filters(
        MAX_FILTERS - MAX_COUNT_FILTERS
    )
    document = _document(audience={"filters": filters})
    assert validator("engagement").errors(document) == []
    compile_engagement(document, 1)
    filters.append({"attribute": "one-more", "op": "exists"})
    with pytest.raises(InvalidRecord, match=str(MAX_FILTERS)):
        compile_engagement(_document(audience={"filters": filters}), 1)
