"""Tests for the wire-contract JSON Schemas and engine.schemas."""

from __future__ import annotations

import json
import pickle
import shutil
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest

from engine import schemas
from engine.core.durations import MAX_DURATION_SECONDS
from engine.engagement_files import EngagementFileError, load_engagement_documents
from engine.errors import DeclicError, InvalidRecord
from engine.schemas import (
    SCHEMA_NAMES,
    SchemaViolation,
    apply_engagement_defaults,
    format_path,
    load_schema,
    validator,
)

REPO = Path(__file__).resolve().parents[2]
SCHEMA_DIR = REPO / "schemas"
EXAMPLES = REPO / "deploy" / "examples"
RECORDS = Path(__file__).resolve().parent / "fixtures" / "records"
VALID = sorted((RECORDS / "valid").glob("*.json"))
INVALID = sorted(p for p in (RECORDS / "invalid").glob("*.json") if p.name != "_expect.json")
EXPECT: dict[str, dict[str, str]] = json.loads((RECORDS / "invalid" / "_expect.json").read_text())
SCHEMA_FILES = sorted(SCHEMA_DIR.glob("*.schema.json"))


def _kind(sample: Path) -> str:
    """Return the schema name encoded in a fixture name: ``<schema>--<what>.json``."""
    return sample.name.split("--", 1)[0]


