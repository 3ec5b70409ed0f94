"""The typed decode of input records and the published schemas accept the same records.

Records valid by construction come from the schemas themselves (hostile_strategies'
``schema_records``: hypothesis-jsonschema for values, objects assembled from the schema
because hypothesis-jsonschema cannot draw objects with this Hypothesis, so ``{"not":
schema}`` cannot be drawn either); invalid ones are those records mutated in every way a
record can be wrong. Each is encoded to JSON and read as a worker reads it. The one
difference allowed: an instant outside years 0001..9999 UTC, which the schema's
``date-time`` allows and the engine cannot compute with, is ``invalid_timestamp``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.core.events import (
    read_custom_event,
    read_interaction,
    read_profile_update,
    read_session_event,
    read_test_send,
)
from engine.core.timestamps import RFC3339_PATTERN
from engine.core.user_requests import read_user_request
from engine.errors import InvalidRecord
from engine.schemas import load_schema, validator
from tests.unit.hostile_strategies import (
    EDGE_TIMESTAMPS,
    HUGE_FLOATS,
    HUGE_INTS,
    resolved_schema,
    rfc3339_texts,
    schema_records,
)

READERS: dict[str, Callable[[bytes], object]] = {
    "session-event": read_session_event,
    "custom-event": read_custom_event,
    "interaction": read_interaction,
    "profile-update": read_profile_update,
    "test-send": read_test_send,
    "user-request": read_user_request,
}
REASONS = {"invalid_json", "missing_field", "unknown_field", "invalid_field", "invalid_timestamp"}
OUT_OF_RANGE = "outside years 0001..9999 UTC"

EDGE_STRINGS = st.sampled_from(
    ["", "x" * 64, "x" * 65, "x" * 256, "x" * 257, "x" * 1025, "a\n", "A", "-a", "0", "é"]
)
TIMESTAMP_TEXTS = st.one_of(
    st.sampled_from([t for t in EDGE_TIMESTAMPS if isinstance(t, str)]),
    rfc3339_texts(),
    rfc3339_texts().map(lambda text: text + "\n"),
    rfc3339_texts().map(str.lower),
    rfc3339_texts().map(lambda text: text[:17] + "60" + text[19:]),  # leap seconds anywhere
    rfc3339_texts().map(lambda text: text[:11] + "23:59:60" + text[19:]),
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=5),
    HUGE_INTS,
    HUGE_FLOATS,
)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=6,
)
LONG_LISTS = st.lists(SCALARS, min_size=16, max_size=17)
VALUES = st.one_of(
    JSON, LONG_LISTS, EDGE_STRINGS, st.sampled_from(EDGE_TIMESTAMPS), TIMESTAMP_TEXTS
)


@st.composite
def mutated(draw: st.DrawFn, name: str) -> dict[str, Any]:
    """A record of schema ``name``, then broken (or not) in one or two ways."""
    record = dict(draw(schema_records(name)))
    properties = resolved_schema(name)["properties"]
    for _ in range(draw(st.integers(1, 2))):
        how = draw(st.sampled_from(["drop", "extra", "replace", "timestamp", "nested"]))
        if how == "drop" and record:
            record.pop(draw(st.sampled_from(sorted(record))))
        elif how == "extra":
            record[draw(st.text(max_size=8))] = draw(VALUES)
        elif how == "replace":
            record[draw(st.sampled_from(sorted(properties)))] = draw(VALUES)
        elif how == "timestamp":
            field = "requested_at" if name in ("test-send", "user-request") else "timestamp"
            record[field] = draw(st.one_of(TIMESTAMP_TEXTS, st.sampled_from(EDGE_TIMESTAMPS)))
        else:
            nested = [key for key, value in record.items() if isinstance(value, dict)]
            if nested:
                inner = dict(record[draw(st.sampled_from(sorted(nested)))])
                inner[draw(st.one_of(st.text(max_size=3), EDGE_STRINGS))] = draw(VALUES)
                record[draw(st.sampled_from(sorted(nested)))] = inner
    return record


def _agree(name: str, record: dict[str, Any]) -> None:
    accepted = validator(name).is_valid(record)
    raw = json.dumps(record, ensure_ascii=False).encode("utf-8", "surrogatepass")
    try:
        READERS[name](raw)
    except InvalidRecord as error:
        assert error.reason in REASONS, error
        if accepted:
            assert error.reason == "invalid_timestamp" and OUT_OF_RANGE in error.detail, (
                f"the schema accepts what the decode refuses ({error}): {record!r}"
            )
    else:
        assert accepted, f"the decode accepts what the schema refuses: {record!r}"


AGREEMENT = settings(max_examples=200, derandomize=True, deadline=None, database=None)


@pytest.mark.parametrize("name", sorted(READERS))
def test_valid_records_are_accepted_by_both(name: str) -> None:
    @AGREEMENT
    @given(record=schema_records(name))
    def check(record: dict[str, Any]) -> None:
        _agree(name, record)

    check()


@pytest.mark.parametrize("name", sorted(READERS))
def test_broken_records_are_refused_by_both(name: str) -> None:
    @AGREEMENT
    @given(record=mutated(name))
    def check(record: dict[str, Any]) -> None:
        _agree(name, record)

    check()


def test_the_timestamp_pattern_is_the_schemas() -> None:
    schema = load_schema("common")["$defs"]["rfc3339"]["pattern"]
    assert schema.removesuffix("$") + r"\Z" == RFC3339_PATTERN


CUSTOM = {"event_id": "e-1", "user_id": "ann", "name": "Open", "timestamp": 0}


@pytest.mark.parametrize(
    ("change", "reason", "path"),
    [
        ({"name": None}, "missing_field", "$.name"),
        ({"colour": "red"}, "unknown_field", "$.colour"),
        ({"timestamp": "2026-11-23t14:00:00z"}, "invalid_timestamp", "$.timestamp"),
        ({"timestamp": "2026-11-23T14:59:60Z"}, "invalid_timestamp", "$.timestamp"),
        ({"timestamp": 1.5}, "invalid_timestamp", "$.timestamp"),
        ({"timestamp": "0001-01-01T00:00:00+01:00"}, "invalid_timestamp", "$.timestamp"),
        ({"name": ""}, "invalid_field", "$.name"),
        ({"properties": {"a": {"b": 1}}}, "invalid_field", "$.properties"),
        ({"attributes": {"": 1}}, "invalid_field", "$.attributes"),
    ],
)
def test_each_way_of_being_wrong_has_its_reason_and_names_the_field(
    change: dict[str, Any], reason: str, path: str
) -> None:
    record = {**CUSTOM, **change}
    record = {key: value for key, value in record.items() if value is not None}
    with pytest.raises(InvalidRecord) as raised:
        read_custom_event(json.dumps(record).encode())
    assert (raised.value.reason, raised.value.detail.startswith(path)) == (reason, True)


def test_an_integral_float_is_epoch_milliseconds_as_the_schema_says() -> None:
    event = read_custom_event(json.dumps({**CUSTOM, "timestamp": 1000.0}).encode())
    assert event.timestamp_ms == 1000
