"""The verdicts of `declic doctor`, from figures already gathered: no Kafka here.

Each function takes what the probes read and returns one Check whose message carries
the figures, so a failure says what is wrong and where.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from engine.doctor.checks import Check, fail, ok, skip, warn

# A clock this far off (beyond the measuring uncertainty) is worth a look; NTP keeps
# hosts within milliseconds of each other.
SKEW_WARN_MS = 1_000
# This far off, time is not synchronised at all: event ages, schedules and frequency
# caps computed on this host disagree with the cluster's by more than a typical cap.
SKEW_FAIL_MS = 30_000


def _names(topics: Sequence[str], limit: int = 4) -> str:
    shown = ", ".join(topics[:limit])
    return shown + (f" and {len(topics) - limit} more" if len(topics) > limit else "")


def judge_broker(
    bootstrap: str,
    floor: tuple[int, int] | None,
    minimum: tuple[int, int],
    brokers: int,
    replication_factor: int,
) -> Check:
    """The broker answered: its version (a lower bound) and the cluster's size."""
    version = f"Kafka >= {floor[0]}.{floor[1]}" if floor else "Kafka of unknown version"
    text = f"{bootstrap} answers: {version}, {brokers} broker(s)"
    details = {"version_at_least": ".".join(map(str, floor)) if floor else None, "brokers": brokers}
    if floor is not None and floor < minimum:
        return fail(
            "broker", text + f": Declic needs Kafka >= {minimum[0]}.{minimum[1]}", **details
        )
    if brokers < replication_factor:
        return fail(
            "broker",
            text + f", fewer than DECLIC_REPLICATION_FACTOR {replication_factor}",
            **details,
        )
    return ok("broker", text, **details)


def judge_topics(
    expected: Sequence[str], existing: Iterable[str], hidden: Iterable[str] = ()
) -> Check:
    """Every topic Declic uses must exist (and be visible to this principal)."""
    present, unseen = set(existing), set(hidden)
    missing = [topic for topic in expected if topic not in present and topic not in unseen]
    refused = [topic for topic in expected if topic in unseen]
    problems = []
    if missing:
        problems.append(
            f"{len(missing)} of {len(expected)} missing: {', '.join(missing)} "
            "(`declic topics` creates them)"
        )
    if refused:
        problems.append(f"not authorized to describe {', '.join(refused)}")
    if problems:
        return fail("topics", "; ".join(problems), missing=missing, hidden=refused)
    return ok(
        "topics", f"{len(expected)} present ({_names(list(expected))})", present=list(expected)
    )


def judge_partitions(
    counts: Mapping[str, int], partitioned: Sequence[str], configured: int
) -> Check:
    """The input topics and the state changelog must have one partition count (a user's
    state lives in the partition of their events); topics missing are judged elsewhere."""
    present = [topic for topic in partitioned if topic in counts]
    if not present:
        return skip("partitions", "none of the co-partitioned topics exists")
    by_count: dict[int, list[str]] = {}
    for topic in present:
        by_count.setdefault(counts[topic], []).append(topic)
    state = partitioned[-1]

    def weight(count: int) -> tuple[int, bool]:
        # The largest group is the reference; on a tie, the state changelog's count.
        return len(by_count[count]), state in by_count[count]

    reference = max(by_count, key=weight)
    details = {"counts": {topic: counts[topic] for topic in present}}
    if len(by_count) > 1:
        odd = [
            f"{', '.join(topics)} {'has' if len(topics) == 1 else 'have'} {count} partitions"
            for count, topics in sorted(by_count.items())
            if count != reference
        ]
        same = by_count[reference]
        others = (
            f" and {len(same) - 1} other{'s' if len(same) > 2 else ''}" if len(same) > 1 else ""
        )
        verb = "have" if len(same) > 1 else "has"
        return fail(
            "partitions",
            f"{'; '.join(odd)}, {same[0]}{others} {verb} {reference}: the input topics and the "
            "state changelog must have the same partition count",
            **details,
        )
    if reference != configured:
        return warn(
            "partitions",
            f"{len(present)} co-partitioned topics have {reference} partitions, the settings "
            f"say {configured} (DECLIC_PARTITIONS only applies when creating topics)",
            **details,
        )
    return ok(
        "partitions", f"{len(present)} co-partitioned topics have {reference} each", **details
    )