def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _properties(node: Any, where: str = "") -> Iterator[tuple[str, Any]]:
    """Yield every (location, subschema) declared under a `properties` keyword."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "properties" and isinstance(value, dict):
                for name, sub in value.items():
                    yield f"{where}/properties/{name}", sub
                    yield from _properties(sub, f"{where}/properties/{name}")
            else:
                yield from _properties(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _properties(value, f"{where}/{index}")


# --- the schema files themselves -------------------------------------------------


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.name)
def test_schema_is_valid_draft_2020_12(path: Path) -> None:
    schema = _load(path)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == schemas.SCHEMA_BASE_URI + path.name
    assert schema["title"] and schema["description"]
    jsonschema_rs.meta.validate(schema)


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.name)
def test_every_field_has_a_description(path: Path) -> None:
    # The README field table is generated from these descriptions.
    # Properties inside if/then only restate conditions on fields documented elsewhere.
    undocumented = [
        where
        for where, sub in _properties(_load(path))
        if "/if/" not in where and "/then/" not in where and "description" not in sub
    ]
    assert undocumented == []


def test_every_record_kind_has_a_schema_file() -> None:
    names = {p.name.removesuffix(".schema.json") for p in SCHEMA_FILES}
    assert set(SCHEMA_NAMES) <= names
    assert names - set(SCHEMA_NAMES) == {"common"}


def test_unknown_schema_name_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown schema 'sessions'"):
        validator("sessions")


# --- sample records ----------------------------------------------------------------


def test_fixtures_cover_every_record_kind() -> None:
    assert {_kind(p) for p in VALID} == set(SCHEMA_NAMES)
    assert {_kind(p) for p in INVALID} == set(SCHEMA_NAMES)
    assert set(EXPECT) == {p.name for p in INVALID}


@pytest.mark.parametrize("sample", VALID, ids=lambda p: p.stem)
def test_valid_sample_passes(sample: Path) -> None:
    record_validator = validator(_kind(sample))
    instance = _load(sample)
    record_validator.check(instance)
    assert record_validator.is_valid(instance)
    assert record_validator.errors(instance) == []


@pytest.mark.parametrize("sample", INVALID, ids=lambda p: p.stem)
def test_invalid_sample_reports_path_and_field(sample: Path) -> None:
    expected = EXPECT[sample.name]
    record_validator = validator(_kind(sample))
    instance = _load(sample)
    assert not record_validator.is_valid(instance)
    with pytest.raises(SchemaViolation) as caught:
        record_validator.check(instance)
    violation = caught.value
    assert violation.path == expected["path"]
    assert expected["mentions"] in violation.message
    assert str(violation) == f"{expected['path']}: {violation.message}"
    assert violation.reason == "schema_violation"
    # Each sample breaks exactly one thing, so the full listing agrees with check().
    assert [v.path for v in record_validator.errors(instance)] == [expected["path"]]


def test_schema_violation_is_an_invalid_record() -> None:
    violation = SchemaViolation("audience.filters[0].value", "[1] is not of type 'string'")
    assert isinstance(violation, InvalidRecord)
    assert isinstance(violation, DeclicError)
    assert violation.reason == "schema_violation"
    assert (
        violation.detail
        == str(violation)
        == "audience.filters[0].value: [1] is not of type 'string'"
    )
    clone = pickle.loads(pickle.dumps(violation))
    assert (clone.path, clone.message) == (violation.path, violation.message)


def test_root_level_violation() -> None:
    with pytest.raises(SchemaViolation) as caught:
        validator("custom-event").check(["not", "an", "object"])
    assert caught.value.path == ""
    assert str(caught.value).startswith("(root): ")


def test_non_json_value_is_a_violation_not_a_crash() -> None:
    with pytest.raises(SchemaViolation, match="not a JSON value"):
        validator("custom-event").check({"event_id": b"raw"})
    assert not validator("custom-event").is_valid({"event_id": object()})


def test_errors_lists_every_problem() -> None:
    document = {
        "id": "Bad Id",
        "name": "x",
        "status": "active",
        "trigger": {"event": "session_start", "where": []},
        "audience": {
            "filters": [{"attribute": "country", "op": "in", "value": "FR"}],
            "percent": 150,
        },
        "message": {},
        "colour": "red",
    }
    paths = sorted(v.path for v in validator("engagement").errors(document))
    assert paths == [
        "audience.filters[0].value",
        "audience.percent",
        "colour",
        "id",
        "trigger.where",
    ]


def test_unknown_properties_are_reported_one_by_one() -> None:
    record = {"user_id": "u", "attributes": {}, "timestamp": 0, "foo": 1, "bar": 2}
    violations = validator("profile-update").errors(record)
    assert sorted(v.path for v in violations) == ["bar", "foo"]
    assert all("allowed: user_id, attributes, timestamp" in v.message for v in violations)


@pytest.mark.parametrize(
    "timestamp",
    ["2026-11-23T14:00:00Z", "2026-11-23T14:00:00.123456789-05:30", 0, 1795960805123],
)
def test_timestamp_accepts_rfc3339_with_offset_and_epoch_millis(timestamp: object) -> None:
    record = {"user_id": "u", "attributes": {"a": 1}, "timestamp": timestamp}
    validator("profile-update").check(record)


@pytest.mark.parametrize(
    "timestamp",
    [
        "2026-11-23T14:00:00",
        "2026-11-23 14:00:00Z",
        "2026-02-30T00:00:00Z",
        "1795960805123",
        1.5,
        -1,
        True,
        None,
    ],
)
def test_timestamp_rejects_everything_else(timestamp: object) -> None:
    record = {"user_id": "u", "attributes": {"a": 1}, "timestamp": timestamp}
    with pytest.raises(SchemaViolation) as caught:
        validator("profile-update").check(record)
    assert caught.value.path == "timestamp"


def test_format_path_quotes_unusual_keys() -> None:
    assert format_path([]) == ""
    assert format_path(["audience", "filters", 0, "value"]) == "audience.filters[0].value"
    assert format_path(["properties", "Prix unitaire", 2]) == 'properties["Prix unitaire"][2]'


def test_validator_is_cached() -> None:
    assert validator("delivery") is validator("delivery")


def test_schema_dir_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for path in SCHEMA_FILES:
        shutil.copy(path, tmp_path / path.name)
    # Make the copy observably different: deliveries may no longer be test sends.
    delivery = _load(tmp_path / "delivery.schema.json")
    delivery["properties"]["test"] = {"const": False, "description": "Always false."}
    (tmp_path / "delivery.schema.json").write_text(json.dumps(delivery))
    record = _load(RECORDS / "valid" / "delivery--default.json") | {"test": True}

    monkeypatch.setenv("DECLIC_SCHEMA_DIR", str(tmp_path))
    schemas._catalog.cache_clear()
    validator.cache_clear()
    try:
        assert schemas.schema_dir() == tmp_path
        assert not validator("delivery").is_valid(record)
    finally:
        monkeypatch.delenv("DECLIC_SCHEMA_DIR")
        schemas._catalog.cache_clear()
        validator.cache_clear()
    assert validator("delivery").is_valid(record)


# --- example engagements ---------------------------------------------------------------


EXAMPLE_FILES = sorted(EXAMPLES.glob("*.yaml"))


def test_examples_exist() -> None:
    assert len(EXAMPLE_FILES) >= 3


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_example_engagement_is_valid(path: Path) -> None:
    [(source, document)] = load_engagement_documents(path)
    assert source == f"{path}#1"
    assert document["id"] == path.stem
    assert validator("engagement").errors(document) == []
    full = apply_engagement_defaults(document)
    validator("engagement").check(full)
    record = {
        "engagement": full,
        "version": 1,
        "updated_at": "2026-11-20T09:30:00Z",
        "author": "examples",
    }
    validator("engagement-record").check(record)


def test_examples_cover_each_trigger_and_a_non_active_status() -> None:
    documents = [doc for path in EXAMPLE_FILES for _, doc in load_engagement_documents(path)]
    assert {doc["trigger"]["event"] for doc in documents} == {
        "session_start",
        "session_end",
        "custom",
    }
    assert {doc["status"] for doc in documents} - {"active"}


# --- duration bounds ---------------------------------------------------------------------

# Schema location of each engagement duration, its instance path and a document setting it.
DURATION_FIELDS: dict[str, tuple[str, Callable[[object], dict[str, Any]]]] = {
    "/properties/trigger/properties/delay_seconds": (
        "trigger.delay_seconds",
        lambda value: {"trigger": {"event": "session_start", "delay_seconds": value}},
    ),
    "/properties/expires_after_seconds": (
        "expires_after_seconds",
        lambda value: {"expires_after_seconds": value},
    ),
    "/properties/reeligibility/properties/after_seconds": (
        "reeligibility.after_seconds",
        lambda value: {"reeligibility": {"after_seconds": value}},
    ),
    "/$defs/conversion/properties/window_seconds": (
        "conversion.window_seconds",
        lambda value: {"conversion": {"event": "buy", "window_seconds": value}},
    ),
    "/$defs/event_count_condition/properties/within_seconds": (
        "audience.filters[0].within_seconds",
        lambda value: {
            "audience": {
                "filters": [{"event": "viewed", "op": "gte", "count": 1, "within_seconds": value}]
            }
        },
    ),
}


def _duration_document(location: str, value: object) -> dict[str, Any]:
    base = {"id": "d", "name": "D", "status": "active", "trigger": {"event": "session_start"}}
    return base | {"message": {}} | DURATION_FIELDS[location][1](value)


def test_every_duration_has_the_core_maximum() -> None:
    # One number in two places: the schema must refuse exactly what the core refuses.
    found = {
        where: sub
        for where, sub in _properties(load_schema("engagement"))
        if where.endswith("_seconds")
    }
    assert set(found) == set(DURATION_FIELDS)
    for where, sub in found.items():
        assert sub["maximum"] == MAX_DURATION_SECONDS, where
        assert sub["minimum"] == 1, where
        assert f"<= {MAX_DURATION_SECONDS}" in sub["errorMessage"], where


@pytest.mark.parametrize("location", sorted(DURATION_FIELDS))
def test_duration_limit_is_accepted_and_one_more_refused(location: str) -> None:
    engagement = validator("engagement")
    assert engagement.errors(_duration_document(location, MAX_DURATION_SECONDS)) == []
    violations = engagement.errors(_duration_document(location, MAX_DURATION_SECONDS + 1))
    assert [v.path for v in violations] == [DURATION_FIELDS[location][0]]
    assert f">= 1 and <= {MAX_DURATION_SECONDS}" in violations[0].message


def test_the_original_huge_delay_is_refused() -> None:
    document = _duration_document(
        "/properties/trigger/properties/delay_seconds", 20_000_000_000_000_000
    )
    with pytest.raises(SchemaViolation) as caught:
        validator("engagement").check(document)
    assert caught.value.path == "trigger.delay_seconds"


# --- defaults ----------------------------------------------------------------------------


def test_defaults_are_filled_from_the_schema() -> None:
    document = {
        "id": "x",
        "name": "X",
        "status": "draft",
        "trigger": {"event": "session_start"},
        "message": {},
    }
    full = apply_engagement_defaults(document)
    assert full == document | {
        "description": "",
        "priority": 0,
        "schedule": {"start": None, "end": None, "local_time": False},
        "audience": {"filters": [], "percent": 100},
        "reeligibility": {"after_seconds": None},
        "control_percent": 0,
        "ignore_frequency_caps": False,
    }
    assert "description" not in document  # the input is untouched


def test_defaults_fill_partial_sections_and_keep_given_values() -> None:
    document = {
        "id": "x",
        "name": "X",
        "status": "draft",
        "trigger": {"event": "custom", "name": "E"},
        "message": {"a": [1]},
        "priority": 7,
        "schedule": {"start": "2026-01-01T00:00:00Z"},
        "audience": {"percent": 10},
    }
    full = apply_engagement_defaults(document)
    assert full["priority"] == 7
    assert full["schedule"] == {"start": "2026-01-01T00:00:00Z", "end": None, "local_time": False}
    assert full["audience"] == {"percent": 10, "filters": []}
    # `where` has no default: it is forbidden for non-custom triggers.
    assert "where" not in full["trigger"]
    full["message"]["a"].append(2)
    full["audience"]["filters"].append({})
    assert document["message"] == {"a": [1]}
    assert apply_engagement_defaults(document)["audience"]["filters"] == []


def test_defaults_match_the_contract() -> None:
    properties = load_schema("engagement")["properties"]
    assert properties["description"]["default"] == ""
    assert properties["priority"]["default"] == 0
    assert properties["schedule"]["default"] == {"start": None, "end": None, "local_time": False}
    assert properties["audience"]["default"] == {"filters": [], "percent": 100}
    assert properties["reeligibility"]["default"] == {"after_seconds": None}
    assert properties["control_percent"]["default"] == 0
    assert properties["ignore_frequency_caps"]["default"] is False


# --- engagement files ------------------------------------------------------------------------

ONE = "id: one\nname: One\nstatus: active\ntrigger: {event: session_start}\nmessage: {title: Hi}\n"
TWO = "id: two\nname: Two\nstatus: draft\ntrigger: {event: session_end}\nmessage: {}\n"


def test_yaml_multi_document_file(tmp_path: Path) -> None:
    path = tmp_path / "many.yaml"
    path.write_text(f"---\n{ONE}---\n{TWO}---\n")
    loaded = load_engagement_documents(path)
    assert [(source, doc["id"]) for source, doc in loaded] == [
        (f"{path}#1", "one"),
        (f"{path}#2", "two"),
    ]


def test_yaml_list_and_documents_are_numbered_in_order(tmp_path: Path) -> None:
    path = tmp_path / "list.yml"
    listed = textwrap.indent(ONE, "  ").replace("  id:", "- id:", 1)
    three = "- {id: three, name: T, status: paused, trigger: {event: session_start}, message: {}}\n"
    path.write_text(f"{listed}{three}---\n{TWO}")
    loaded = load_engagement_documents(path)
    assert [(source.rsplit("#", 1)[1], doc["id"]) for source, doc in loaded] == [
        ("1", "one"),
        ("2", "three"),
        ("3", "two"),
    ]


def test_json_object_and_list(tmp_path: Path) -> None:
    single = tmp_path / "single.json"
    single.write_text(json.dumps({"id": "a"}))
    assert load_engagement_documents(single) == [(f"{single}#1", {"id": "a"})]
    many = tmp_path / "many.json"
    many.write_text(json.dumps([{"id": "a"}, {"id": "b"}]))
    assert [doc["id"] for _, doc in load_engagement_documents(many)] == ["a", "b"]


def test_yaml_keeps_dates_and_country_codes_as_strings(tmp_path: Path) -> None:
    path = tmp_path / "scalars.yaml"
    path.write_text(
        textwrap.dedent("""\
            id: norway
            name: N
            status: active
            trigger: {event: session_start}
            message: {}
            schedule: {start: 2026-01-01T00:00:00Z, end: null}
            audience:
              filters:
                - {attribute: country, op: in, value: [NO, FR, on, yes]}
                - {attribute: beta, op: eq, value: true}
            """)
    )
    [(_, document)] = load_engagement_documents(path)
    assert document["schedule"]["start"] == "2026-01-01T00:00:00Z"
    assert document["audience"]["filters"][0]["value"] == ["NO", "FR", "on", "yes"]
    assert document["audience"]["filters"][1]["value"] is True
    validator("engagement").check(document)


def test_broken_yaml_reports_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("id: broken\nname: Broken\ntrigger:\n  event: [session_start\nmessage: {}\n")
    with pytest.raises(EngagementFileError) as caught:
        load_engagement_documents(path)
    error = caught.value
    assert error.source == str(path)
    assert error.line is not None and 4 <= error.line <= 5
    assert str(error).startswith(f"{path}:{error.line}: invalid YAML")


def test_duplicate_yaml_key_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text("id: dup\nname: A\nname: B\n")
    with pytest.raises(EngagementFileError, match="duplicate key 'name'") as caught:
        load_engagement_documents(path)
    assert caught.value.line == 3


def test_broken_json_reports_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{\n  "id": "x",\n  "name": \n}\n')
    with pytest.raises(EngagementFileError, match=r"broken\.json:4: invalid JSON") as caught:
        load_engagement_documents(path)
    assert caught.value.line == 4


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("scalar.yaml", "just a string\n", "expected an engagement object, got str"),
        ("empty.yaml", "# nothing here\n", "no engagement found"),
        ("list-of-numbers.json", "[1]", "expected an engagement object, got int"),
        ("notes.txt", "id: x\n", "unsupported file type"),
        ("nan.json", '{"priority": NaN}', "NaN is not valid JSON"),
    ],
)
def test_unusable_files_are_rejected(tmp_path: Path, name: str, content: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(EngagementFileError, match=message):
        load_engagement_documents(path)


def test_missing_file_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(EngagementFileError, match="cannot read file") as caught:
        load_engagement_documents(path)
    assert caught.value.source == str(path)
    assert isinstance(caught.value, DeclicError)


# --- attribute bounds ------------------------------------------------------------------------

from engine.core.attributes import (  # noqa: E402
    MAX_ATTRIBUTE_ARRAY_ITEMS,
    MAX_ATTRIBUTE_NAME_LENGTH,
    MAX_ATTRIBUTE_STRING_LENGTH,
    MAX_ATTRIBUTES,
    MAX_PROPERTY_STRING_LENGTH,
)


def test_attribute_bounds_are_the_core_ones() -> None:
    defs = load_schema("common")["$defs"]
    assert defs["attributes"]["maxProperties"] == MAX_ATTRIBUTES
    assert defs["attributes"]["propertyNames"]["maxLength"] == MAX_ATTRIBUTE_NAME_LENGTH
    assert defs["attribute_value"]["maxLength"] == MAX_ATTRIBUTE_STRING_LENGTH
    assert defs["attribute_value"]["maxItems"] == MAX_ATTRIBUTE_ARRAY_ITEMS
    assert defs["attribute_scalar"]["maxLength"] == MAX_ATTRIBUTE_STRING_LENGTH
    assert defs["attribute_value"]["items"] == {"$ref": "#/$defs/attribute_scalar"}
    for name, numbers in [
        ("attributes", [MAX_ATTRIBUTES]),
        ("attribute_value", [MAX_ATTRIBUTE_STRING_LENGTH, MAX_ATTRIBUTE_ARRAY_ITEMS]),
        ("attribute_scalar", [MAX_ATTRIBUTE_STRING_LENGTH]),
    ]:
        for number in numbers:
            assert f"at most {number}" in defs[name]["errorMessage"], name
            assert f"at most {number}" in defs[name]["description"], name


# Each record kind carrying attributes, and where they are in it.
ATTRIBUTE_RECORDS: dict[str, tuple[dict[str, Any], str]] = {
    "profile-update": ({"user_id": "u", "timestamp": 0}, "attributes"),
    "custom-event": ({"event_id": "e", "user_id": "u", "name": "n", "timestamp": 0}, "attributes"),
    "session-event": (
        {"event_id": "e", "user_id": "u", "type": "session_start", "timestamp": 0},
        "attributes",
    ),
}

# (attributes at the bound, one past it, the path of the violation, what the message says)
ATTRIBUTE_BOUNDS: dict[str, tuple[dict[str, Any], dict[str, Any], str, str]] = {
    "string": (
        {"bio": "x" * MAX_ATTRIBUTE_STRING_LENGTH},
        {"bio": "x" * (MAX_ATTRIBUTE_STRING_LENGTH + 1)},
        ".bio",
        f"at most {MAX_ATTRIBUTE_STRING_LENGTH} characters",
    ),
    "array": (
        {"tags": ["x"] * MAX_ATTRIBUTE_ARRAY_ITEMS},
        {"tags": ["x"] * (MAX_ATTRIBUTE_ARRAY_ITEMS + 1)},
        ".tags",
        f"at most {MAX_ATTRIBUTE_ARRAY_ITEMS} items",
    ),
    "array string": (
        {"tags": ["x" * MAX_ATTRIBUTE_STRING_LENGTH]},
        {"tags": ["x" * (MAX_ATTRIBUTE_STRING_LENGTH + 1)]},
        ".tags[0]",
        f"at most {MAX_ATTRIBUTE_STRING_LENGTH} characters",
    ),
    "count": (
        {f"a{index}": index for index in range(MAX_ATTRIBUTES)},
        {f"a{index}": index for index in range(MAX_ATTRIBUTES + 1)},
        "",
        f"at most {MAX_ATTRIBUTES} attributes",
    ),
    "name": (
        {"n" * MAX_ATTRIBUTE_NAME_LENGTH: 1},
        {"n" * (MAX_ATTRIBUTE_NAME_LENGTH + 1): 1},
        "",
        f"1 to {MAX_ATTRIBUTE_NAME_LENGTH} characters",
    ),
}


@pytest.mark.parametrize("record", sorted(ATTRIBUTE_RECORDS))
@pytest.mark.parametrize("bound", sorted(ATTRIBUTE_BOUNDS))
def test_attribute_bounds_at_the_limit_and_one_past(record: str, bound: str) -> None:
    base, field = ATTRIBUTE_RECORDS[record]
    at_limit, past, path, mentions = ATTRIBUTE_BOUNDS[bound]
    record_validator = validator(record.split(maxsplit=1)[0])
    assert record_validator.errors(base | {field: at_limit}) == []
    violations = record_validator.errors(base | {field: past})
    assert len(violations) == 1
    assert violations[0].path.startswith(field + path)
    assert mentions in violations[0].message


def test_dead_letter_reason_too_large() -> None:
    letter = _load(RECORDS / "valid" / "dead-letter--invalid-json.json") | {"reason": "too_large"}
    validator("dead-letter").check(letter)
    described = load_schema("dead-letter")["properties"]["reason"]["description"]
    assert "too_large (key and value together over max_input_bytes" in described


@pytest.mark.parametrize(
    ("at_limit", "past", "mentions"),
    [
        (
            {"url": "x" * MAX_PROPERTY_STRING_LENGTH},
            {"url": "x" * (MAX_PROPERTY_STRING_LENGTH + 1)},
            f"at most {MAX_PROPERTY_STRING_LENGTH} characters",
        ),
        (
            {"tags": ["x"] * MAX_ATTRIBUTE_ARRAY_ITEMS},
            {"tags": ["x"] * (MAX_ATTRIBUTE_ARRAY_ITEMS + 1)},
            f"at most {MAX_ATTRIBUTE_ARRAY_ITEMS} items",
        ),
        (
            {f"p{n}": n for n in range(MAX_ATTRIBUTES)},
            {f"p{n}": n for n in range(MAX_ATTRIBUTES + 1)},
            f"at most {MAX_ATTRIBUTES} properties",
        ),
    ],
    ids=["string", "array", "count"],
)
def test_event_property_bounds_at_the_limit_and_one_past(
    at_limit: dict[str, Any], past: dict[str, Any], mentions: str
) -> None:
    """Properties are matched, never stored: their strings may be longer than attributes'."""
    base = {"event_id": "e", "user_id": "u", "name": "n", "timestamp": 0}
    assert validator("custom-event").errors(base | {"properties": at_limit}) == []
    [violation] = validator("custom-event").errors(base | {"properties": past})
    assert violation.path.startswith("properties")
    assert mentions in violation.message
