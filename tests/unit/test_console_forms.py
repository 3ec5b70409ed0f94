"""The console's engagement form: documents to fields and back, problems per field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from engine.admin.engagements import engagement_file_problems
from engine.console import form_layout, forms
from engine.console.forms import (
    document_to_fields,
    fields_to_document,
    problem_fields,
)
from engine.core.fields import FieldProblem
from engine.engagement_files import load_engagement_documents
from engine.schemas import apply_engagement_defaults, load_schema

ROOT = Path(__file__).resolve().parents[2]
MAX_SECONDS = 315_360_000


def round_trip(document: dict[str, Any]) -> forms.FormResult:
    return fields_to_document(document_to_fields(document).items())


def comparable(value: Any) -> Any:
    """``value`` without its empty lists (outside messages): they mean what absent means."""
    if isinstance(value, list):
        return [comparable(item) for item in value]
    if isinstance(value, dict):
        return {
            key: item if key == "message" else comparable(item)
            for key, item in value.items()
            if item != [] or key == "message"
        }
    return value


def assert_round_trips(document: dict[str, Any]) -> None:
    result = round_trip(document)
    assert result.problems == {}
    expected = comparable(apply_engagement_defaults(document))
    assert comparable(apply_engagement_defaults(result.document)) == expected


# ---------------------------------------------------------------- realistic engagements

# Strings a form might mangle: empty, JSON look-alikes, spaces, markup, non-ASCII.
tricky = st.sampled_from(
    ["", " ", "12", "true", "null", '"quoted"', "[1]", "{}", "NaN", "1e400", "a.b", "<b>", "é"]
)
texts = st.one_of(tricky, st.text(st.characters(codec="utf-8"), min_size=0, max_size=12))
names = texts.filter(bool)
numbers = st.one_of(
    st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False, allow_infinity=False)
)
scalars = st.one_of(texts, numbers, st.booleans())
seconds = st.integers(1, MAX_SECONDS)
percents = st.one_of(st.integers(0, 100), st.floats(0, 100))
json_values = st.recursive(
    st.one_of(st.none(), scalars),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(names, inner, max_size=3)),
    max_leaves=6,
)


@st.composite
def condition(draw: st.DrawFn, subject: str) -> dict[str, Any]:
    op = draw(st.sampled_from(["eq", "ne", "contains", "gt", "lte", "in", "not_in", "exists"]))
    result: dict[str, Any] = {subject: draw(names), "op": op}
    if op in ("eq", "ne", "contains"):
        result["value"] = draw(scalars)
    elif op in ("gt", "lte"):
        result["value"] = draw(st.one_of(texts, numbers))
    elif op in ("in", "not_in"):
        result["value"] = draw(st.lists(st.one_of(st.none(), scalars), min_size=1, max_size=3))
    return result


def where() -> st.SearchStrategy[list[dict[str, Any]]]:
    return st.lists(condition("property"), min_size=1, max_size=2)


event_counts = st.fixed_dictionaries(
    {
        "event": names,
        "op": st.sampled_from(["eq", "gte", "lt"]),
        "count": st.integers(0, 1000),
        "within_seconds": seconds,
    }
)
button_keys = st.sampled_from(["id", "label", "action", "style"])
buttons = st.one_of(
    st.lists(st.dictionaries(button_keys, names, min_size=1), min_size=1, max_size=2),
    json_values,
)
messages = st.dictionaries(
    st.one_of(st.sampled_from(["title", "body", "image_url", "buttons", "custom"]), names),
    json_values,
    min_size=1,
    max_size=5,
).flatmap(
    lambda base: st.fixed_dictionaries(
        {},
        optional={
            "title": texts,
            "body": texts,
            "image_url": texts,
            "buttons": buttons,
        },
    ).map(lambda known: {**base, **known})
)
local_times = st.sampled_from(["2026-12-01T09:00:00", "2027-01-31T23:59:59.5", None])
utc_times = st.sampled_from(["2026-12-01T09:00:00Z", "2027-01-31T23:59:59+02:00", None])
hours = st.sampled_from([{"from": "09:00", "to": "18:00"}, {"from": "22:00", "to": "06:00"}])


@st.composite
def schedules(draw: st.DrawFn) -> dict[str, Any]:
    local = draw(st.sampled_from([True, False, None]))
    times = local_times if local else utc_times
    result: dict[str, Any] = draw(
        st.fixed_dictionaries({}, optional={"start": times, "end": times, "hours": hours})
    )
    if local is not None:
        result["local_time"] = local
    return result


@st.composite
def triggers(draw: st.DrawFn) -> dict[str, Any]:
    event = draw(st.sampled_from(["session_start", "session_end", "custom"]))
    result: dict[str, Any] = {"event": event}
    if event == "custom":
        result["name"] = draw(names)
        if draw(st.booleans()):
            result["where"] = draw(where())
    if draw(st.booleans()):
        result["delay_seconds"] = draw(seconds)
        cancel = st.fixed_dictionaries({"event": names}, optional={"where": where()})
        if draw(st.booleans()):
            result["cancel_on"] = draw(st.lists(cancel, min_size=1, max_size=2))
    return result


@st.composite
def engagements(draw: st.DrawFn) -> dict[str, Any]:
    document: dict[str, Any] = {
        "id": draw(st.from_regex(r"[a-z0-9][a-z0-9_-]{0,15}", fullmatch=True)),
        "name": draw(names),
        "status": draw(st.sampled_from(["draft", "active", "paused", "archived"])),
        "trigger": draw(triggers()),
    }
    if draw(st.booleans()):
        ids = st.from_regex(r"[A-Za-z0-9_-]{1,8}", fullmatch=True).filter(
            lambda v: v not in ("control", "default")
        )
        weights = st.one_of(st.integers(1, 1000), st.floats(0.001, 1000))
        variant = st.fixed_dictionaries({"id": ids, "weight": weights, "message": messages})
        document["variants"] = draw(
            st.lists(variant, min_size=1, max_size=3, unique_by=lambda v: str(v["id"]))
        )
    else:
        document["message"] = draw(messages)
    audience = st.fixed_dictionaries(
        {},
        optional={
            "filters": st.lists(
                st.one_of(condition("attribute"), event_counts), min_size=0, max_size=3
            ),
            "percent": percents,
        },
    )
    conversion = st.fixed_dictionaries(
        {"event": names, "window_seconds": seconds}, optional={"where": where()}
    )
    elements = st.lists(
        st.fixed_dictionaries(
            {"element": names, "metric": st.from_regex(r"[a-z_]{1,8}", fullmatch=True)}
        ),
        min_size=1,
        max_size=3,
        unique_by=lambda e: e["element"],
    )
    optional = {
        "description": texts,
        "priority": st.integers(-(2**63), 2**63 - 1),
        "schedule": schedules(),
        "audience": audience,
        "control_percent": percents,
        "ignore_frequency_caps": st.booleans(),
        "expires_after_seconds": seconds,
        "conversion": conversion,
        "elements": elements,
        "reeligibility": st.fixed_dictionaries({"after_seconds": st.one_of(st.none(), seconds)}),
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            document[key] = draw(strategy)
    return document


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(engagements())
def test_every_realistic_engagement_round_trips(document: dict[str, Any]) -> None:
    assume(engagement_file_problems(document) == [])
    assert_round_trips(document)


def golden_engagements() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if {"id", "status", "trigger"} <= value.keys():
                found.append(value)
                return
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    for path in sorted((ROOT / "tests/golden").rglob("*.json")):
        walk(json.loads(path.read_text()))
    return [document for document in found if not engagement_file_problems(document)]


def example_engagements() -> list[dict[str, Any]]:
    paths = sorted((ROOT / "deploy/examples").glob("*.yaml"))
    return [document for path in paths for _, document in load_engagement_documents(path)]


def test_example_and_golden_engagements_round_trip() -> None:
    documents = example_engagements() + golden_engagements()
    assert len(documents) > 100
    for document in documents:
        assert_round_trips(document)


# ---------------------------------------------------------------- the layout


def test_fields_are_named_by_path_with_message_rows() -> None:
    document = {
        "id": "nudge",
        "priority": 20,
        "schedule": {"start": None, "local_time": True},
        "audience": {
            "percent": 12.5,
            "filters": [{"attribute": "plan", "op": "eq", "value": "12"}],
        },
        "message": {
            "title": "Hi",
            "layout": "toast",
            "extra": {"a": [1, 2]},
            "buttons": [{"label": "Go", "action": "app://go"}],
        },
        "reeligibility": {"after_seconds": None},
    }
    assert document_to_fields(document) == {
        "id": "nudge",
        "priority": "20",
        "schedule.start": "",
        "schedule.local_time": "true",
        "audience.percent": "12.5",
        "audience.filters.0.attribute": "plan",
        "audience.filters.0.op": "eq",
        "audience.filters.0.value": '"12"',
        "message.title": "Hi",
        "message.custom.0.key": "layout",
        "message.custom.0.value": "toast",
        "message.custom.1.key": "extra",
        "message.custom.1.value": '{"a": [1, 2]}',
        "message.buttons.0.label": "Go",
        "message.buttons.0.action": "app://go",
        "reeligibility.after_seconds": "",
    }


def test_buttons_the_text_fields_cannot_hold_become_a_custom_row() -> None:
    fields = document_to_fields({"message": {"buttons": [{"label": "Go", "size": 2}]}})
    assert fields == {
        "message.custom.0.key": "buttons",
        "message.custom.0.value": '[{"label": "Go", "size": 2}]',
    }


def schema_layout(schema: dict[str, Any], root: dict[str, Any]) -> Any:
    """The form layout the engagement schema implies, in the layout's own terms."""
    while "$ref" in schema and schema["$ref"].startswith("#/"):
        schema = {**root["$defs"][schema["$ref"].split("/")[-1]], **schema}
        del schema["$ref"]
    if "then" in schema and "else" in schema and "properties" not in schema:
        merged: dict[str, Any] = {}
        for branch in (schema["then"], schema["else"]):
            merged.update(schema_layout(branch, root))
        return merged
    if "properties" in schema:
        return {key: schema_layout(sub, root) for key, sub in schema["properties"].items()}
    if schema.get("type") == "array":
        return ("list", schema_layout(schema["items"], root))
    return {
        "integer": "integer",
        "number": "number",
        "boolean": "checkbox",
        "object": "message",
    }.get(json.dumps(schema.get("type")).strip('"'), "text")


