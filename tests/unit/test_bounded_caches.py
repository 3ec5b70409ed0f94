"""Every in-process cache or memo fed by input values stays bounded, by a named constant.

Each test feeds many distinct values and checks the size stays at the bound: it fails if
the bound is taken out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from aiokafka.structs import ConsumerRecord, TopicPartition

from engine.admin import diagnose_cache
from engine.core import local_time, timestamps
from engine.core.catalog import Catalog
from engine.core.engagements import compile_engagement
from engine.core.events import custom_event
from engine.core.matcher import evaluate
from engine.core.plan import MEMO_LIMIT, MEMO_VALUE_CHARS, KeyIndex
from engine.core.policy import MatchPolicy
from engine.core.state import UserState
from engine.schemas import SCHEMA_NAMES, validator
from engine.settings import load_settings
from engine.state.keys import USER_PREFIX
from engine.state.store import PartitionStore
from engine.stream import user_cache
from engine.stream.processor import PartitionProcessor
from engine.stream.topics import TopicNames
from tests.unit.test_diagnose_cache import ENGAGEMENT, FakeReader, _cache

NOW_MS = 1_795_442_400_000  # 2026-11-23T14:00:00Z
TOPICS = TopicNames.for_settings(load_settings())
BY_KIND = {kind.value: name for name, kind in TOPICS.inputs.items()}


def _catalog() -> Catalog:
    return Catalog.build(
        [
            compile_engagement(
                {
                    "id": "filtered",
                    "status": "active",
                    "trigger": {
                        "event": "custom",
                        "name": "Open",
                        "where": [{"property": "sku", "op": "not_in", "value": ["a", "b"]}],
                    },
                    "audience": {"filters": [{"attribute": "tier", "op": "eq", "value": "gold"}]},
                    "message": {},
                },
                1,
            )
        ]
    )


def _memos(catalog: Catalog) -> list[KeyIndex]:
    plan = catalog.plan("custom:Open")
    return [*plan.where._keys, *plan.audience._keys]


def test_the_filter_index_memo_keeps_at_most_memo_limit_values_per_key() -> None:
    catalog = _catalog()
    user = UserState()
    for index in range(10 * MEMO_LIMIT):
        event = custom_event(
            {
                "event_id": f"e{index}",
                "user_id": "ann",
                "name": "Open",
                "timestamp": NOW_MS,
                "properties": {"sku": f"sku-{index}"},
                "attributes": {"tier": f"tier-{index}"},
            }
        )
        evaluate(event, user, catalog, NOW_MS)
    memos = _memos(catalog)
    assert [index.key for index in memos] == ["sku", "tier"]
    assert [len(index._memo) for index in memos] == [MEMO_LIMIT, MEMO_LIMIT]


def test_the_memo_never_keeps_a_long_string() -> None:
    catalog = _catalog()
    [where, _] = _memos(catalog)
    long_value = "x" * (MEMO_VALUE_CHARS + 1)
    assert where.failing({"sku": long_value}) == 0  # still right
    assert where.failing({"sku": "a"}) == 1
    where._memo.clear()
    assert where.failing({"sku": long_value}) == 0
    assert where.failing({"sku": "x" * MEMO_VALUE_CHARS}) == 0
    assert list(where._memo) == [(str, "x" * MEMO_VALUE_CHARS)]


def test_the_zone_cache_is_bounded() -> None:
    local_time._load_zone.cache_clear()
    for index in range(3 * local_time.ZONE_CACHE_SIZE):
        assert local_time.load_zone(f"Nowhere/{index}") is None
    assert local_time.load_zone("Europe/Paris") is not None
    assert local_time._load_zone.cache_info().currsize == local_time.ZONE_CACHE_SIZE
    local_time._load_zone.cache_clear()
    # A name longer than any zone's is unknown without being remembered.
    assert local_time.load_zone("x" * (local_time.MAX_ZONE_NAME_LENGTH + 1)) is None
    assert local_time._load_zone.cache_info().currsize == 0


def test_the_date_prefix_cache_is_bounded() -> None:
    timestamps._date_prefix.cache_clear()
    for day in range(10_000):
        timestamps.format_timestamp(day * 86_400_000)
    info = timestamps._date_prefix.cache_info()
    assert info.currsize == timestamps.DATE_PREFIX_CACHE_SIZE
    assert info.maxsize == timestamps.DATE_PREFIX_CACHE_SIZE


def test_validators_are_cached_per_schema_name_only() -> None:
    for name in SCHEMA_NAMES:
        validator(name)
    for index in range(1_000):
        with pytest.raises(ValueError, match="unknown schema"):
            validator(f"no-such-schema-{index}")
    assert validator.cache_info().currsize == len(SCHEMA_NAMES)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[PartitionStore]:
    opened = PartitionStore(tmp_path / "partition-0")
    yield opened
    opened.close()


def test_the_user_cache_never_passes_its_limit_and_loses_no_change(
    store: PartitionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    limit = 100
    monkeypatch.setattr(user_cache, "USER_CACHE_LIMIT", limit)
    catalog = Catalog.build(())
    processor = PartitionProcessor(0, store, TOPICS, lambda: catalog, MatchPolicy())
    topic = BY_KIND["profiles"]
    largest = 0
    for index in range(20 * limit):  # all between two checkpoints
        user = f"user-{index}"
        value = orjson.dumps({"user_id": user, "timestamp": NOW_MS, "attributes": {"n": index}})
        record = ConsumerRecord(
            topic, 0, index, 0, 0, user.encode(), value, None, len(user), len(value), ()
        )
        processor.handle_batch(TopicPartition(topic, 0), [record], NOW_MS)
        largest = max(largest, len(processor.users))
    assert largest == limit
    staged, _ = processor.freeze_checkpoint()
    for index in range(20 * limit):
        stored = staged[USER_PREFIX + f"user-{index}".encode()]
        assert stored is not None
        assert orjson.loads(stored[2:])["a"] == {"n": index}


async def test_diagnose_reports_kept_per_read_are_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(diagnose_cache, "MAX_REPORTS_PER_READ", 8)
    cache = _cache(FakeReader())
    answers = await asyncio.gather(
        *(cache.answer(ENGAGEMENT, str(1_700_000_000_000 + index)) for index in range(40))
    )
    assert {status for status, _ in answers} == {200}
    assert cache._current is not None
    assert len(cache._current.reports) == 8
