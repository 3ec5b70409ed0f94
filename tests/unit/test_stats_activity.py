"""Figures by the hour they were counted (the console's last-24-hours columns and trend),
and the audience segments."""

from __future__ import annotations

from pathlib import Path

import orjson

from engine.core.bucketing import AUDIENCE_SEED, in_percent
from engine.core.catalog import Catalog
from engine.core.engagements import compile_engagement
from engine.core.state import UserState
from engine.metrics import BatchTally
from engine.schemas import apply_engagement_defaults
from engine.state.keys import USER_PREFIX
from engine.state.store import PartitionStore
from engine.stats.counts import ACTIVITY_HOURS, HOUR_MS, EngagementCounts, summed
from engine.stats.partition_stats import PartitionStats

HOUR = 493_178  # an epoch hour: 2026-04-04T02:00:00Z


def _tally(deliveries: int, clicks: int = 0, conversions: int = 0) -> BatchTally:
    tally = BatchTally()
    tally.deliveries[("spring-sale", "a", "false")] = deliveries
    tally.deliveries[("spring-sale", "a", "true")] = 7  # test sends are not activity
    tally.impressions[("spring-sale", "a", "impression", "true", "false")] = deliveries
    tally.impressions[("spring-sale", "a", "click", "true", "false")] = clicks
    tally.impressions[("spring-sale", "a", "click", "false", "false")] = 5  # not first
    tally.conversions[("spring-sale", "a")] = conversions
    tally.conversions[("spring-sale", "control")] = 9  # the control's are not the message's
    return tally


def test_activity_is_counted_in_the_hour_of_each_fold_and_summed_over_partitions(
    tmp_path: Path,
) -> None:
    parts = []
    for partition in (0, 1):
        store = PartitionStore(tmp_path / f"p{partition}")
        stats = PartitionStats(store, partition)
        stats.fold(_tally(3, clicks=1), HOUR * HOUR_MS + 10)
        stats.fold(_tally(2, conversions=1), (HOUR + 1) * HOUR_MS + 10)
        publication = stats.publish(Catalog.build(()), (HOUR + 1) * HOUR_MS + 20, 3_600_000)
        parts += [orjson.loads(value) for _, value in publication.records]
        store.close()
    total = summed("spring-sale", parts, 3600)
    assert total["activity_hours"] == {
        str(HOUR): {"deliveries": 6, "impressions": 6, "clicks": 2},
        str(HOUR + 1): {"deliveries": 4, "impressions": 4, "conversions": 2},
    }
    assert total["variants"]["a"]["deliveries"] == 10


def test_activity_older_than_a_day_is_forgotten() -> None:
    counts = EngagementCounts("spring-sale", since_ms=0)
    counts.count_activity(HOUR * HOUR_MS, "deliveries", 4)
    counts.count_activity((HOUR + ACTIVITY_HOURS - 1) * HOUR_MS, "deliveries", 1)
    counts.prune((HOUR + ACTIVITY_HOURS - 1) * HOUR_MS)
    assert set(counts.to_json_dict()["activity_hours"]) == {str(HOUR), str(HOUR + 24)}
    counts.prune((HOUR + ACTIVITY_HOURS) * HOUR_MS)
    assert set(counts.to_json_dict()["activity_hours"]) == {str(HOUR + ACTIVITY_HOURS - 1)}


def test_segments_keep_the_users_each_hash_version_samples(tmp_path: Path) -> None:
    # The figures' "the percentage keeps N" counts the users the matcher would sample in.
    users = [f"user-{index}" for index in range(2_000)]
    store = PartitionStore(tmp_path / "p0")
    for user_id in users:
        store.put(USER_PREFIX + user_id.encode(), orjson.dumps(UserState().to_json_dict()))
    store.freeze_staged()
    store.commit_frozen(1)  # as a checkpoint would: the scan reads what is on disk
    documents = {
        "half-v1": {"percent": 50},
        "half-v2": {"percent": 50, "hash_version": 2},
        "third-v2": {"percent": 33.3, "hash_version": 2},
    }
    catalog = Catalog.build(
        compile_engagement(
            apply_engagement_defaults(
                {
                    "id": engagement_id,
                    "name": engagement_id,
                    "status": "active",
                    "trigger": {"event": "session_start"},
                    "audience": audience,
                    "message": {"title": "Hi"},
                }
            ),
            1,
        )
        for engagement_id, audience in documents.items()
    )
    publication = PartitionStats(store, 0).publish(catalog, HOUR * HOUR_MS, 3_600_000)
    kept = {
        figures["engagement_id"]: figures["segment"]["kept_users"]
        for figures in (orjson.loads(value) for _, value in publication.records)
    }
    store.close()
    assert kept == {
        engagement_id: sum(
            in_percent(
                audience["percent"],
                AUDIENCE_SEED,
                engagement_id,
                user_id,
                audience.get("hash_version", 1),
            )
            for user_id in users
        )
        for engagement_id, audience in documents.items()
    }
    assert kept["half-v1"] != kept["half-v2"]  # the versions sample different users