def layout_of(node: Any) -> Any:
    if isinstance(node, form_layout.Message):
        return "message"
    if isinstance(node, form_layout.ListOf):
        return ("list", layout_of(node.item))
    if isinstance(node, form_layout.Leaf):
        return {"seconds_or_null": '["integer", "null"]', "json": "text"}.get(
            node.value, node.value
        )
    return {key: layout_of(child) for key, child in node.items()}


def test_the_layout_covers_every_field_of_the_schema() -> None:
    schema = load_schema("engagement")
    implied = schema_layout(dict(schema), schema)
    implied["reeligibility"]["after_seconds"] = '["integer", "null"]'
    assert layout_of(form_layout.LAYOUT) == implied


# ---------------------------------------------------------------- reading a form


def test_values_are_coerced_by_field() -> None:
    result = fields_to_document(
        [
            ("csrf_token", "x"),
            ("action", "save"),
            ("priority", " 7 "),
            ("audience.percent", "12.5"),
            ("control_percent", "10"),
            ("trigger.event", "custom"),
            ("trigger.where.0.property", "price"),
            ("trigger.where.0.op", "in"),
            ("trigger.where.0.value", '[1, "a", true]'),
            ("trigger.where.1.property", "sku"),
            ("trigger.where.1.op", "eq"),
            ("trigger.where.1.value", "ab-12"),
            ("trigger.delay_seconds", "1e3"),
            ("schedule.start", ""),
            ("reeligibility.after_seconds", ""),
            ("message.custom.0.key", "layout"),
            ("message.custom.0.value", "toast"),
            ("message.custom.1.key", "count"),
            ("message.custom.1.value", "3"),
            ("message.custom.2.key", "code"),
            ("message.custom.2.value", '"3"'),
            ("message.custom.3.key", "note"),
            ("message.custom.3.value", ""),
        ]
    )
    assert result.problems == {}
    assert result.document == {
        "priority": 7,
        "trigger": {
            "event": "custom",
            "where": [
                {"property": "price", "op": "in", "value": [1, "a", True]},
                {"property": "sku", "op": "eq", "value": "ab-12"},
            ],
            "delay_seconds": 1000,
        },
        "schedule": {"local_time": False},
        "audience": {"percent": 12.5},
        "message": {"layout": "toast", "count": 3, "code": "3", "note": ""},
        "control_percent": 10,
        "ignore_frequency_caps": False,
        "reeligibility": {"after_seconds": None},
    }


