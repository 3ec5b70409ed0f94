"""An input record over max_input_bytes is dead-lettered `too_large`, never parsed; and the
largest profile a producer can send leaves a user state well under any record limit."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from aiokafka.structs import ConsumerRecord, TopicPartition

from engine.core.attributes import (
    MAX_ATTRIBUTE_ARRAY_ITEMS,
    MAX_ATTRIBUTE_NAME_LENGTH,
    MAX_ATTRIBUTE_STRING_LENGTH,
    MAX_ATTRIBUTES,
)
from engine.core.catalog import Catalog
from engine.core.policy import MatchPolicy
from engine.core.state import MAX_USER_STATE_BYTES, UserState
from engine.schemas import load_schema, validator
from engine.settings import Settings, load_settings
from engine.state.keys import USER_PREFIX
from engine.state.store import PartitionStore
from engine.stream import processor as processor_module
from engine.stream.processor import DEFAULT_MAX_INPUT_BYTES, PartitionProcessor
from engine.stream.topics import TopicNames

NOW_MS = 1_795_442_400_000  # 2026-11-23T14:00:00Z
TOPICS = TopicNames.for_settings(load_settings())
BY_KIND = {kind.value: name for name, kind in TOPICS.inputs.items()}
LIMIT = 4_096


@pytest.fixture
def store(tmp_path: Path) -> Iterator[PartitionStore]:
    opened = PartitionStore(tmp_path / "partition-0")
    yield opened
    opened.close()


def _processor(store: PartitionStore, **limits: int) -> PartitionProcessor:
    catalog = Catalog.build(())
    return PartitionProcessor(0, store, TOPICS, lambda: catalog, MatchPolicy(), **limits)


def _record(kind: str, key: bytes | None, value: bytes | None, offset: int = 0) -> ConsumerRecord:
    return ConsumerRecord(
        BY_KIND[kind],
        0,
        offset,
        0,
        0,
        key,
        value,
        None,
        len(key or b""),
        len(value or b""),
        (),
    )


def _handle(processor: PartitionProcessor, *records: ConsumerRecord) -> None:
    for record in records:
        processor.handle_batch(TopicPartition(record.topic, 0), [record], NOW_MS)


def _letters(processor: PartitionProcessor) -> list[dict[str, Any]]:
    return [
        orjson.loads(record.value)
        for record in processor.outbox.records
        if record.topic == TOPICS.dead_letters
    ]


def _profile(user: str, size: int) -> bytes:
    """Return a valid profile update of exactly ``size`` bytes."""
    value = {"user_id": user, "timestamp": NOW_MS, "attributes": {"bio": ""}}
    padding = size - len(orjson.dumps(value))
    assert 0 <= padding <= MAX_ATTRIBUTE_STRING_LENGTH
    value["attributes"] = {"bio": "x" * padding}
    raw = orjson.dumps(value)
    assert len(raw) == size
    return raw


def test_the_default_limit_is_the_settings_default() -> None:
    default = Settings.model_fields["max_input_bytes"].default
    assert default == DEFAULT_MAX_INPUT_BYTES
    assert PartitionProcessor.__init__.__kwdefaults__["max_input_bytes"] == default


def test_a_record_over_the_limit_is_too_large_and_never_parsed(
    store: PartitionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    processor = _processor(store, max_input_bytes=LIMIT)

    def no_parsing(raw: object) -> object:
        raise AssertionError("a record over the limit was parsed")

    monkeypatch.setattr(
        processor_module, "orjson", SimpleNamespace(loads=no_parsing, dumps=orjson.dumps)
    )
    # Parsed, this would be a schema violation (no event_id, a number for a name).
    value = orjson.dumps({"user_id": "ann", "name": 1, "pad": "x" * LIMIT})
    _handle(processor, _record("custom-events", b"ann", value))
    [letter] = _letters(processor)
    assert letter["reason"] == "too_large"
    assert str(LIMIT) in letter["error"] and "max_input_bytes" in letter["error"]
    assert base64.b64decode(letter["value"]) == value  # kept whole, for a replay
    validator("dead-letter").check(letter)
    assert processor.outbox.tally.dead_letters[("custom-events", "too_large")] == 1
    assert processor.outbox.next_offsets  # the partition moves past it


def test_not_even_json_over_the_limit_is_too_large(store: PartitionStore) -> None:
    processor = _processor(store, max_input_bytes=LIMIT)
    _handle(processor, _record("profiles", b"ann", b"\xff" * (LIMIT + 1)))
    [letter] = _letters(processor)
    assert letter["reason"] == "too_large"  # not invalid_json: it was never read
    assert base64.b64decode(letter["value"]) == b"\xff" * (LIMIT + 1)


def test_the_key_counts_towards_the_limit(store: PartitionStore) -> None:
    processor = _processor(store, max_input_bytes=300)
    value = _profile("ann", 300 - 3)  # with the key "ann": exactly the limit
    _handle(
        processor,
        _record("profiles", b"ann", value, offset=0),
        _record("profiles", b"ann", value + b" ", offset=1),  # one byte over, still JSON
    )
    [letter] = _letters(processor)
    assert (letter["reason"], letter["offset"]) == ("too_large", 1)
    assert processor.outbox.tally.profile_updates == 1  # the record at the limit was applied


def test_the_dead_letter_schema_knows_too_large() -> None:
    reason = load_schema("dead-letter")["properties"]["reason"]
    assert "too_large" in reason["enum"]
    assert "too_large" in reason["description"]


def _largest_profile(index: int) -> dict[str, Any]:
    """A schema-valid profile update of one attribute, with the most escaped strings."""
    suffix = str(index)
    name = "\x00" * (MAX_ATTRIBUTE_NAME_LENGTH - len(suffix)) + suffix
    value = ["\x00" * MAX_ATTRIBUTE_STRING_LENGTH] * MAX_ATTRIBUTE_ARRAY_ITEMS
    return {"user_id": "ann", "timestamp": NOW_MS - index, "attributes": {name: value}}


def test_the_largest_profiles_leave_a_state_well_under_the_smallest_record(
    store: PartitionStore,
) -> None:
    minimum = Settings.model_fields["max_record_bytes"].metadata[0].ge  # 65,536
    processor = _processor(store, max_record_bytes=minimum)
    for index in range(MAX_ATTRIBUTES + 10):
        document = _largest_profile(index)
        validator("profile-update").check(document)
        raw = orjson.dumps(document)
        assert len(raw) <= DEFAULT_MAX_INPUT_BYTES
        _handle(processor, _record("profiles", b"ann", raw, offset=index))
    assert _letters(processor) == []
    staged, _ = processor.freeze_checkpoint()
    stored = staged.get(USER_PREFIX + b"ann")
    assert stored is not None, "the state was too large to be saved"
    assert len(stored) <= MAX_USER_STATE_BYTES + 2  # the format header
    assert len(USER_PREFIX + b"ann") + len(stored) < minimum - 14 * 1024
    user = UserState.from_json_dict(orjson.loads(stored[2:]))
    assert 0 < len(user.attributes) < MAX_ATTRIBUTES
    # The newest are the ones kept.
    assert max(user.attribute_times.values()) == NOW_MS