@dataclass(frozen=True, slots=True)
class TopicLayout:
    """A topic's replicas as the brokers describe them, and its min.insync.replicas."""

    replicas: int  # the fewest replicas of any partition
    in_sync: int  # the fewest in-sync replicas of any partition
    offline: int  # partitions without a leader
    min_insync: int | None  # None when the configuration could not be read


def judge_replication(layouts: Mapping[str, TopicLayout], configured: int) -> Check:
    """Replicas against DECLIC_REPLICATION_FACTOR, and min.insync.replicas against what
    `declic topics` sets (2 with three replicas or more): writes need all in-sync
    replicas, so too few lose acknowledged records and too many stop every write."""
    if not layouts:
        return skip("replication", "no topic exists")
    failures: list[str] = []
    warnings: list[str] = []
    for topic, layout in layouts.items():
        if layout.offline:
            failures.append(f"{topic} has {layout.offline} partition(s) without a leader")
        if layout.replicas < configured:
            failures.append(
                f"{topic} has {layout.replicas} replica(s), "
                f"DECLIC_REPLICATION_FACTOR is {configured}"
            )
        insync = layout.min_insync
        if insync is None:
            warnings.append(f"{topic}: min.insync.replicas unreadable")
            continue
        if insync > layout.replicas:
            failures.append(
                f"{topic} has min.insync.replicas {insync} > {layout.replicas} replicas: "
                "every write is refused"
            )
        elif layout.replicas >= 3 and insync < 2:
            failures.append(
                f"{topic} has min.insync.replicas {insync} with {layout.replicas} replicas: "
                "one broker lost can lose acknowledged records (expected 2)"
            )
        elif layout.in_sync < insync:
            failures.append(
                f"{topic} has {layout.in_sync} in-sync replica(s) < min.insync.replicas "
                f"{insync}: writes are refused"
            )
        elif layout.in_sync < layout.replicas:
            warnings.append(
                f"{topic} is under-replicated ({layout.in_sync}/{layout.replicas} in sync)"
            )
        elif insync == layout.replicas > 1:
            warnings.append(
                f"{topic} has min.insync.replicas {insync} = replicas: one broker down stops writes"
            )
    details = {
        "topics": {
            topic: {
                "replicas": layout.replicas,
                "in_sync": layout.in_sync,
                "offline": layout.offline,
                "min_insync_replicas": layout.min_insync,
            }
            for topic, layout in layouts.items()
        },
        "replication_factor_setting": configured,
    }
    if failures:
        return fail("replication", "; ".join(failures), **details)
    if warnings:
        return warn("replication", "; ".join(warnings), **details)
    replicas = sorted({layout.replicas for layout in layouts.values()})
    insyncs = sorted({layout.min_insync or 0 for layout in layouts.values()})
    return ok(
        "replication",
        f"{len(layouts)} topics: {'/'.join(map(str, replicas))} replica(s) (setting "
        f"{configured}), min.insync.replicas {'/'.join(map(str, insyncs))}, all in sync",
        **details,
    )


def judge_configs(
    actual: Mapping[str, Mapping[str, str]], expected: Mapping[str, Mapping[str, str]]
) -> Check:
    """The configurations `declic topics` sets (compaction, retention) must hold: a state
    changelog that deletes instead of compacting loses users' state."""
    wrong = [
        f"{topic} has {key}={actual[topic].get(key, '?')} (expected {value})"
        for topic, configs in expected.items()
        if topic in actual
        for key, value in configs.items()
        if actual[topic].get(key) != value
    ]
    checked = sum(len(configs) for topic, configs in expected.items() if topic in actual)
    if not actual:
        return skip("configs", "no topic exists")
    if wrong:
        return fail("configs", "; ".join(wrong), wrong=wrong)
    return ok(
        "configs", f"{checked} topic settings as `declic topics` makes them (compaction, retention)"
    )


@dataclass(frozen=True, slots=True)
class Permission:
    """One thing a worker must be allowed: an operation on a resource."""

    resource: str  # topic, group, transactional id
    name: str
    operation: str  # Read, Write, Describe

    def __str__(self) -> str:
        kind = "" if self.resource == "topic" else f"{self.resource} "
        return f"{self.operation} on {kind}{self.name}"