@pytest.mark.parametrize(
    ("values", "expected"),
    [([], False), (["on"], True), (["true"], True), (["false"], False), (["false", "on"], True)],
)
def test_always_shown_checkboxes(values: list[str], expected: bool) -> None:
    result = fields_to_document([("ignore_frequency_caps", value) for value in values])
    assert result.document["ignore_frequency_caps"] is expected
    assert result.document["schedule"] == {"local_time": False}


def test_blank_rows_are_dropped_and_the_rest_renumbered() -> None:
    result = fields_to_document(
        [
            ("elements.0.element", ""),
            ("elements.0.metric", ""),
            ("elements.3.element", "buy"),
            ("elements.3.metric", "purchases"),
            ("elements.7.element", "share"),
            ("elements.7.metric", ""),
            ("audience.filters.2.count", "  "),
            ("message.buttons.1.label", ""),
            ("message.custom.4.key", ""),
            ("message.custom.4.value", ""),
            ("variants.5.id", "B"),
            ("variants.5.weight", "oops"),
        ]
    )
    assert result.document["elements"] == [
        {"element": "buy", "metric": "purchases"},
        {"element": "share"},
    ]
    assert "audience" not in result.document
    assert "message" not in result.document
    assert result.document["variants"] == [{"id": "B"}]
    # Problems and fields are named after the renumbered rows, as the document is.
    assert result.problems == {"variants.0.weight": "must be a number, got 'oops'"}
    assert result.fields["elements.1.element"] == "share"
    assert "elements.3.element" not in result.fields


