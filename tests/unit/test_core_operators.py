"""Filter compilation: operator semantics beyond the golden cases, and compile errors."""

from __future__ import annotations

import itertools
import math
import operator

import pytest

from engine.core.operators import OPERATORS, compile_filter, compile_filters, json_equal
from engine.errors import InvalidRecord

ODD_VALUES: list[object] = [
    None,
    True,
    False,
    0,
    -1,
    1.5,
    math.nan,
    math.inf,
    "",
    "abc",
    [],
    [1, "a", None, [2]],
    {},
    {"k": [1]},
    object(),
]

SPEC_VALUES: dict[str, list[object]] = {
    "eq": [1, "a", True, [1], {"k": 1}],
    "ne": [1, "a", True, [1]],
    "gt": [1, 1.5, "a"],
    "gte": [0],
    "lt": ["m"],
    "lte": [2.5],
    "in": [[1, "a", True, [1], {"k": 1}], []],
    "not_in": [[1, "a"], []],
    "exists": [None],
    "not_exists": [None],
    "contains": ["a", 1, [1], True],
}


def test_every_operator_has_spec_values() -> None:
    assert set(SPEC_VALUES) == OPERATORS


def test_predicates_never_raise_on_odd_values() -> None:
    for op, values in SPEC_VALUES.items():
        for target, odd in itertools.product(values, ODD_VALUES):
            predicate = compile_filter({"property": "p", "op": op, "value": target}, "property")
            assert predicate({"p": odd}) in (True, False)
            assert predicate({}) is (op in ("ne", "not_in", "not_exists"))


@pytest.mark.parametrize(
    ("op", "target", "value", "expected"),
    [
        ("eq", 1, 1.0, True),
        ("eq", 1.0, 1, True),
        ("eq", 1, True, False),
        ("eq", True, 1, False),
        ("eq", False, 0, False),
        ("eq", [1, [True]], [1.0, [True]], True),
        ("eq", [1, [True]], [1, [1]], False),
        ("eq", {"a": [1]}, {"a": [1.0]}, True),
        ("eq", {"a": 1}, {"a": 1, "b": 2}, False),
        ("ne", 1, True, True),
        ("gt", 1, math.nan, False),
        ("lt", 10, -math.inf, True),
        ("gt", 0, False, False),
        ("gte", "2026-01-01", "2026-11-23", True),
        ("in", [0, 1], False, False),
        ("in", [False], 0, False),
        ("in", [False], False, True),
        ("in", [[1, 2]], [1.0, 2], True),
        ("in", [{"k": 1}], {"k": 1}, True),
        ("not_in", [True], 1, True),
        ("contains", 1, [1.0, 2], True),
        ("contains", 1, [True], False),
        ("contains", [1], [[1]], True),
        ("contains", "", "anything", True),
        ("exists", None, False, True),
        ("exists", None, "", True),
        ("exists", None, [], True),
    ],
)
def test_operator_semantics(op: str, target: object, value: object, expected: bool) -> None:
    predicate = compile_filter({"attribute": "a", "op": op, "value": target}, "attribute")
    assert predicate({"a": value}) is expected


def test_json_equal_rules() -> None:
    assert json_equal(None, None)
    assert not json_equal(None, 0)
    assert json_equal([1, "a"], (1.0, "a"))
    assert not json_equal([1, 2], [1])


def test_empty_filter_list_matches_everything() -> None:
    assert compile_filters([], "attribute")({}) is True


def test_filter_list_requires_all() -> None:
    predicate = compile_filters(
        [
            {"attribute": "country", "op": "eq", "value": "FR"},
            {"attribute": "age", "op": "gte", "value": 18},
        ],
        "attribute",
    )
    assert predicate({"country": "FR", "age": 18})
    assert not predicate({"country": "FR", "age": 17})
    assert not predicate({"age": 30})


@pytest.mark.parametrize(
    "spec",
    [
        {"attribute": "a", "op": "matches", "value": "x"},
        {"attribute": "a", "op": "eq"},
        {"attribute": "a", "op": "gt", "value": [1]},
        {"attribute": "a", "op": "gt", "value": True},
        {"attribute": "a", "op": "in", "value": "FR"},
        {"attribute": "a", "op": "not_in", "value": {"FR": 1}},
        {"attribute": "", "op": "eq", "value": 1},
        {"property": "a", "op": "eq", "value": 1},  # wrong key field for an audience filter
        {"attribute": 5, "op": "eq", "value": 1},
    ],
)
def test_invalid_specs_fail_at_compile_time(spec: dict[str, object]) -> None:
    with pytest.raises(InvalidRecord) as raised:
        compile_filter(spec, "attribute")
    assert raised.value.reason == "invalid_engagement"


def test_non_object_spec_in_list() -> None:
    with pytest.raises(InvalidRecord):
        compile_filters(["country eq FR"], "attribute")


def _reference(op: str, target: object, value: object) -> bool:
    """The documented semantics, written independently of engine.core.operators."""

    def number(item: object) -> bool:
        return type(item) in (int, float)

    def equal(left: object, right: object) -> bool:
        if number(left) and number(right):
            return bool(left == right)
        if type(left) is not type(right):
            return False
        if isinstance(left, list) and isinstance(right, list):
            return len(left) == len(right) and all(map(equal, left, right))
        if isinstance(left, dict) and isinstance(right, dict):
            return left.keys() == right.keys() and all(equal(left[k], right[k]) for k in left)
        return bool(left == right) if isinstance(left, str | bool) else left is right

    if value is None:
        return op in ("ne", "not_in", "not_exists")
    if op in ("exists", "not_exists"):
        return op == "exists"
    if op in ("eq", "ne"):
        return equal(value, target) is (op == "eq")
    if op in ("in", "not_in"):
        assert isinstance(target, list)
        return any(equal(value, item) for item in target) is (op == "in")
    if op == "contains":
        if isinstance(value, str):
            return isinstance(target, str) and target in value
        return isinstance(value, list) and any(equal(item, target) for item in value)
    comparable = (number(value) and number(target)) or (
        isinstance(value, str) and isinstance(target, str)
    )
    if not comparable:
        return False
    ordering = {"gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le}[op]
    return bool(ordering(value, target))


EXTRA_TARGETS: dict[str, list[object]] = {
    "eq": [1.0, "FR", False],
    "ne": ["FR", 0.5],
    "gt": [-1, 0.5, "b"],
    "in": [["FR", "BE"], [1, 2.5], ["1", 1]],
    "not_in": [["FR", "BE"], [True]],
    "contains": ["FR"],
}


def test_compiled_predicates_agree_with_reference() -> None:
    values: list[object] = [*ODD_VALUES, "FR", "b", "a", 1.0, 2.5, [1.0], {"k": 1.0}]
    for op in OPERATORS:
        for target in SPEC_VALUES[op] + EXTRA_TARGETS.get(op, []):
            predicate = compile_filter({"p": "x", "op": op, "value": target}, "p")
            for value in values:
                if isinstance(value, float) and math.isnan(value):
                    continue  # NaN compares unequal to itself; covered by test_operator_semantics
                assert predicate({"x": value}) is _reference(op, target, value), (op, target, value)
            assert predicate({}) is _reference(op, target, None)