def judge_acls(principal: str, needed: Sequence[Permission], granted: set[Permission]) -> Check:
    """Whether the principal is allowed everything a worker does."""
    lacking = [permission for permission in needed if permission not in granted]
    details = {"principal": principal, "lacking": [str(p) for p in lacking]}
    if lacking:
        return fail(
            "acls",
            f"{principal} lacks {', '.join(map(str, lacking))} (a worker needs them)",
            **details,
        )
    by_operation = Counter(p.operation for p in needed if p.resource == "topic")
    others = [str(p) for p in needed if p.resource != "topic"]
    return ok(
        "acls",
        f"{principal} may "
        + ", ".join(
            f"{operation} {count} topics" for operation, count in sorted(by_operation.items())
        )
        + (", " + ", ".join(others) if others else ""),
        **details,
    )


@dataclass(frozen=True, slots=True)
class Member:
    """A member of the worker group: its client id, host, and partitions assigned."""

    client_id: str
    host: str
    partitions: int


def judge_group(group: str, state: str, members: Sequence[Member], partitions: int) -> Check:
    """The worker group's members; none is a warning (a doctor may run before workers)."""
    details = {
        "group": group,
        "state": state,
        "members": [
            {"client_id": m.client_id, "host": m.host, "partitions": m.partitions} for m in members
        ],
    }
    if not members:
        return warn(
            "group", f"{group}: no members (state {state}): no worker is running", **details
        )
    listing = ", ".join(f"{m.client_id} on {m.host.strip('/')}: {m.partitions}" for m in members)
    text = f"{group}: {len(members)} member(s), state {state} ({listing} partitions)"
    if state != "Stable":
        return warn("group", text + ": rebalancing", **details)
    if len(members) > partitions > 0:
        return warn(
            "group", text + f": more workers than the {partitions} partitions, some idle", **details
        )
    return ok("group", text, **details)


def judge_lag(group: str, lag: Mapping[str, int], uncommitted: int, members: int) -> Check:
    """Records the worker group has yet to process, per input topic."""
    total = sum(lag.values())
    listing = ", ".join(f"{topic} {count}" for topic, count in lag.items() if count)
    details = {
        "group": group,
        "lag": dict(lag),
        "total": total,
        "partitions_never_committed": uncommitted,
    }
    text = f"{group}: {total} records behind" + (f" ({listing})" if listing else "")
    if uncommitted:
        text += f"; {uncommitted} partition(s) never committed, counted from their start"
    if total and not members:
        return warn("lag", text + ", and no worker to catch up", **details)
    return ok("lag", text, **details)


def judge_skew(skew_ms: float, uncertainty_ms: float, against: str) -> Check:
    """This host's clock against the cluster's, counting only what the measure proves."""
    direction = "ahead of" if skew_ms < 0 else "behind"
    text = (
        f"this host is {abs(skew_ms) / 1000:.3f} s {direction} {against} "
        f"(± {uncertainty_ms / 1000:.3f} s, half the round trip)"
    )
    details = {"skew_ms": skew_ms, "uncertainty_ms": uncertainty_ms, "against": against}
    certain = abs(skew_ms) - uncertainty_ms
    if certain > SKEW_FAIL_MS:
        return fail(
            "clock", text + f": beyond {SKEW_FAIL_MS // 1000} s, fix time sync (NTP)", **details
        )
    if certain > SKEW_WARN_MS:
        return warn("clock", text + f": beyond {SKEW_WARN_MS // 1000} s", **details)
    return ok("clock", text, **details)


def judge_catalog(statuses: Mapping[str, int], broken: Mapping[str, str]) -> Check:
    """The engagement catalog as a worker loads it: what fails to load runs nowhere."""
    total = sum(statuses.values())
    counts = ", ".join(f"{count} {status}" for status, count in sorted(statuses.items()))
    details = {"statuses": dict(statuses), "broken": dict(broken)}
    if broken:
        reasons = "; ".join(f"{key}: {reason}" for key, reason in sorted(broken.items()))
        return fail(
            "catalog",
            f"{len(broken)} of {total + len(broken)} engagements do not load, workers ignore "
            f"them: {reasons}",
            **details,
        )
    if not total:
        return warn("catalog", "no engagements: nothing will be delivered", **details)
    return ok("catalog", f"{total} engagements load ({counts})", **details)
