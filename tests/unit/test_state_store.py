"""The partition store's format-versioned values, on a real RocksDB store, and pinned fixtures.

``fixtures/state/format-1.jsonl`` holds the raw key/value bytes (base64), hence the
changelog records, that the code of format 1 wrote for a realistic partition; it was made
once by ``python -m tests.unit.test_state_store --write-fixtures`` and is pinned for ever:
every later format must still read it (see ``engine.state.format``). ``format-0.jsonl``
holds the same values as written before versioning (plain JSON, the same payloads).
"""

from __future__ import annotations

import base64
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from engine.core.catalog import Catalog
from engine.core.conversions import ConversionWatch
from engine.core.counters import CountSpec
from engine.core.delivery_state import DeliveryState
from engine.core.engagements import compile_engagement
from engine.core.outcomes import Evaluation, Outcome
from engine.core.pending import PendingDelivery
from engine.core.state import UserState
from engine.errors import StateFormatError
from engine.metrics import BatchTally
from engine.state import format as state_format
from engine.state.format import CURRENT_FORMAT, Payload
from engine.state.keys import DELIVERY_PREFIX, PENDING_PREFIX, STATS_PREFIX, USER_PREFIX
from engine.state.store import PartitionStore
from engine.stats.counts import HOUR_MS, EngagementCounts
from engine.stats.partition_stats import PartitionStats
from engine.stream.due_index import DueIndex

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "state"
NOW_MS = 1_795_442_400_000  # 2026-11-23T14:00:00Z
DAY_MS = 86_400_000

USER_KEY = USER_PREFIX + b"user-42"
DELIVERY_KEY = DELIVERY_PREFIX + b"d-1"
TEST_DELIVERY_KEY = DELIVERY_PREFIX + b"d-3"
UNSEEN_DELIVERY_KEY = DELIVERY_PREFIX + b"d-4"
PENDING_KEY = PENDING_PREFIX + b"001795442700000:d-2"
STATS_KEY = STATS_PREFIX + b"spring-sale"
NEWER = bytes((state_format.MARKER, CURRENT_FORMAT + 1))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[PartitionStore]:
    opened = PartitionStore(tmp_path / "partition-0")
    yield opened
    opened.close()


def _json(payload: Payload | None) -> object:
    assert payload is not None
    return orjson.loads(payload)


# --- the store ---------------------------------------------------------------------------


def test_values_round_trip_and_changelog_records_carry_the_header(store: PartitionStore) -> None:
    store.put(b"u:ann", b'{"a":1}')
    assert store.get(b"u:ann") == b'{"a":1}'
    frozen = store.freeze_staged()
    header = bytes((0xDC, CURRENT_FORMAT))
    assert frozen == {b"u:ann": header + b'{"a":1}'}  # what the checkpoint sends
    assert store.get(b"u:ann") == b'{"a":1}'
    store.commit_frozen(3)
    assert store.get(b"u:ann") == b'{"a":1}'
    assert list(store.items(b"u:")) == [(b"u:ann", b'{"a":1}')]
    assert store.changelog_offset == 3  # the offset meta key is no state value
    assert list(store.items()) == [(b"u:ann", b'{"a":1}')]


def test_a_replayed_changelog_reads_as_what_was_put(tmp_path: Path) -> None:
    first = PartitionStore(tmp_path / "first")
    first.put(b"u:ann", b'{"a":1}')
    first.put(b"d:x", b'{"k":{}}')
    first.delete(b"u:gone")
    records = list(first.freeze_staged().items())
    first.close()
    again = PartitionStore(tmp_path / "again")  # a new machine recovers the changelog
    again.write(iter(records), 9)
    assert again.get(b"u:ann") == b'{"a":1}' and again.get(b"d:x") == b'{"k":{}}'
    assert again.get(b"u:gone") is None
    assert again.changelog_offset == 9
    again.close()


def test_a_large_value_is_read_without_a_second_copy(store: PartitionStore) -> None:
    payload = orjson.dumps({"a": {"blob": "x" * 20_000}, "t": {"blob": 1}})
    store.put(USER_KEY, payload)
    store.freeze_staged()
    store.commit_frozen(None)
    value = store.get(USER_KEY)
    assert isinstance(value, memoryview) and value == payload
    assert orjson.loads(value) == orjson.loads(payload)
    [(_, item)] = store.items(USER_PREFIX)
    assert isinstance(item, memoryview) and item == payload


