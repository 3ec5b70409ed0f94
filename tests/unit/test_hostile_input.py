"""One partition's processor survives any input record, on every input topic.

Whatever a record holds (any bytes, any JSON, any schema-valid record steered towards
the catalog, the users and the edges), ``handle_batch`` returns, the partition moves past
the record, and the record yields its outputs or exactly one dead letter, each valid
against its schema and within ``max_record_bytes``. The state it leaves can be staged and
committed, and the user's next normal events still work, before and after a restart.
"""

from __future__ import annotations

import base64
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.structs import ConsumerRecord, TopicPartition
from hypothesis import HealthCheck, Phase, currently_in_test_context, event, given, settings
from hypothesis import strategies as st

from engine.core.deliveries import delivery_id_for_test_send
from engine.core.policy import MatchPolicy
from engine.schemas import validator
from engine.settings import load_settings
from engine.state.store import PartitionStore
from engine.stream.bulk_send import OutputRecord
from engine.stream.processor import SCHEMA_BY_KIND, PartitionProcessor
from engine.stream.topics import InputKind, TopicNames
from tests.unit.hostile_strategies import (
    EDGE_TIMESTAMPS,
    ENGAGEMENT_IDS,
    JSON_VALUES,
    NOW_MS,
    USERS,
    RepeatedBytes,
    catalog,
    encode_json,
    key_variants,
    schema_records,
    steered,
    timestamps,
)

TOPICS = TopicNames.for_settings(load_settings())
BY_KIND = {kind: name for name, kind in TOPICS.inputs.items()}
OUTPUT_SCHEMAS = {
    TOPICS.deliveries: "delivery",
    TOPICS.impressions: "impression",
    TOPICS.conversions: "conversion",
    TOPICS.dead_letters: "dead-letter",
    TOPICS.user_audit: "user-audit",
}
# The smallest limit a worker takes, and the default.
RECORD_LIMITS = st.sampled_from([65_536, load_settings().max_record_bytes])
KINDS = st.sampled_from(list(InputKind))

