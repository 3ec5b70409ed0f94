"""One record, one engagement or one stored value can never stop a partition."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.structs import ConsumerRecord, TopicPartition
from rocksdict import Options, Rdict

from engine.core.catalog import Catalog
from engine.core.engagements import MAX_MESSAGE_BYTES, compile_engagement
from engine.core.policy import MatchPolicy
from engine.core.state import UserState
from engine.errors import InvalidRecord, StateFormatError
from engine.schemas import apply_engagement_defaults, validator
from engine.settings import load_settings
from engine.state.keys import PENDING_PREFIX, USER_PREFIX
from engine.state.store import PartitionStore
from engine.stream.catalog_follower import CatalogFollower
from engine.stream.dead_letters import dead_letter
from engine.stream.processor import PartitionProcessor
from engine.stream.topics import TopicNames

NOW_MS = 1_795_442_400_000  # 2026-11-23T14:00:00Z
TOPICS = TopicNames.for_settings(load_settings())
BY_KIND = {kind.value: name for name, kind in TOPICS.inputs.items()}


def _record(
    kind: str, value: bytes | dict[str, Any], key: bytes | None = None, offset: int = 0
) -> ConsumerRecord:
    raw = value if isinstance(value, bytes) else orjson.dumps(value)
    if key is None and isinstance(value, dict):
        key = str(value["user_id"]).encode()
    return ConsumerRecord(
        BY_KIND[kind], 0, offset, 0, 0, key, raw, None, len(key or b""), len(raw), ()
    )


def _custom(user: str, name: str, event_id: str, timestamp_ms: int = NOW_MS) -> dict[str, Any]:
    return {"event_id": event_id, "user_id": user, "name": name, "timestamp": timestamp_ms}


def _engagement(engagement_id: str, event: str, **fields: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "id": engagement_id,
        "name": engagement_id,
        "status": "active",
        "trigger": {"event": "custom", "name": event},
        "message": {"title": "Hello", "body": "..."},
        "ignore_frequency_caps": True,
    }
    document.update(fields)
    return document


def _catalog(*documents: dict[str, Any]) -> Catalog:
    return Catalog.build(
        compile_engagement(apply_engagement_defaults(document), 1) for document in documents
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[PartitionStore]:
    opened = PartitionStore(tmp_path / "partition-0")
    yield opened
    opened.close()


def _processor(store: PartitionStore, catalog: Catalog, **limits: int) -> PartitionProcessor:
    return PartitionProcessor(0, store, TOPICS, lambda: catalog, MatchPolicy(), **limits)


def _handle(processor: PartitionProcessor, *records: ConsumerRecord) -> None:
    for record in records:
        processor.handle_batch(TopicPartition(record.topic, 0), [record], NOW_MS)


def _outputs(processor: PartitionProcessor, topic: str) -> list[dict[str, Any]]:
    return [orjson.loads(r.value) for r in processor.outbox.records if r.topic == topic]


def test_a_dead_letter_of_a_record_near_one_megabyte_stays_under_the_record_limit(
    store: PartitionStore,
) -> None:
    # Not JSON, and about 1 MB: base64 makes it a third larger than the broker takes.
    huge = b"x" * 1_000_000
    # Parsed (a worker allowing inputs that large), it is rejected as invalid JSON.
    processor = _processor(store, _catalog(), max_input_bytes=2_000_000)
    _handle(processor, _record("custom-events", huge, key=b"ann"))

    [output] = [r for r in processor.outbox.records if r.topic == TOPICS.dead_letters]
    assert len(output.value) + len(output.key or b"") <= load_settings().max_record_bytes
    letter = orjson.loads(output.value)
    validator("dead-letter").check(letter)
    assert letter["reason"] == "invalid_json"
    assert letter["truncated"] is True
    assert letter["value_bytes"] == len(huge)
    kept = base64.b64decode(letter["value"])
    assert 0 < len(kept) < len(huge) and huge.startswith(kept)


def test_an_output_over_the_record_limit_dead_letters_its_input_and_the_next_goes_through(
    store: PartitionStore,
) -> None:
    catalog = _catalog(
        _engagement("big", "Open", message={"title": "Hello", "body": "x" * 5_000}),
        _engagement("small", "Close"),
    )
    processor = _processor(store, catalog, max_record_bytes=4_000)
    _handle(
        processor,
        _record("custom-events", _custom("ann", "Open", "e1"), offset=0),
        _record("custom-events", _custom("bob", "Close", "e2"), offset=1),
    )
    assert [d["engagement_id"] for d in _outputs(processor, TOPICS.deliveries)] == ["small"]
    [letter] = _outputs(processor, TOPICS.dead_letters)
    assert (letter["reason"], letter["offset"]) == ("output_too_large", 0)
    assert all(len(r.value) <= 4_000 for r in processor.outbox.records)


def test_a_far_future_profile_timestamp_does_not_pin_an_attribute(store: PartitionStore) -> None:
    processor = _processor(store, _catalog())
    year_ms = 365 * 86_400_000
    _handle(
        processor,
        _record(
            "profiles",
            {"user_id": "ann", "timestamp": NOW_MS + year_ms, "attributes": {"plan": "gold"}},
            offset=0,
        ),
        _record(
            "profiles",
            {"user_id": "ann", "timestamp": NOW_MS, "attributes": {"plan": "free"}},
            offset=1,
        ),
    )
    _, outbox = processor.freeze_checkpoint()
    stored = orjson.loads(store.get(USER_PREFIX + b"ann") or b"{}")
    assert stored["a"] == {"plan": "free"}
    # Like an event too far ahead: counted as stale, not applied.
    assert outbox.tally.stale_events["profiles"] == 1
    assert outbox.tally.profile_updates == 1


def test_a_key_that_is_not_utf8_is_a_dead_letter_not_another_user(store: PartitionStore) -> None:
    catalog = _catalog(_engagement("hello", "Open"))
    processor = _processor(store, catalog)
    # Decoded with replacement characters, b"\xffann" would pass for user "\ufffdann".
    event = _custom("\ufffdann", "Open", "e1")
    _handle(processor, _record("custom-events", event, key=b"\xffann"))
    assert _outputs(processor, TOPICS.deliveries) == []
    [letter] = _outputs(processor, TOPICS.dead_letters)
    assert letter["reason"] == "invalid_key"


def _engagement_record(document: dict[str, Any], version: int, offset: int) -> ConsumerRecord:
    value = orjson.dumps(
        {
            "engagement": document,
            "version": version,
            "updated_at": "2026-11-23T13:00:00Z",
            "author": "someone",
        }
    )
    key = document["id"].encode()
    return ConsumerRecord(
        "engagements", 0, offset, 0, 0, key, value, None, len(key), len(value), ()
    )


def test_an_engagement_with_an_overflowing_delay_never_stops_the_partition(
    store: PartitionStore,
) -> None:
    """Published straight to the topic, past `declic engagements apply`'s checks."""
    follower = CatalogFollower(load_settings())
    overflowing = _engagement("late", "Open", priority=10)
    overflowing["trigger"]["delay_seconds"] = 20_000_000_000_000_000
    follower._apply(_engagement_record(overflowing, 1, 0))
    follower._apply(_engagement_record(_engagement("hello", "Open"), 1, 1))
    catalog = Catalog.build(follower._engagements.values())
    processor = _processor(store, catalog)
    _handle(
        processor,
        _record("custom-events", _custom("ann", "Open", "e1"), offset=0),
        _record("custom-events", _custom("bob", "Open", "e2"), offset=1),
    )
    staged, outbox = processor.freeze_checkpoint()  # staging must not raise
    delivered = [orjson.loads(r.value) for r in outbox.records if r.topic == TOPICS.deliveries]
    assert {(d["engagement_id"], d["user_id"]) for d in delivered} == {
        ("hello", "ann"),
        ("hello", "bob"),
    }
    assert staged


