"""Erasing a user from a partition, and reading what the changelog holds about one.

A processor on a real store: a user with a profile, a delivery (with an impression), a
pending delayed delivery and counted events, next to another user; a forget request
then stages a tombstone for each of the user's keys and nobody else's, writes one audit
record naming no user, and the user's next event is a new user's.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.structs import ConsumerRecord, TopicPartition

from engine.admin.users import _Latest, render_user
from engine.cli import main
from engine.core.catalog import Catalog
from engine.core.engagements import compile_engagement
from engine.core.policy import MatchPolicy
from engine.schemas import apply_engagement_defaults, validator
from engine.settings import load_settings
from engine.state.format import encode
from engine.state.store import PartitionStore
from engine.state.users import user_keys
from engine.stream.processor import PartitionProcessor
from engine.stream.topics import InputKind, TopicNames

NOW_MS = 1_795_442_400_000  # 2026-11-23T14:00:00Z
TOPICS = TopicNames.for_settings(load_settings())
BY_KIND = {kind: name for name, kind in TOPICS.inputs.items()}
ANN, BOB = "ann", "bob"
ENGAGEMENTS = [
    {
        "id": "welcome",
        "name": "Welcome",
        "status": "active",
        "trigger": {"event": "session_start"},
        "audience": {"filters": [{"attribute": "country", "op": "eq", "value": "FR"}]},
        "message": {"title": "Bienvenue"},
        "ignore_frequency_caps": True,
    },
    {
        "id": "later",
        "name": "Later",
        "status": "active",
        "trigger": {"event": "custom", "name": "Cart Updated", "delay_seconds": 3600},
        "message": {"title": "Still there?"},
        "ignore_frequency_caps": True,
    },
]
CATALOG = Catalog.build(
    compile_engagement(apply_engagement_defaults(document), 1) for document in ENGAGEMENTS
)


class Partition:
    """A processor on a real store, fed one record at a time."""

    def __init__(self, store: PartitionStore) -> None:
        self.store = store
        self.processor = PartitionProcessor(0, store, TOPICS, lambda: CATALOG, MatchPolicy())
        self.offset = 0
        self.events = 0

    def feed(self, kind: InputKind, value: dict[str, Any], key: str | None = None) -> list[Any]:
        """Handle one record; return its outputs as (topic, key, JSON value)."""
        raw = orjson.dumps(value)
        key_bytes = (key if key is not None else value["user_id"]).encode()
        record = ConsumerRecord(
            BY_KIND[kind], 0, self.offset, 0, 0, key_bytes, raw, None, len(key_bytes), len(raw), ()
        )
        self.offset += 1
        outbox = self.processor.outbox
        queued = len(outbox.records)
        self.processor.handle_batch(TopicPartition(record.topic, 0), [record], NOW_MS)
        return [(o.topic, o.key, orjson.loads(o.value)) for o in outbox.records[queued:]]

    def event(self, user: str, topic: InputKind, **fields: Any) -> list[Any]:
        self.events += 1
        document = {"event_id": f"e-{self.events}", "user_id": user, "timestamp": NOW_MS}
        return self.feed(topic, {**document, **fields})

    def profile(self, user: str) -> None:
        self.feed(
            InputKind.PROFILES,
            {"user_id": user, "attributes": {"country": "FR"}, "timestamp": NOW_MS},
        )

    def session(self, user: str) -> list[Any]:
        return self.event(user, InputKind.SESSIONS, type="session_start")

    def forget(self, user: str, key: str | None = None, **change: Any) -> list[Any]:
        request = {
            "request_id": f"forget-{user}",
            "action": "forget",
            "user_id": user,
            "requested_at": "2026-11-23T13:59:00Z",
            "author": "alice",
            **change,
        }
        return self.feed(InputKind.USER_REQUESTS, request, key)

    def checkpoint(self) -> dict[bytes, bytes | None]:
        staged, _ = self.processor.freeze_checkpoint()
        written = dict(staged)
        self.store.commit_frozen(None)
        return written


@pytest.fixture
def part(tmp_path: Path) -> Iterator[Partition]:
    store = PartitionStore(tmp_path / "partition-0")
    yield Partition(store)
    store.close()


def _known(part: Partition, user: str) -> None:
    """Give ``user`` a profile, a delivery with an impression, a pending delivery and
    counted events."""
    part.profile(user)
    [(topic, _, delivery)] = part.session(user)
    assert topic == TOPICS.deliveries
    part.event(user, InputKind.INTERACTIONS, delivery_id=delivery["delivery_id"], kind="impression")
    part.event(user, InputKind.CUSTOM_EVENTS, name="Cart Updated")


def _kinds(keys: list[bytes]) -> list[bytes]:
    return sorted(key[:2] for key in keys)


def test_a_user_has_a_state_their_deliveries_and_their_pending_ones(part: Partition) -> None:
    _known(part, ANN)
    _known(part, BOB)
    # Staged (not yet committed) and committed keys are both found.
    part.processor.users.stage()
    assert _kinds(user_keys(part.store, ANN).all_keys()) == [b"d:", b"p:", b"u:"]
    part.checkpoint()
    found = user_keys(part.store, ANN)
    assert _kinds(found.all_keys()) == [b"d:", b"p:", b"u:"]
    assert all(BOB.encode() not in bytes(value) for _, value in found.user + found.deliveries)


def test_forget_tombstones_every_key_of_the_user_and_nobody_elses(part: Partition) -> None:
    _known(part, ANN)
    _known(part, BOB)
    part.checkpoint()
    ann_keys = user_keys(part.store, ANN).all_keys()
    bob_keys = user_keys(part.store, BOB).all_keys()

    [(topic, key, audit)] = part.forget(ANN)

    assert topic == TOPICS.user_audit and key == b"forget-ann"
    validator("user-audit").check(audit)
    assert audit["removed"] == {"user_state": 1, "deliveries": 1, "pending_deliveries": 1}
    assert (audit["author"], audit["requested_at"]) == ("alice", "2026-11-23T13:59:00Z")
    assert ANN not in orjson.dumps(audit).decode().replace("forget-ann", "")
    written = part.checkpoint()
    assert written == dict.fromkeys(ann_keys)  # a tombstone for each, nothing else
    assert user_keys(part.store, ANN).all_keys() == []
    assert sorted(user_keys(part.store, BOB).all_keys()) == sorted(bob_keys)
    # The pending delivery is gone from the due index too: nothing of ann is released.
    released = part.processor.release_due(NOW_MS + 7_200_000)
    assert released == 1
    assert [orjson.loads(o.value)["user_id"] for o in part.processor.outbox.records] == [BOB]


def test_forget_in_the_same_batch_as_the_users_events_leaves_nothing(part: Partition) -> None:
    _known(part, ANN)  # nothing committed yet: all of it staged, or cached in memory
    [(topic, _, audit)] = part.forget(ANN)
    assert topic == TOPICS.user_audit
    assert audit["removed"] == {"user_state": 1, "deliveries": 1, "pending_deliveries": 1}
    written = part.checkpoint()
    assert set(written.values()) == {None}
    assert user_keys(part.store, ANN).all_keys() == []


def test_after_forget_the_next_event_is_a_new_users(part: Partition) -> None:
    _known(part, ANN)
    part.checkpoint()
    assert part.session(ANN) == []  # once per user: ann already had it
    part.forget(ANN)
    assert part.session(ANN) == []  # no profile any more: the audience misses
    part.profile(ANN)
    [(topic, key, delivery)] = part.session(ANN)  # no history: delivered again
    assert (topic, key, delivery["engagement_id"]) == (TOPICS.deliveries, b"ann", "welcome")


@pytest.mark.parametrize("user", ['a"b', "a/b", "zoé", "tab\there", "ann-\u2028"])
def test_any_user_id_is_found_and_erased(part: Partition, user: str) -> None:
    _known(part, user)
    _known(part, ANN)
    part.checkpoint()
    [(_, _, audit)] = part.forget(user)
    assert audit["removed"] == {"user_state": 1, "deliveries": 1, "pending_deliveries": 1}
    part.checkpoint()
    assert user_keys(part.store, user).all_keys() == []
    assert len(user_keys(part.store, ANN).all_keys()) == 3


def test_forgetting_an_unknown_user_still_answers(part: Partition) -> None:
    [(topic, _, audit)] = part.forget("nobody")
    assert topic == TOPICS.user_audit
    assert audit["removed"] == {"user_state": 0, "deliveries": 0, "pending_deliveries": 0}
    assert part.checkpoint() == {}


@pytest.mark.parametrize(
    ("change", "key", "reason"),
    [
        ({"action": "erase"}, None, "invalid_field"),
        ({"requested_at": "yesterday"}, None, "invalid_timestamp"),
        ({"author": ""}, None, "invalid_field"),
        ({"reason": "gdpr"}, None, "unknown_field"),
        ({}, "bob", "invalid_key"),
    ],
)
def test_an_invalid_request_is_a_dead_letter_and_erases_nothing(
    part: Partition, change: dict[str, Any], key: str | None, reason: str
) -> None:
    _known(part, ANN)
    part.checkpoint()
    [(topic, _, letter)] = part.forget(ANN, key, **change)
    assert (topic, letter["reason"]) == (TOPICS.dead_letters, reason)
    assert len(user_keys(part.store, ANN).all_keys()) == 3


def _changelog(records: list[tuple[bytes, bytes | None]]) -> list[ConsumerRecord]:
    return [
        ConsumerRecord("changelog", 0, offset, 0, 0, key, value, None, 0, 0, ())
        for offset, (key, value) in enumerate(records)
    ]


def _state(**fields: Any) -> bytes:
    return encode(orjson.dumps(fields))


def _delivery(delivery_id: str, user: str) -> bytes:
    return _state(id=delivery_id, e="welcome", v=1, var="default", u=user, c=NOW_MS, k={})


def test_show_keeps_the_latest_value_of_each_of_the_users_keys() -> None:
    latest = _Latest(ANN)
    for record in _changelog(
        [
            (b"u:ann", _state(a={"country": "BE"}, t={"country": NOW_MS})),
            (b"u:ann", _state(a={"country": "FR"}, t={"country": NOW_MS + 1}, d={"welcome": 5})),
            (b"u:bob", _state(a={"country": "DE"}, t={"country": NOW_MS})),
            (b"d:1", _delivery("1", ANN)),
            (b"d:2", _delivery("2", BOB)),
            (b"d:3", _delivery("3", ANN)),
            (b"d:3", None),
            (b"s:welcome", b"{}"),
        ]
    ):
        latest.add(record)
    view = latest.view(partition=2, end_offset=8)
    assert view.state is not None and view.state["profile"]["country"]["value"] == "FR"
    assert [delivery["delivery_id"] for delivery in view.deliveries] == ["1"]
    text = render_user(view)
    assert 'country = "FR"' in text and "welcome" in text and "DE" not in text


def test_show_after_tombstones_says_nothing_is_held() -> None:
    latest = _Latest(ANN)
    for record in _changelog(
        [
            (b"u:ann", _state(a={"x": 1}, t={"x": NOW_MS})),
            (b"d:1", _delivery("1", ANN)),
            (b"u:ann", None),
            (b"d:1", None),
        ]
    ):
        latest.add(record)
    view = latest.view(partition=0, end_offset=4)
    assert view.empty
    assert render_user(view).startswith("Declic holds nothing about user ann")


def test_finding_a_users_keys_does_not_hold_every_delivery_in_memory(tmp_path: Path) -> None:
    # A partition keeps every delivery ever made: the scan must stream them, not copy
    # them all (a million deliveries would take hundreds of MB of a worker's memory).
    store = PartitionStore(tmp_path / "big")
    value = orjson.dumps({"id": "x" * 32, "e": "welcome", "v": 1, "u": BOB, "c": NOW_MS, "k": {}})
    store.write(((b"d:%08d" % i, encode(value)) for i in range(20_000)), None)
    tracemalloc.start()
    try:
        assert user_keys(store, ANN).all_keys() == []
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        store.close()
    held_all = 20_000 * len(value)
    assert peak < held_all / 4, f"{peak} bytes at the peak for {held_all} bytes of deliveries"


@pytest.mark.parametrize("wait", ["0", "-5", "nan"])
def test_forget_refuses_a_wait_it_could_not_keep_before_sending_anything(
    wait: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # No broker on this address: a request sent would fail otherwise.
    argv = ["users", "forget", ANN, "--wait", wait, "--bootstrap", "127.0.0.1:9"]
    assert main(argv) == 2
    assert f"--wait: expected seconds above 0, got {wait}" in capsys.readouterr().err


def test_forget_while_a_checkpoint_carries_the_users_keys_erases_them_after_it(
    part: Partition,
) -> None:
    _known(part, ANN)
    frozen, _ = part.processor.freeze_checkpoint()  # being committed, not on disk yet
    assert _kinds([key for key, value in frozen.items() if value is not None]) == [
        b"d:",
        b"p:",
        b"u:",
    ]
    [(_, _, audit)] = part.forget(ANN)
    assert audit["removed"] == {"user_state": 1, "deliveries": 1, "pending_deliveries": 1}
    part.store.commit_frozen(None)  # that checkpoint commits its writes first
    tombstones = part.checkpoint()  # then the next one, the forget's
    assert tombstones == dict.fromkeys(frozen)
    assert user_keys(part.store, ANN).all_keys() == []