HOSTILE = settings(
    deadline=None,
    print_blob=True,  # a failure prints its minimal example and how to replay it
    # Shrinking is worth its time; the explain phase (tens of seconds here) is not.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    # Records of tens of kilobytes and nesting a thousand deep are the point here.
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class Partition:
    """A processor on a real store in a directory of its own, checking every record."""

    def __init__(self, directory: Path, max_record_bytes: int) -> None:
        self.directory = directory
        self.max_record_bytes = max_record_bytes
        self.store = PartitionStore(directory / "partition-0")
        self.processor = self._open_processor()
        self.next_offset = dict.fromkeys(InputKind, 0)
        self.deliveries: list[tuple[str, str]] = []  # (delivery_id, user_id) produced
        self.now_ms = NOW_MS

    def _open_processor(self) -> PartitionProcessor:
        return PartitionProcessor(
            0,
            self.store,
            TOPICS,
            catalog,
            MatchPolicy(),
            max_record_bytes=self.max_record_bytes,
        )

    def feed(
        self,
        kind: InputKind,
        key: bytes | None,
        value: bytes | None,
        gap: int = 0,
        *,
        note: bool = True,
    ) -> list[OutputRecord]:
        """Handle one record in a batch of its own; check and return its outputs."""
        topic = BY_KIND[kind]
        tp = TopicPartition(topic, 0)
        offset = self.next_offset[kind] + gap  # offsets may skip (compaction, markers)
        self.next_offset[kind] = offset + 1
        record = ConsumerRecord(
            topic,
            0,
            offset,
            self.now_ms,
            0,
            key,
            value,
            None,
            len(key or b""),
            len(value or b""),
            (),
        )
        outbox = self.processor.outbox
        queued = len(outbox.records)
        self.processor.handle_batch(tp, [record], self.now_ms)  # must not raise
        outbox = self.processor.outbox
        assert outbox.next_offsets.get(tp) == offset + 1, "the partition did not move on"
        outputs = outbox.records[queued:]
        self._check_outputs(record, outputs, note and currently_in_test_context())
        return outputs

    def _check_outputs(
        self, record: ConsumerRecord, outputs: list[OutputRecord], note: bool
    ) -> None:
        letters = [output for output in outputs if output.topic == TOPICS.dead_letters]
        if letters:
            assert len(outputs) == 1, (
                f"a dead letter and other outputs for one record: {_describe(outputs)}"
            )
            reason = _check_dead_letter(record, letters[0], self.max_record_bytes)
            # Survived, but README: "processing_error (a bug: the record is kept and the
            # worker goes on)". Each record that is no bug has a reason of its own.
            assert reason != "processing_error", (
                f"a bug caught by the safety net: {orjson.loads(letters[0].value)['error']}"
            )
            if note:  # statistics of the hostile records: --hypothesis-show-statistics
                event(f"{record.topic}: dead letter {reason}")
            return
        for output in outputs:
            document = _check_output(output, self.max_record_bytes)
            if output.topic == TOPICS.deliveries:
                self.deliveries.append((document["delivery_id"], document["user_id"]))
            if note:
                event(f"{record.topic}: {output.topic}")
        if note and not outputs:
            event(f"{record.topic}: nothing")

    def feed_batch(
        self, kind: InputKind, records: list[tuple[bytes | None, bytes | None]]
    ) -> dict[int, list[OutputRecord]]:
        """Handle records in one batch; return the dead letters by offset, checked."""
        topic = BY_KIND[kind]
        tp = TopicPartition(topic, 0)
        batch = []
        for key, value in records:
            offset = self.next_offset[kind]
            self.next_offset[kind] = offset + 1
            size = (len(key or b""), len(value or b""))
            batch.append(
                ConsumerRecord(topic, 0, offset, self.now_ms, 0, key, value, None, *size, ())
            )
        queued = len(self.processor.outbox.records)
        self.processor.handle_batch(tp, batch, self.now_ms)  # must not raise
        outbox = self.processor.outbox
        assert outbox.next_offsets.get(tp) == batch[-1].offset + 1, "the partition stalled"
        letters: dict[int, list[OutputRecord]] = {}
        by_offset = {record.offset: record for record in batch}
        for output in outbox.records[queued:]:
            if output.topic != TOPICS.dead_letters:
                _check_output(output, self.max_record_bytes)
                continue
            offset = orjson.loads(output.value)["offset"]
            letters.setdefault(offset, []).append(output)
            _check_dead_letter(by_offset[offset], output, self.max_record_bytes)
        assert all(len(each) == 1 for each in letters.values()), "two dead letters for one record"
        return letters

    def release_due(self, now_ms: int) -> list[OutputRecord]:
        """Release the delayed deliveries due by ``now_ms``: only valid deliveries result."""
        self.now_ms = max(self.now_ms, now_ms)
        queued = len(self.processor.outbox.records)
        self.processor.release_due(now_ms)  # must not raise
        outputs = self.processor.outbox.records[queued:]
        for output in outputs:
            assert output.topic == TOPICS.deliveries, _describe([output])
            document = _check_output(output, self.max_record_bytes)
            self.deliveries.append((document["delivery_id"], document["user_id"]))
        return outputs

    def checkpoint(self) -> None:
        """Stage the state and write it as a committed checkpoint does."""
        self.processor.freeze_checkpoint()  # must not raise
        self.store.commit_frozen(None)

    def measure_figures(self) -> None:
        """The engagement figures' scan of every stored user and delivery goes through."""
        self.processor.begin_stats(self.now_ms, 3_600_000)
        for _ in range(10_000):
            if self.processor.advance_stats(1.0) is not None:
                return
        raise AssertionError("the figures' scan never ends")

    def restart(self) -> None:
        """A new processor on the committed state, as after a rebalance."""
        self.processor.close()
        self.processor = self._open_processor()

    def close(self) -> None:
        self.processor.close()
        self.store.close()


@contextmanager
def partition(max_record_bytes: int) -> Iterator[Partition]:
    """A fresh partition per example: no state leaks from one example to the next."""
    with tempfile.TemporaryDirectory(prefix="declic-hostile-") as directory:
        opened = Partition(Path(directory), max_record_bytes)
        try:
            yield opened
        finally:
            opened.close()


def _describe(outputs: list[OutputRecord]) -> str:
    return repr([(output.topic, output.key, output.value[:300]) for output in outputs])


def _check_output(output: OutputRecord, max_record_bytes: int) -> dict[str, Any]:
    assert output.topic in OUTPUT_SCHEMAS, f"output on an unexpected topic: {output.topic}"
    assert len(output.key or b"") + len(output.value) <= max_record_bytes
    document: dict[str, Any] = orjson.loads(output.value)
    validator(OUTPUT_SCHEMAS[output.topic]).check(document)
    if output.topic == TOPICS.user_audit:  # keyed by its request: it names no user
        assert output.key == document["request_id"].encode()
        return document
    assert output.key == document["user_id"].encode(), "an output not keyed by its user"
    return document


def _check_dead_letter(record: ConsumerRecord, output: OutputRecord, max_record_bytes: int) -> str:
    size = len(output.key or b"") + len(output.value)
    assert size <= max_record_bytes, f"a dead letter of {size} bytes"
    letter = orjson.loads(output.value)
    validator("dead-letter").check(letter)
    assert (letter["source_topic"], letter["partition"], letter["offset"]) == (
        record.topic,
        record.partition,
        record.offset,
    )
    key = None if letter["key"] is None else base64.b64decode(letter["key"])
    value = None if letter["value"] is None else base64.b64decode(letter["value"])
    if letter.get("truncated"):
        assert (letter["key_bytes"], letter["value_bytes"]) == (
            len(record.key or b""),
            len(record.value or b""),
        )
        assert (record.key or b"").startswith(key or b"")
        assert (record.value or b"").startswith(value or b"")
    else:
        assert (key, value) == (record.key, record.value), "a dead letter lost its record"
    return str(letter["reason"])


def _is_identifier(user_id: object) -> bool:
    return isinstance(user_id, str) and 1 <= len(user_id) <= 256


def _normal(kind: InputKind, user: str, event_id: str, now_ms: int) -> dict[str, Any]:
    if kind is InputKind.SESSIONS:
        return {
            "event_id": event_id,
            "user_id": user,
            "type": "session_start",
            "timestamp": now_ms,
            "device": {"platform": "ios", "timezone": "Europe/Paris"},
        }
    if kind is InputKind.PROFILES:
        return {"user_id": user, "attributes": {"country": "FR"}, "timestamp": now_ms}
    return {
        "event_id": event_id,
        "user_id": user,
        "name": "Added to Favorites",
        "timestamp": now_ms,
        "properties": {"price": 150, "category": "books"},
    }


def assert_replayed_in_a_batch(
    part: Partition, kind: InputKind, key: bytes | None, value: bytes | None, user: str
) -> None:
    """The record twice more (Kafka delivers at least once) in one batch, then, on the
    topics with normal events of that kind, a normal one that must go through."""
    records = [(key, value), (key, value)]
    if kind in (InputKind.SESSIONS, InputKind.PROFILES, InputKind.CUSTOM_EVENTS):
        normal = _normal(kind, user, "after-the-replays", part.now_ms)
        records.append((user.encode(), orjson.dumps(normal)))
    letters = part.feed_batch(kind, records)
    if len(records) == 3:
        assert part.next_offset[kind] - 1 not in letters, "the normal record after it failed"


def assert_normal_events_still_work(part: Partition, user: str) -> None:
    """After whatever came before: commit, then the user's normal events, then a restart."""
    part.checkpoint()
    part.measure_figures()
    for round_ in range(2):
        part.now_ms += 60_000
        for kind in (InputKind.PROFILES, InputKind.SESSIONS, InputKind.CUSTOM_EVENTS):
            document = _normal(kind, user, f"normal-{round_}-{kind.value}", part.now_ms)
            outputs = part.feed(kind, user.encode(), orjson.dumps(document), note=False)
            letters = [o for o in outputs if o.topic == TOPICS.dead_letters]
            assert not letters, f"a normal {kind.value} event of {user!r}: {_describe(letters)}"
        part.release_due(part.now_ms + 86_400_000)
        part.checkpoint()
        part.restart()


# --------------------------------------------------------------------------------------
# Any bytes.


def _mangled(data: bytes, position: int, operation: int) -> bytes:
    if not data:
        return data
    at = position % len(data)
    if operation == 0:
        return data[:at]  # cut short
    if operation == 1:
        return data[:at] + bytes([data[at] ^ 0x80]) + data[at + 1 :]  # invalid UTF-8, often
    if operation == 2:
        return data[:at] + b"\xed\xa0\x80" + data[at:]  # an encoded lone surrogate
    return data[:at] + b"\x00" + data[at:]


def _valid_bytes() -> st.SearchStrategy[bytes]:
    return KINDS.flatmap(lambda kind: schema_records(SCHEMA_BY_KIND[kind])).map(orjson.dumps)


BYTE_VALUES = st.one_of(
    st.none(),
    st.just(b""),
    st.binary(max_size=300),
    st.sampled_from([b"null", b"{}", b"[]", b"0", b'""', b"NaN", b"Infinity", b"1e400"]),
    st.sampled_from([b"\xef\xbb\xbf{}", b'{"user_id":"ann"}\x00', b"\xff\xfe{\x00}\x00"]),
    st.builds(RepeatedBytes, st.binary(min_size=1, max_size=4), st.integers(2_500, 100_000)),
    st.tuples(_valid_bytes(), st.integers(0, 10_000), st.integers(0, 3)).map(
        lambda triple: _mangled(*triple)
    ),
)
BYTE_KEYS = st.one_of(
    st.none(),
    st.just(b""),
    st.binary(max_size=64),
    st.sampled_from([user.encode() for user in USERS]),
    st.text(max_size=20).map(str.encode),
    st.sampled_from([b"\xff", b"ann\xff", b"\xed\xa0\x80"]),
    st.builds(
        RepeatedBytes, st.sampled_from([b"k", b"\x00", b"\xff"]), st.integers(1_000, 300_000)
    ),
)


@settings(HOSTILE, max_examples=150)
@given(kind=KINDS, key=BYTE_KEYS, value=BYTE_VALUES, limit=RECORD_LIMITS)
def test_any_bytes_on_any_input_topic(
    kind: InputKind, key: bytes | None, value: bytes | None, limit: int
) -> None:
    with partition(limit) as part:
        part.feed(kind, key, value)
        try:
            user = (key or b"").decode()
        except UnicodeDecodeError:
            user = ""
        user = user if _is_identifier(user) else "ann"
        assert_replayed_in_a_batch(part, kind, key, value, user)
        assert_normal_events_still_work(part, user)


# --------------------------------------------------------------------------------------
# Any JSON.


@st.composite
def near_valid_documents(draw: st.DrawFn, kind: InputKind) -> Any:
    """A schema-valid record with fields replaced, added or removed at random."""
    document = dict(draw(schema_records(SCHEMA_BY_KIND[kind])))
    for _ in range(draw(st.integers(1, 3))):
        action = draw(st.integers(0, 3))
        if action == 0 and document:
            del document[draw(st.sampled_from(sorted(document)))]
        elif action == 1:
            document[draw(st.text(max_size=12))] = draw(JSON_VALUES)
        elif document:
            document[draw(st.sampled_from(sorted(document)))] = draw(JSON_VALUES)
    return document


@st.composite
def json_records(draw: st.DrawFn) -> tuple[InputKind, bytes | None, bytes, Any]:
    kind = draw(KINDS)
    document = draw(st.one_of(JSON_VALUES, near_valid_documents(kind)))
    user_id = document.get("user_id") if isinstance(document, dict) else None
    key = draw(key_variants(user_id if isinstance(user_id, str) else None))
    return kind, key, encode_json(document), user_id


@settings(HOSTILE, max_examples=200)
@given(record=json_records(), limit=RECORD_LIMITS)
def test_any_json_on_any_input_topic(
    record: tuple[InputKind, bytes | None, bytes, Any], limit: int
) -> None:
    kind, key, value, user_id = record
    with partition(limit) as part:
        part.feed(kind, key, value)
        user = user_id if _is_identifier(user_id) else "ann"
        assert_replayed_in_a_batch(part, kind, key, value, user)
        assert_normal_events_still_work(part, user)


# --------------------------------------------------------------------------------------
# Schema-valid records, steered towards the catalog, the users and the edges.


@settings(HOSTILE, max_examples=150)
@given(data=st.data(), limit=RECORD_LIMITS)
def test_schema_valid_records_in_sequence_on_every_topic(data: st.DataObject, limit: int) -> None:
    users = data.draw(st.lists(st.sampled_from(USERS), min_size=1, max_size=3, unique=True))
    with partition(limit) as part:
        if data.draw(st.booleans(), label="deliveries first"):
            seen = data.draw(st.booleans(), label="impressions first")
            for number, user in enumerate(users):
                _trigger_deliveries(part, user, number, seen)
        for _ in range(data.draw(st.integers(1, 10), label="steps")):
            kind = data.draw(KINDS, label="kind")
            base = data.draw(schema_records(SCHEMA_BY_KIND[kind]), label="generated")
            document = data.draw(
                steered(kind, base, users=users, deliveries=part.deliveries, near_ms=part.now_ms),
                label="record",
            )
            key = data.draw(key_variants(document["user_id"]), label="key")
            gap = data.draw(st.sampled_from([0, 0, 0, 1, 1_000]), label="offset gap")
            part.feed(kind, key, encode_json(document), gap)
            then = data.draw(st.sampled_from(["go on", "go on", "checkpoint", "later"]))
            if then == "checkpoint":
                part.checkpoint()
            elif then == "later":
                part.release_due(part.now_ms + data.draw(st.integers(1_000, 700_000)))
        part.release_due(part.now_ms + 86_400_000 * 400)
        for user in users:
            assert_normal_events_still_work(part, user)


# --------------------------------------------------------------------------------------
# Interactions and test sends, on deliveries and engagements that exist and that don't.


def _trigger_deliveries(part: Partition, user: str, number: int, seen: bool = False) -> None:
    """Deliveries for ``user`` (the ``number``th) from engagements that trigger on
    normal events; ``seen``: each then has an impression (conversions are watched)."""
    key = user.encode()
    profile = {
        "user_id": user,
        "attributes": {"country": "FR", "plan": "free", "email": "a@b.c", "tags": ["shopper"]},
        "timestamp": NOW_MS - 1_000,
    }
    part.feed(InputKind.PROFILES, key, orjson.dumps(profile))
    events = [
        (InputKind.SESSIONS, {"type": "session_start"}),
        (InputKind.CUSTOM_EVENTS, {"name": "Added to Favorites", "properties": {"price": 150}}),
        (InputKind.CUSTOM_EVENTS, {"name": "Viewed Pricing"}),
        (InputKind.CUSTOM_EVENTS, {"name": "Cart Updated", "properties": {"items": 2}}),
    ]
    for index, (kind, fields) in enumerate(events):
        document = {"event_id": f"{number}-{index}", "user_id": user, "timestamp": NOW_MS}
        part.feed(kind, key, orjson.dumps({**document, **fields}))
    request = {
        "request_id": f"{number}-request",
        "engagement_id": "premium-upsell",
        "user_id": user,
        "requested_at": "2026-11-23T14:00:00Z",
        "author": "qa",
    }
    part.feed(InputKind.TEST_SENDS, key, orjson.dumps(request))
    part.release_due(NOW_MS + 601_000)  # the cart reminder's delay
    mine = [delivery for delivery, owner in part.deliveries if owner == user]
    for index, delivery in enumerate(mine if seen else []):
        interaction = {
            "event_id": f"{number}-seen-{index}",
            "user_id": user,
            "delivery_id": delivery,
            "kind": "impression",
            "timestamp": NOW_MS,
        }
        outputs = part.feed(InputKind.INTERACTIONS, key, orjson.dumps(interaction))
        assert [o.topic for o in outputs] == [TOPICS.impressions], _describe(outputs)


@settings(HOSTILE, max_examples=120)
@given(data=st.data(), limit=RECORD_LIMITS)
def test_interactions_and_test_sends_on_what_exists_and_what_does_not(
    data: st.DataObject, limit: int
) -> None:
    users = data.draw(st.lists(st.sampled_from(USERS), min_size=1, max_size=2, unique=True))
    with partition(limit) as part:
        seen = data.draw(st.booleans(), label="impressions first")
        for number, user in enumerate(users):
            _trigger_deliveries(part, user, number, seen)
        assert {user for _, user in part.deliveries} == set(users), "nothing to interact with"
        if data.draw(st.booleans(), label="checkpoint first"):
            part.checkpoint()
            part.restart()
        for _ in range(data.draw(st.integers(1, 8), label="records")):
            action = data.draw(st.sampled_from(["interaction", "test send", "goal event"]))
            if action == "interaction":
                _interaction(data, part, users)
            elif action == "test send":
                _test_send(data, part, users)
            else:
                _goal_event(data, part, users)
        for user in users:
            assert_normal_events_still_work(part, user)


def _interaction(data: st.DataObject, part: Partition, users: list[str]) -> None:
    document = dict(data.draw(schema_records("interaction"), label="generated interaction"))
    user = document["user_id"] = data.draw(st.sampled_from(users), label="user")
    mine = [delivery for delivery, owner in part.deliveries if owner == user]
    theirs = [delivery for delivery, owner in part.deliveries if owner != user]
    pick = data.draw(st.sampled_from(["mine", "mine", "theirs", "unknown"]), label="delivery")
    if pick == "mine" and mine:
        document["delivery_id"] = data.draw(st.sampled_from(mine))
    elif pick == "theirs" and theirs:
        document["delivery_id"] = data.draw(st.sampled_from(theirs))
    document["timestamp"] = data.draw(
        st.one_of(timestamps(), st.sampled_from(EDGE_TIMESTAMPS), st.just(document["timestamp"])),
        label="timestamp",
    )
    if data.draw(st.booleans(), label="known element"):
        document["element"] = data.draw(
            st.sampled_from(["whats-new", "enable-alerts", "start-trial", None])
        )
    right_key = data.draw(st.booleans(), label="right key")
    key = user.encode() if right_key else data.draw(key_variants(user), label="key")
    outputs = part.feed(InputKind.INTERACTIONS, key, encode_json(document))
    known = (document["delivery_id"], user) in part.deliveries
    impressions = [o for o in outputs if o.topic == TOPICS.impressions]
    if not known:
        assert not impressions, "an impression for a delivery unknown to this user"
        assert [o.topic for o in outputs] == [TOPICS.dead_letters]
    timestamp = document["timestamp"]
    in_range = type(timestamp) is int and 0 <= timestamp <= 253_402_300_799_999
    if known and key == user.encode() and in_range:
        assert [o.topic for o in outputs] == [TOPICS.impressions], _describe(outputs)


def _goal_event(data: st.DataObject, part: Partition, users: list[str]) -> None:
    """A custom event, often one that converts a delivery seen (or a control user)."""
    document = dict(data.draw(schema_records("custom-event"), label="generated event"))
    document = data.draw(
        steered(InputKind.CUSTOM_EVENTS, document, users=users, deliveries=part.deliveries),
        label="event",
    )
    if data.draw(st.booleans(), label="goal"):
        document["name"] = data.draw(st.sampled_from(["Purchase", "Subscribed"]))
        document["user_id"] = data.draw(st.sampled_from(users))
        # After the impressions so far (a watch starts at the latest now): it converts.
        document["timestamp"] = data.draw(st.integers(part.now_ms, part.now_ms + 250_000))
    key = data.draw(key_variants(document["user_id"]), label="key")
    part.feed(InputKind.CUSTOM_EVENTS, key, encode_json(document))


def _test_send(data: st.DataObject, part: Partition, users: list[str]) -> None:
    document = dict(data.draw(schema_records("test-send"), label="generated test send"))
    user = document["user_id"] = data.draw(st.sampled_from(users), label="user")
    if data.draw(st.integers(0, 3), label="known engagement") > 0:
        document["engagement_id"] = data.draw(st.sampled_from(ENGAGEMENT_IDS))
    if data.draw(st.booleans(), label="no variant"):
        document.pop("variant", None)
    elif data.draw(st.booleans(), label="known variant"):
        document["variant"] = data.draw(st.sampled_from(["A", "B", "default", "control"]))
    right_key = data.draw(st.booleans(), label="right key")
    key = user.encode() if right_key else data.draw(key_variants(user), label="key")
    engagement_id, request_id = document["engagement_id"], document["request_id"]
    delivery_id = delivery_id_for_test_send(engagement_id, user, request_id)
    answered = delivery_id in {delivery for delivery, _ in part.deliveries}
    outputs = part.feed(InputKind.TEST_SENDS, key, encode_json(document))
    if engagement_id not in ENGAGEMENT_IDS:
        assert [o.topic for o in outputs] == [TOPICS.dead_letters], _describe(outputs)
    elif key == user.encode() and "variant" not in document:
        # A test send bypasses every eligibility rule: one delivery, unless a repeat.
        assert [o.topic for o in outputs] == ([] if answered else [TOPICS.deliveries])
        if outputs:
            delivery = orjson.loads(outputs[0].value)
            assert (delivery["delivery_id"], delivery["test"]) == (delivery_id, True)


# --------------------------------------------------------------------------------------
# Every edge timestamp on every topic, always (not left to chance).


@pytest.mark.parametrize("timestamp", EDGE_TIMESTAMPS, ids=repr)
def test_every_edge_timestamp_on_every_input_topic(timestamp: Any) -> None:
    with partition(65_536) as part:
        _trigger_deliveries(part, "ann", 0, seen=True)
        [delivery, *_] = [delivery for delivery, owner in part.deliveries if owner == "ann"]
        common = {"event_id": "edge", "user_id": "ann", "timestamp": timestamp}
        records = {
            InputKind.SESSIONS: {**common, "type": "session_start"},
            InputKind.CUSTOM_EVENTS: {**common, "name": "Purchase"},
            InputKind.INTERACTIONS: {**common, "delivery_id": delivery, "kind": "click"},
            InputKind.PROFILES: {"user_id": "ann", "attributes": {"x": 1}, "timestamp": timestamp},
            InputKind.TEST_SENDS: {
                "request_id": "edge",
                "engagement_id": "welcome-back",
                "user_id": "ann",
                "requested_at": timestamp,
                "author": "qa",
            },
        }
        for kind, document in records.items():
            part.feed(kind, b"ann", encode_json(document))
        part.feed(InputKind.CUSTOM_EVENTS, b"ann", encode_json({**common, "name": "Cart Updated"}))
        assert_normal_events_still_work(part, "ann")