def test_staging_skips_one_state_that_cannot_be_encoded_and_keeps_the_others(
    store: PartitionStore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    processor = _processor(store, _catalog(_engagement("hello", "Open")))
    _handle(
        processor,
        _record("custom-events", _custom("ann", "Open", "e1"), offset=0),
        _record("custom-events", _custom("bob", "Open", "e2"), offset=1),
    )
    broken = processor.users.get("ann")
    encode = UserState.to_json_dict

    def unencodable(user: UserState) -> dict[str, object]:
        return {"x": 1 << 70} if user is broken else encode(user)  # past orjson's 64 bits

    monkeypatch.setattr(UserState, "to_json_dict", unencodable)
    with caplog.at_level(logging.ERROR):
        staged, _ = processor.freeze_checkpoint()
    assert USER_PREFIX + b"bob" in staged
    assert USER_PREFIX + b"ann" not in staged
    assert "ann" in caplog.text


def test_figure_scans_skip_a_stored_value_they_cannot_read(store: PartitionStore) -> None:
    catalog = _catalog(_engagement("hello", "Open"))
    store.write([(USER_PREFIX + b"bad", b"not json"), (USER_PREFIX + b"ann", b"{}")], None)
    processor = _processor(store, catalog)
    processor.begin_stats(NOW_MS, 60_000)
    while processor.advance_stats(1.0) is None:
        pass
    [figures] = [
        orjson.loads(r.value)
        for r in processor.outbox.records
        if r.topic == TOPICS.engagement_stats
    ]
    assert figures["segment"]["known_users"] == 2


def test_a_stored_pending_delivery_that_cannot_be_read_is_skipped_and_the_others_released(
    store: PartitionStore,
) -> None:
    catalog = _catalog(
        _engagement(
            "later", "Open", trigger={"event": "custom", "name": "Open", "delay_seconds": 60}
        )
    )
    processor = _processor(store, catalog)
    _handle(processor, _record("custom-events", _custom("ann", "Open", "e1"), offset=0))
    staged, _ = processor.freeze_checkpoint()
    store.commit_frozen(None)
    [pending_key] = [key for key in staged if key.startswith(PENDING_PREFIX)]
    store.write([(PENDING_PREFIX + b"000000000000001:broken", b"not json")], None)

    reopened = _processor(store, catalog)
    assert reopened.release_due(NOW_MS + 61_000) >= 1
    [delivery] = _outputs(reopened, TOPICS.deliveries)
    assert (delivery["engagement_id"], delivery["user_id"]) == ("later", "ann")
    assert store.get(pending_key) is None  # released: its staged deletion


def test_a_store_closed_during_a_figures_scan_can_be_opened_again_at_once(
    tmp_path: Path,
) -> None:
    """A partition revoked and assigned back while its figures were being measured."""
    store = PartitionStore(tmp_path / "partition-0")
    store.write([(USER_PREFIX + f"user-{n}".encode(), b"{}") for n in range(5_000)], None)
    processor = _processor(store, _catalog(_engagement("hello", "Open")))
    processor.begin_stats(NOW_MS, 60_000)
    assert processor.advance_stats(0.0) is None  # the scan holds a store iterator now
    processor.close()
    store.close()
    reopened = PartitionStore(tmp_path / "partition-0")
    assert reopened.get(USER_PREFIX + b"user-1") == b"{}"
    reopened.close()


def test_state_of_a_newer_format_stops_the_partition_instead_of_being_misread(
    tmp_path: Path,
) -> None:
    """After a downgrade: the store holds what a newer version wrote (format 9)."""
    newer = Rdict(str(tmp_path / "p0"), Options(raw_mode=True))
    newer[USER_PREFIX + b"ann"] = b"\xdc\x09{}"
    newer.close()
    store = PartitionStore(tmp_path / "p0")
    processor = _processor(store, _catalog(_engagement("hello", "Open")))
    with pytest.raises(StateFormatError, match="format 9 is newer"):
        _handle(processor, _record("custom-events", _custom("ann", "Open", "e1")))
    assert _outputs(processor, TOPICS.dead_letters) == []
    store.close()


def test_a_dead_letter_fits_whatever_its_error_escapes_to() -> None:
    """An error full of characters JSON escapes (or non-ASCII) must not push it over."""
    huge = b"\x00" * 200_000
    record = _record("custom-events", huge, key=b"k" * 5_000)
    detail = '\x01\u00e9"' * 5_000  # 6 bytes each once escaped, or 2
    letter = dead_letter(
        record, "invalid_json", detail, NOW_MS, topic="dead-letters", max_record_bytes=65_536
    )
    assert len(letter.value) + len(letter.key or b"") <= 65_536
    assert letter.key is None  # a 5,000-byte key is no user id: the letter is not keyed by it
    document = orjson.loads(letter.value)
    validator("dead-letter").check(document)
    assert (document["key_bytes"], document["value_bytes"]) == (5_000, 200_000)
    assert huge.startswith(base64.b64decode(document["value"]))


def test_a_message_past_the_limit_is_refused_and_the_largest_delivery_fits_any_limit(
    store: PartitionStore,
) -> None:
    """So that no valid engagement can produce a delivery a worker would have to refuse."""
    body = "x" * (MAX_MESSAGE_BYTES - len('{"body":""}'))
    too_big = _engagement("big", "Open", message={"body": body + "x"})
    with pytest.raises(InvalidRecord, match="more than the 49152"):
        compile_engagement(apply_engagement_defaults(too_big), 1)
    longest = "\U0001f600" * 256  # 1 KiB of UTF-8 per identifier, the longest allowed
    largest = _engagement(longest, "Open", message={"body": body})
    processor = _processor(store, _catalog(largest), max_record_bytes=65_536)  # the least
    _handle(processor, _record("custom-events", _custom(longest, "Open", longest)))
    [delivery] = [r for r in processor.outbox.records if r.topic == TOPICS.deliveries]
    assert len(delivery.key or b"") + len(delivery.value) <= 65_536


@pytest.mark.parametrize("timestamp", ["2026-11-23T13:59:60Z", "2026-11-23t14:00:00z"])
def test_a_timestamp_the_schema_refuses_is_an_invalid_timestamp_dead_letter(
    store: PartitionStore, timestamp: str
) -> None:
    # The old hand-written parser read both (a leap second at any minute, lower case);
    # the schema refuses them: now the one decode does too, with the reason that fits.
    processor = _processor(store, _catalog(_engagement("hello", "Open")))
    _handle(
        processor,
        _record("custom-events", {**_custom("ann", "Open", "e-1"), "timestamp": timestamp}),
    )
    [letter] = _outputs(processor, TOPICS.dead_letters)
    assert letter["reason"] == "invalid_timestamp"
    assert letter["error"].startswith("$.timestamp")
    assert _outputs(processor, TOPICS.deliveries) == []