def test_legacy_plain_json_values_are_read_as_format_0(store: PartitionStore) -> None:
    legacy = {
        b"u:ann": b'{"a":{"country":"FR"},"t":{"country":1}}',
        b"u:bob": b' \n{"a":{}}',  # JSON may start with whitespace
        b"s:x": b'[1,"two"]',
    }
    store.write(legacy.items(), 4)
    for key, value in legacy.items():
        assert store.get(key) == value
    assert dict(store.items()) == legacy
    assert UserState.from_json_dict(_json(store.get(b"u:ann"))).attributes == {"country": "FR"}


def _refused(raised: pytest.ExceptionInfo[StateFormatError]) -> None:
    message = str(raised.value)
    assert f"format {CURRENT_FORMAT + 1} is newer than format {CURRENT_FORMAT}" in message
    assert "upgrade the worker" in message
    assert raised.value.found == CURRENT_FORMAT + 1
    assert raised.value.newest == CURRENT_FORMAT


def test_a_newer_format_is_refused_by_write_and_nothing_of_the_batch_is_written(
    store: PartitionStore,
) -> None:
    store.write([(b"u:ann", state_format.encode(b'{"a":{}}'))], 5)
    batch = [
        (b"u:ann", None),  # a deletion before the refused value: not applied either
        (b"u:bob", state_format.encode(b"{}")),
        (b"u:cid", NEWER + b"{}"),
        (b"u:dan", state_format.encode(b"{}")),
    ]
    with pytest.raises(StateFormatError) as raised:
        store.write(iter(batch), 9)
    _refused(raised)
    assert any("b'u:cid'" in note for note in raised.value.__notes__)
    assert store.changelog_offset == 5
    assert [key for key, _ in store.items()] == [b"u:ann"]
    assert store.get(b"u:bob") is None


