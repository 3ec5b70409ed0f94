"""The verdicts of `declic doctor`, from figures as the probes gather them (no broker)."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

from engine.doctor.checks import Status
from engine.doctor.judge import (
    SKEW_FAIL_MS,
    SKEW_WARN_MS,
    Member,
    Permission,
    TopicLayout,
    judge_acls,
    judge_broker,
    judge_catalog,
    judge_configs,
    judge_group,
    judge_lag,
    judge_partitions,
    judge_replication,
    judge_skew,
    judge_topics,
)
from engine.doctor.probe_access import worker_permissions
from engine.doctor.probe_group import assigned_partitions
from engine.doctor.version import MINIMUM, version_floor
from engine.settings import load_settings
from engine.stream.topics import TopicNames

PARTITIONED = ["p.sessions", "p.custom-events", "p.interactions", "p.profiles", "p.app-state"]


def test_every_topic_present_passes_and_a_missing_one_is_named() -> None:
    expected = ["a", "b", "c"]
    assert judge_topics(expected, ["c", "a", "b"]).status is Status.OK
    check = judge_topics(expected, ["a", "c"])
    assert check.status is Status.FAIL
    assert "1 of 3 missing: b" in check.message
    assert "declic topics" in check.message


def test_a_topic_the_principal_cannot_see_is_not_called_missing() -> None:
    check = judge_topics(["a", "b"], ["a"], hidden=["b"])
    assert check.status is Status.FAIL
    assert "not authorized to describe b" in check.message and "missing" not in check.message


def test_equal_partition_counts_pass() -> None:
    counts = dict.fromkeys(PARTITIONED, 4)
    assert judge_partitions(counts, PARTITIONED, 4).status is Status.OK


def test_one_odd_partition_count_names_it_and_the_others() -> None:
    counts = {**dict.fromkeys(PARTITIONED, 4), "p.profiles": 2}
    check = judge_partitions(counts, PARTITIONED, 4)
    assert check.status is Status.FAIL
    assert check.message.startswith("p.profiles has 2 partitions, p.sessions and 3 others have 4")


def test_a_tie_takes_the_state_changelog_count_as_the_reference() -> None:
    counts = {"p.sessions": 3, "p.custom-events": 3, "p.interactions": 2, "p.app-state": 2}
    partitioned = ["p.sessions", "p.custom-events", "p.interactions", "p.app-state"]
    check = judge_partitions(counts, partitioned, 2)
    assert check.status is Status.FAIL
    assert "p.sessions, p.custom-events have 3 partitions" in check.message
    assert "p.interactions and 1 other have 2" in check.message


def test_counts_that_agree_but_differ_from_the_setting_only_warn() -> None:
    counts = dict.fromkeys(PARTITIONED, 12)
    check = judge_partitions(counts, PARTITIONED, 4)
    assert check.status is Status.WARN
    assert "12" in check.message and "4" in check.message


def _layout(replicas: int, in_sync: int, min_insync: int | None, offline: int = 0) -> TopicLayout:
    return TopicLayout(replicas, in_sync, offline, min_insync)


def test_replication_as_declic_topics_makes_it_passes() -> None:
    assert judge_replication({"t": _layout(3, 3, 2)}, 3).status is Status.OK
    assert judge_replication({"t": _layout(1, 1, 1)}, 1).status is Status.OK


def test_fewer_replicas_than_the_setting_fail() -> None:
    check = judge_replication({"t": _layout(1, 1, 1)}, 3)
    assert check.status is Status.FAIL
    assert "t has 1 replica(s), DECLIC_REPLICATION_FACTOR is 3" in check.message


def test_min_insync_that_loses_or_stops_writes_fails() -> None:
    lossy = judge_replication({"t": _layout(3, 3, 1)}, 3)
    assert lossy.status is Status.FAIL and "can lose acknowledged records" in lossy.message
    stuck = judge_replication({"t": _layout(2, 2, 3)}, 2)
    assert stuck.status is Status.FAIL and "every write is refused" in stuck.message
    short = judge_replication({"t": _layout(3, 1, 2)}, 3)
    assert short.status is Status.FAIL and "writes are refused" in short.message


def test_under_replicated_and_leaderless_partitions() -> None:
    assert judge_replication({"t": _layout(3, 2, 2)}, 3).status is Status.WARN
    check = judge_replication({"t": _layout(3, 3, 2, offline=1)}, 3)
    assert check.status is Status.FAIL and "without a leader" in check.message


def test_a_state_changelog_that_deletes_fails() -> None:
    expected = {"state": {"cleanup.policy": "compact"}}
    assert judge_configs({"state": {"cleanup.policy": "compact"}}, expected).status is Status.OK
    check = judge_configs({"state": {"cleanup.policy": "delete"}}, expected)
    assert check.status is Status.FAIL
    assert "state has cleanup.policy=delete (expected compact)" in check.message


def test_acls_name_what_the_principal_lacks() -> None:
    needed = [
        Permission("topic", "p.sessions", "Read"),
        Permission("topic", "p.deliveries", "Write"),
        Permission("group", "p.declic", "Read"),
    ]
    assert judge_acls("User:w", needed, set(needed)).status is Status.OK
    check = judge_acls("User:w", needed, {needed[0]})
    assert check.status is Status.FAIL
    assert "User:w lacks Write on p.deliveries, Read on group p.declic" in check.message


def test_a_group_without_members_warns_and_idle_workers_too() -> None:
    assert judge_group("g", "Empty", [], 4).status is Status.WARN
    members = [Member(f"declic-w{i}", "/10.0.0.1", 1) for i in range(4)]
    assert judge_group("g", "Stable", members, 4).status is Status.OK
    many = [*members, Member("declic-w5", "/10.0.0.2", 0)]
    idle = judge_group("g", "Stable", many, 4)
    assert idle.status is Status.WARN and "some idle" in idle.message
    assert judge_group("g", "PreparingRebalance", members, 4).status is Status.WARN


def test_lag_is_summed_per_topic_and_warns_only_with_nobody_to_catch_up() -> None:
    check = judge_lag("g", {"p.sessions": 7, "p.profiles": 0}, 0, members=1)
    assert check.status is Status.OK
    assert "7 records behind (p.sessions 7)" in check.message
    assert judge_lag("g", {"p.sessions": 7}, 0, members=0).status is Status.WARN
    assert judge_lag("g", {"p.sessions": 0}, 0, members=0).status is Status.OK


def test_skew_counts_only_what_the_round_trip_proves() -> None:
    assert judge_skew(5.0, 1.0, "c").status is Status.OK
    # Beyond the threshold, but not beyond it by more than the uncertainty: not proven.
    assert judge_skew(SKEW_WARN_MS + 10, 20, "c").status is Status.OK
    behind = judge_skew(SKEW_WARN_MS + 500, 20, "c")
    assert behind.status is Status.WARN and "behind c" in behind.message
    ahead = judge_skew(-(SKEW_FAIL_MS + 500), 20, "c")
    assert ahead.status is Status.FAIL and "ahead of c" in ahead.message


def test_catalog_counts_by_status_and_fails_on_engagements_that_do_not_load() -> None:
    check = judge_catalog(Counter({"active": 3, "paused": 1}), {})
    assert check.status is Status.OK and "4 engagements load (3 active, 1 paused)" in check.message
    broken = judge_catalog(Counter({"active": 3}), {"spring": "invalid JSON"})
    assert broken.status is Status.FAIL
    assert "1 of 4 engagements do not load" in broken.message and "spring" in broken.message
    assert judge_catalog(Counter(), {}).status is Status.WARN


def test_version_is_a_lower_bound_from_the_apis_offered() -> None:
    assert version_floor({18: (0, 3), 22: (0, 4), 60: (0, 1)}) == (2, 8)
    assert version_floor({18: (0, 4), 1: (4, 17), 75: (0, 0)}) == (4, 0)
    assert version_floor({}) is None
    old = judge_broker("k:9092", (2, 2), MINIMUM, 1, 1)
    assert old.status is Status.FAIL and "Kafka >= 2.2" in old.message
    small = judge_broker("k:9092", (4, 0), MINIMUM, 1, 3)
    assert small.status is Status.FAIL and "1 broker(s)" in small.message
    assert judge_broker("k:9092", (4, 0), MINIMUM, 3, 3).status is Status.OK


def _readme_worker_topics() -> dict[str, set[str]]:
    """Return the worker's topic operations in the README's ACL table, by topic suffix."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    granted: dict[str, set[str]] = {}
    for line in readme.splitlines():
        if not line.startswith("| worker | Topic "):
            continue
        _, _, resource, _, operations, _ = line.split("|")
        for topic in re.findall(r"`<P>([^`]+)`", resource):
            granted.setdefault(topic, set()).update(o.strip() for o in operations.split(","))
    return granted


def test_the_acl_check_asks_for_what_the_readme_grants_a_worker() -> None:
    settings = load_settings({"topic_prefix": "p.", "app_id": "a"})
    names = TopicNames.for_settings(settings)
    asked: dict[str, set[str]] = {}
    for permission in worker_permissions(names, "p.a", "p.a-engine-p0"):
        if permission.resource == "topic":
            topic = permission.name.removeprefix("p.").replace("a-state", "<A>-state")
            asked.setdefault(topic, set()).add(permission.operation)
    readme = _readme_worker_topics()
    assert readme, "no worker row in the README's ACL table"
    assert asked == readme


def test_a_members_partitions_are_counted_once_across_its_input_topics() -> None:
    # A worker owns partition p of every input topic: 6 topics x 2 partitions are 2.
    topics = [(f"p.topic-{index}", [0, 3]) for index in range(6)]
    raw = ConsumerProtocolMemberAssignment(0, topics, b"").encode()
    assert assigned_partitions(raw) == 2
    assert assigned_partitions(b"") == 0