@pytest.mark.parametrize(
    ("name", "text", "problem"),
    [
        ("priority", "abc", "must be an integer, got 'abc'"),
        ("priority", "1.5", "must be an integer, got '1.5'"),
        ("audience.percent", "ten", "must be a number, got 'ten'"),
        ("audience.percent", "1e400", "must be a finite number, got '1e400'"),
        ("control_percent", "nan", "must be a number, got 'nan'"),
        ("conversion.window_seconds", "1_000", "must be an integer, got '1_000'"),
        ("reeligibility.after_seconds", "soon", "must be an integer, got 'soon'"),
        ("ignore_frequency_caps", "maybe", "must be a checkbox (on or absent), got 'maybe'"),
    ],
)
def test_unreadable_values_are_reported_per_field(name: str, text: str, problem: str) -> None:
    result = fields_to_document([(name, text), ("id", "kept")])
    assert result.problems == {name: problem}
    assert result.document["id"] == "kept"
    assert result.fields[name] in (text, "false")


def test_unknown_and_repeated_fields_are_reported() -> None:
    result = fields_to_document(
        [
            ("trigger.color", "red"),
            ("trigger", "x"),
            ("audience.filters.first.op", "eq"),
            ("message.buttons.0.a.b", "x"),
            ("name", "one"),
            ("name", "two"),
            ("message.title", "Hi"),
            ("message.custom.0.key", "title"),
            ("message.custom.0.value", "again"),
            ("message.custom.1.value", "keyless"),
        ]
    )
    assert result.problems == {
        "trigger.color": "unknown field",
        "trigger": "unknown field",
        "audience.filters.first.op": "unknown field",
        "message.buttons.0.a.b": "unknown field",
        "name": "given more than once",
        "message.custom.0.key": "'title' is given twice in this message",
        "message.custom.1.key": "a custom field needs a key",
    }
    assert result.document["name"] == "one"
    assert result.document["message"] == {"title": "Hi"}


def test_unexpected_document_values_come_back_as_unknown_fields() -> None:
    fields = document_to_fields({"id": "x", "colour": "red", "trigger": ["session_start"]})
    result = fields_to_document(fields.items())
    assert set(result.problems) == {"colour", "trigger"}


# ---------------------------------------------------------------- validator problems


def test_validator_problems_go_to_their_fields() -> None:
    document = {
        "id": "nudge",
        "name": "Nudge",
        "status": "active",
        "trigger": {"event": "custom"},
        "audience": {"percent": 150},
        "message": {"title": "Hi"},
    }
    fields = problem_fields(engagement_file_problems(document))
    assert set(fields) == {"trigger.name", "audience.percent"}
    assert "custom" in fields["trigger.name"][0]
    assert "100" in fields["audience.percent"][0]


def test_problems_below_a_field_go_to_the_field_with_the_rest_of_the_path() -> None:
    problems = [
        FieldProblem((), "too large"),
        FieldProblem(("message",), "required field missing"),
        FieldProblem(("trigger", "where", 0, "value", 2), "must be a scalar"),
        FieldProblem(("variants", 1, "message", "buttons", 0, "label"), "too long"),
        FieldProblem(("variants", 1, "message", "extra", "n"), "must be a finite number"),
        FieldProblem(("message", "custom"), "too long"),
        FieldProblem(("colour",), "unknown field 'colour'"),
    ]
    assert problem_fields(problems) == {
        "": ["too large", "colour: unknown field 'colour'"],
        "message": ["required field missing", "custom: too long"],
        "trigger.where.0.value": ["2: must be a scalar"],
        "variants.1.message.buttons.0.label": ["too long"],
        "variants.1.message": ["extra.n: must be a finite number"],
    }