def test_a_newer_format_already_stored_is_refused_by_get_and_items(
    store: PartitionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as newer_worker:  # a newer worker wrote it, then a downgrade
        newer_worker.setattr(state_format, "CURRENT_FORMAT", CURRENT_FORMAT + 1)
        store.put(b"u:ann", b"{}")
        store.freeze_staged()
        store.commit_frozen(1)
    with pytest.raises(StateFormatError) as raised:
        store.get(b"u:ann")
    _refused(raised)
    with pytest.raises(StateFormatError) as raised:
        list(store.items(b"u:"))
    _refused(raised)
    assert any("b'u:ann'" in note for note in raised.value.__notes__)


def test_a_malformed_header_is_refused(store: PartitionStore) -> None:
    with pytest.raises(StateFormatError, match="malformed"):
        store.write([(b"u:ann", b"\xdc")], 1)
    with pytest.raises(StateFormatError, match="malformed"):
        store.write([(b"u:ann", b"\xdc\x00{}")], 1)
    assert store.changelog_offset is None


# --- the pinned fixtures -----------------------------------------------------------------


def _load(name: str) -> list[tuple[bytes, bytes]]:
    lines = (FIXTURES / name).read_text().splitlines()
    return [
        (base64.b64decode(line["key"]), base64.b64decode(line["value"]))
        for line in map(orjson.loads, lines)
    ]


PENDING = PendingDelivery(
    delivery_id="d-2",
    engagement_id="cart",
    engagement_version=4,
    user_id="user-42",
    trigger_event_id="evt-9",
    triggered_at_ms=NOW_MS,
    due_at_ms=NOW_MS + 300_000,
    variant="B",
    timezone="Europe/Paris",
)

EXPECTED_USER = UserState(
    {
        "country": "FR",
        "plan": "pro",
        "age": 34,
        "tags": ["beta", "vip"],
        "email": None,
        "score": 1.5,
        "device": {"os": "ios", "version": 17},
    },
    {
        "country": NOW_MS - DAY_MS,
        "plan": NOW_MS - DAY_MS,
        "age": NOW_MS - DAY_MS,
        "tags": NOW_MS - DAY_MS,
        "email": NOW_MS - DAY_MS,
        "score": NOW_MS - 3_600_000,
        "device": NOW_MS - 3_600_000,
    },
    {"spring-sale": NOW_MS - 600_000, "welcome": NOW_MS - 2 * DAY_MS},
    delivery_times=[NOW_MS - 7_200_000, NOW_MS - 600_000],
    event_times={"Viewed": [NOW_MS - 900_000, NOW_MS - 300_000]},
    pending=[PENDING],
    watches=[
        ConversionWatch("d-1", "spring-sale", "A", NOW_MS - 590_000, NOW_MS - 590_000 + DAY_MS),
        ConversionWatch(None, "trial", "control", NOW_MS - 500_000, NOW_MS - 500_000 + DAY_MS),
    ],
)

EXPECTED_DELIVERY = DeliveryState(
    delivery_id="d-1",
    engagement_id="spring-sale",
    engagement_version=3,
    variant="A",
    user_id="user-42",
    created_at_ms=NOW_MS - 600_000,
    first_event_ids={"impression": "int-1", "click": "int-2"},
    metric_event_ids={"buy_clicks": "int-2"},
)

EXPECTED_TEST_DELIVERY = DeliveryState(
    delivery_id="d-3",
    engagement_id="spring-sale",
    engagement_version=3,
    variant="B",
    user_id="user-7",
    created_at_ms=NOW_MS - 400_000,
    test=True,
)

EXPECTED_UNSEEN_DELIVERY = DeliveryState(
    delivery_id="d-4",
    engagement_id="spring-sale",
    engagement_version=3,
    variant="B",
    user_id="user-8",
    created_at_ms=NOW_MS - 2 * 3_600_000,
)

EXPECTED_STATS = EngagementCounts(
    engagement_id="spring-sale",
    since_ms=(NOW_MS // HOUR_MS - 2) * HOUR_MS,
    outcomes=Counter({"delivered": 3, "control": 1, "audience_miss": 2}),
    variants={
        "A": Counter({"deliveries": 2, "impressions": 1, "clicks": 1, "conversions": 1}),
        "B": Counter({"deliveries": 1, "impressions": 0, "clicks": 0, "conversions": 0}),
    },
    control_conversions=1,
    trigger_hours=Counter({NOW_MS // HOUR_MS - 2: 2, NOW_MS // HOUR_MS - 1: 4}),
    segment={
        "known_users": 1,
        "audience_users": 1,
        "kept_users": 1,
        "sampled_users": 1,
        "computed_at_ms": NOW_MS,
    },
    unseen_deliveries=1,
)

EXPECTED_KEYS = [
    DELIVERY_KEY,
    TEST_DELIVERY_KEY,
    UNSEEN_DELIVERY_KEY,
    PENDING_KEY,
    STATS_KEY,
    USER_KEY,
]


def _assert_expected_state(store: PartitionStore) -> None:
    assert [key for key, _ in store.items()] == EXPECTED_KEYS
    assert UserState.from_json_dict(_json(store.get(USER_KEY))) == EXPECTED_USER
    assert DeliveryState.from_json_dict(_json(store.get(DELIVERY_KEY))) == EXPECTED_DELIVERY
    test_delivery = DeliveryState.from_json_dict(_json(store.get(TEST_DELIVERY_KEY)))
    assert test_delivery == EXPECTED_TEST_DELIVERY
    unseen = DeliveryState.from_json_dict(_json(store.get(UNSEEN_DELIVERY_KEY)))
    assert unseen == EXPECTED_UNSEEN_DELIVERY
    assert PendingDelivery.from_json_dict(_json(store.get(PENDING_KEY))) == PENDING
    [(_, stats)] = store.items(STATS_PREFIX)
    assert EngagementCounts.from_json_dict(orjson.loads(stats)) == EXPECTED_STATS
    # The modules that load state at start read it too.
    assert [pending.delivery_id for pending in DueIndex(store).pop_due(NOW_MS + DAY_MS)] == ["d-2"]
    PartitionStats(store, 0)


@pytest.mark.parametrize("name", ["format-1.jsonl", "format-0.jsonl"])
def test_the_pinned_fixture_is_read(store: PartitionStore, name: str) -> None:
    records = _load(name)
    assert [key for key, _ in records] == EXPECTED_KEYS
    version = int(name.removeprefix("format-").removesuffix(".jsonl"))
    assert {state_format.format_of(value) for _, value in records} == {version}
    store.write(records, 41)  # as recovery replays the changelog
    _assert_expected_state(store)


def test_the_current_code_still_writes_what_the_pinned_fixture_holds(tmp_path: Path) -> None:
    """Fails if a stored payload changed without a format bump.

    Fix: bump CURRENT_FORMAT and add the migration step that turns the old payload into
    the new one (see engine.state.format); the fixture read through the migrations then
    equals what the new code writes.
    """
    written = write_current_state(PartitionStore(tmp_path / "now"))
    assert [state_format.format_of(value) for _, value in written] == [CURRENT_FORMAT] * len(
        written
    )
    pinned = PartitionStore(tmp_path / "pinned")
    pinned.write(_load("format-1.jsonl"), 1)
    # Fields added since without a bump (older values are read without them) aside.
    assert [
        (key, _without_additive(key, state_format.decode(value, key))) for key, value in written
    ] == [(key, orjson.loads(value)) for key, value in pinned.items()]
    pinned.close()


def _without_additive(key: bytes, payload: Payload) -> object:
    data = orjson.loads(payload)
    for prefix, names in state_format.ADDITIVE_FIELDS.items():
        if key.startswith(prefix):
            for name in names:
                data.pop(name)  # the current code writes every additive field
    return data


def _rename_user_attributes(key: bytes, payload: Payload) -> Payload:
    """A step 1 -> 2 a later version might add: user state's ``a`` becomes ``attributes``."""
    if not key.startswith(USER_PREFIX):
        return payload
    data = orjson.loads(payload)
    if "a" in data:
        data["attributes"] = data.pop("a")
    return orjson.dumps(data)


@pytest.mark.parametrize("name", ["format-1.jsonl", "format-0.jsonl"])
def test_a_later_format_reads_the_pinned_fixture_through_its_migration(
    store: PartitionStore, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    records = _load(name)
    with monkeypatch.context() as next_version:
        next_version.setattr(state_format, "CURRENT_FORMAT", 2)
        next_version.setitem(state_format.MIGRATIONS, 1, _rename_user_attributes)
        store.write(records, 41)
        user = _json(store.get(USER_KEY))
        assert isinstance(user, dict)
        assert "a" not in user
        assert user["attributes"] == dict(EXPECTED_USER.attributes)
        assert user["t"] == dict(EXPECTED_USER.attribute_times)
        assert user["p"] == [PENDING.to_json_dict()]
        # Other kinds of value go through the step unchanged.
        for key, value in records:
            if key != USER_KEY:
                assert _json(store.get(key)) == orjson.loads(state_format.decode(value))
        # The next version writes its own format...
        store.put(USER_KEY, orjson.dumps(user))
        [(_, record)] = store.freeze_staged().items()
        assert record is not None and state_format.format_of(record) == 2
    # ...which this version, should the worker be downgraded, refuses.
    with pytest.raises(StateFormatError) as raised:
        store.write([(USER_KEY, record)], 42)
    _refused(raised)


# --- writing the fixtures (once) ---------------------------------------------------------


def write_current_state(store: PartitionStore) -> list[tuple[bytes, bytes]]:
    """Write a realistic partition through the real code; return the changelog records."""
    user = UserState()
    user.merge_attributes(
        {"country": "FR", "plan": "pro", "age": 34, "tags": ["beta", "vip"], "email": None},
        NOW_MS - DAY_MS,
    )
    user.merge_attributes(
        {"score": 1.5, "device": {"os": "ios", "version": 17}}, NOW_MS - 3_600_000
    )
    user.record_delivery("welcome", NOW_MS - 2 * DAY_MS)
    user.record_delivery("spring-sale", NOW_MS - 600_000)
    user.count_towards_caps(NOW_MS - 7_200_000, limit=3)
    user.count_towards_caps(NOW_MS - 600_000, limit=3)
    specs = {"Viewed": CountSpec(longest_window_ms=3_600_000, largest_count=3)}
    user.count_event("Viewed", NOW_MS - 5_000_000, specs)  # out of the window by the next
    user.count_event("Viewed", NOW_MS - 900_000, specs)
    user.count_event("Viewed", NOW_MS - 300_000, specs)
    user.add_pending(PENDING)
    start = NOW_MS - 590_000
    user.add_watch(ConversionWatch("d-1", "spring-sale", "A", start, start + DAY_MS))
    start = NOW_MS - 500_000
    user.add_watch(ConversionWatch(None, "trial", "control", start, start + DAY_MS))
    store.put(USER_KEY, orjson.dumps(user.to_json_dict()))

    delivery = DeliveryState(
        delivery_id="d-1",
        engagement_id="spring-sale",
        engagement_version=3,
        variant="A",
        user_id="user-42",
        created_at_ms=NOW_MS - 600_000,
    )
    delivery.first_event_ids["impression"] = "int-1"
    delivery.first_event_ids["click"] = "int-2"
    delivery.metric_event_ids["buy_clicks"] = "int-2"
    store.put(DELIVERY_KEY, orjson.dumps(delivery.to_json_dict()))
    for delivery_id, user_id, created_at_ms, test in (
        ("d-3", "user-7", NOW_MS - 400_000, True),
        ("d-4", "user-8", NOW_MS - 2 * 3_600_000, False),
    ):
        other = DeliveryState(
            delivery_id=delivery_id,
            engagement_id="spring-sale",
            engagement_version=3,
            variant="B",
            user_id=user_id,
            created_at_ms=created_at_ms,
            test=test,
        )
        store.put(DELIVERY_PREFIX + delivery_id.encode(), orjson.dumps(other.to_json_dict()))
    DueIndex(store).add(PENDING)
    records = dict(store.freeze_staged())
    store.commit_frozen(1)

    hour = NOW_MS // HOUR_MS
    tally = BatchTally()
    delivered = Evaluation("spring-sale", 3, Outcome.DELIVERED)
    tally.count_evaluations([delivered, delivered], hour - 2)
    tally.count_evaluations([delivered, Evaluation("spring-sale", 3, Outcome.CONTROL)], hour - 1)
    tally.count_evaluations([Evaluation("spring-sale", 3, Outcome.AUDIENCE_MISS)] * 2, hour - 1)
    tally.deliveries[("spring-sale", "A", "false")] += 2
    tally.deliveries[("spring-sale", "B", "false")] += 1
    tally.deliveries[("spring-sale", "B", "true")] += 1
    tally.impressions[("spring-sale", "A", "impression", "true", "false")] += 1
    tally.impressions[("spring-sale", "A", "click", "true", "false")] += 1
    tally.impressions[("spring-sale", "A", "impression", "false", "false")] += 1
    tally.conversions[("spring-sale", "A")] += 1
    tally.conversions[("spring-sale", "control")] += 1
    tally.settle()
    stats = PartitionStats(store, 0)
    stats.fold(tally, NOW_MS)
    engagement = {
        "id": "spring-sale",
        "status": "active",
        "trigger": {"event": "custom", "name": "Viewed"},
        "audience": {"filters": [{"attribute": "country", "op": "eq", "value": "FR"}]},
    }
    stats.publish(Catalog.build([compile_engagement(engagement, 3)]), NOW_MS, 3_600_000)
    records.update(store.freeze_staged())
    store.commit_frozen(2)
    store.close()
    return [(key, value) for key, value in sorted(records.items()) if value is not None]


def _write_fixtures(directory: Path) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        records = write_current_state(PartitionStore(Path(scratch)))
    versions = {
        f"format-{CURRENT_FORMAT}.jsonl": records,
        "format-0.jsonl": [(key, bytes(state_format.decode(value))) for key, value in records],
    }
    directory.mkdir(parents=True, exist_ok=True)
    for name, items in versions.items():
        path = directory / name
        if path.exists():
            print(f"{path} exists: pinned fixtures are never rewritten", file=sys.stderr)
            continue
        lines = (
            orjson.dumps(
                {"key": base64.b64encode(key).decode(), "value": base64.b64encode(value).decode()}
            ).decode()
            for key, value in items
        )
        path.write_text("".join(f"{line}\n" for line in lines))
        print(f"wrote {path}")


if __name__ == "__main__":
    if sys.argv[1:] != ["--write-fixtures"]:
        sys.exit("usage: python -m tests.unit.test_state_store --write-fixtures")
    _write_fixtures(FIXTURES)
