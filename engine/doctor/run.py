"""Run every check of `declic doctor`, each within a time bound, in a fixed order."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiokafka.admin import AIOKafkaAdminClient

from engine.cli_errors import unreachable_reason
from engine.doctor.checks import Check, fail, skip
from engine.doctor.judge import (
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
from engine.doctor.probe_access import (
    has_authorizer,
    may_describe_transactional_id,
    principal,
    worker_permissions,
)
from engine.doctor.probe_cluster import TopicFacts, describe_broker, describe_topics, topic_configs
from engine.doctor.probe_group import Group, describe_group, group_lag, worker_group
from engine.doctor.probe_time import NoClock, load_catalog, measure_skew
from engine.doctor.version import MINIMUM, version_floor
from engine.retry import access_error
from engine.settings import Settings
from engine.stream.checkpoint import transactional_id
from engine.stream.topics import TopicNames, topic_specs

T = TypeVar("T")
DEFAULT_TIMEOUT_SECONDS = 5.0
CHECKS = (
    "broker",
    "topics",
    "partitions",
    "replication",
    "configs",
    "acls",
    "group",
    "lag",
    "clock",
    "catalog",
)


def _problem(error: BaseException, timeout: float) -> str:
    if isinstance(error, TimeoutError):
        return f"no answer within {timeout:g} s (--timeout)"
    refused = access_error(error)
    if refused is not None:
        return str(refused)
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


class _Doctor:
    def __init__(self, settings: Settings, timeout: float) -> None:
        self.settings = settings
        self.timeout = timeout
        self.names = TopicNames.for_settings(settings)
        self.specs = topic_specs(settings)
        self.group = worker_group(settings)
        self.admin = AIOKafkaAdminClient(
            **settings.kafka_client_options(), request_timeout_ms=int(timeout * 1000)
        )
        self.checks: list[Check] = []
        self.configs: dict[str, dict[str, str]] = {}

    async def bounded(self, call: Callable[[], Awaitable[T]]) -> T:
        return await asyncio.wait_for(call(), self.timeout)

    async def check(self, name: str, call: Callable[[], Awaitable[Check]]) -> None:
        """Run one check; whatever stops it is its failure, not the doctor's."""
        try:
            self.checks.append(await self.bounded(call))
        except Exception as error:
            self.checks.append(fail(name, f"could not check: {_problem(error, self.timeout)}"))

    async def run(self) -> list[Check]:
        bootstrap = self.settings.kafka_bootstrap
        try:
            await self.bounded(self.admin.start)
            broker = await self.bounded(lambda: describe_broker(self.admin))
        except Exception as error:
            reason = unreachable_reason(bootstrap, timeout=self.timeout)
            refused = access_error(error)
            if refused is not None:
                text = f"{bootstrap}: {refused}"
            elif reason is not None:
                text = f"{bootstrap} is unreachable ({reason})"
            else:
                text = f"{bootstrap} did not answer as Kafka: {_problem(error, self.timeout)}"
            return [fail("broker", text), *(skip(name, "needs the broker") for name in CHECKS[1:])]
        self.checks.append(
            judge_broker(
                bootstrap,
                version_floor(broker.versions),
                MINIMUM,
                broker.brokers,
                self.settings.replication_factor,
            )
        )
        expected = [spec.name for spec in self.specs]
        try:
            facts = await self.bounded(lambda: describe_topics(self.admin, expected))
        except Exception as error:
            problem = f"could not check: {_problem(error, self.timeout)}"
            return [*self.checks, *(fail(name, problem) for name in CHECKS[1:])]
        existing = [topic for topic in expected if facts[topic].exists]
        self.checks.append(
            judge_topics(expected, existing, [t for t in expected if facts[t].hidden])
        )
        counts = {topic: facts[topic].partitions for topic in existing}
        self.checks.append(
            judge_partitions(counts, self.names.partitioned(), self.settings.partitions)
        )
        await self.check("replication", lambda: self._replication(facts, existing))
        await self.check("configs", self._configs)
        group: list[Group] = []
        await self.check("acls", lambda: self._acls(facts, group))
        await self.check("group", lambda: self._group(counts, group))
        await self.check("lag", lambda: self._lag(counts, group))
        await self.check("clock", self._clock)
        await self.check("catalog", lambda: self._catalog(existing))
        return self.checks

    async def _replication(self, facts: dict[str, TopicFacts], existing: list[str]) -> Check:
        self.configs = await topic_configs(self.admin, existing)
        layouts: dict[str, TopicLayout] = {}
        for topic in existing:
            layout = facts[topic].layout
            assert layout is not None
            insync = self.configs.get(topic, {}).get("min.insync.replicas")
            layouts[topic] = TopicLayout(
                layout.replicas,
                layout.in_sync,
                layout.offline,
                int(insync) if insync is not None else None,
            )
        return judge_replication(layouts, self.settings.replication_factor)

    async def _configs(self) -> Check:
        expected = {
            spec.name: {k: v for k, v in spec.topic_configs.items() if k != "min.insync.replicas"}
            for spec in self.specs
        }
        return judge_configs(self.configs, expected)

    async def _describe_group(self, group: list[Group]) -> Group:
        if not group:
            group.append(await describe_group(self.admin, self.group))
        return group[0]

    async def _acls(self, facts: dict[str, TopicFacts], group: list[Group]) -> Check:
        if not await has_authorizer(self.admin):
            return skip(
                "acls", "skipped: the broker has no authorizer (every principal may do all)"
            )
        txn = transactional_id(self.settings, 0)
        granted: set[Permission] = set()
        for permission in worker_permissions(self.names, self.group, txn):
            if permission.resource == "topic":
                allowed = facts[permission.name].operations
            elif permission.resource == "group":
                try:
                    allowed = (await self._describe_group(group)).operations
                except Exception as error:
                    if access_error(error) is None:
                        raise
                    allowed = set()
            else:
                described = await may_describe_transactional_id(self.admin, permission.name)
                allowed = {"Describe"} if described else set()
            if permission.operation in allowed or "All" in allowed:
                granted.add(permission)
        needed = worker_permissions(self.names, self.group, txn)
        return judge_acls(principal(self.settings), needed, granted)

    async def _group(self, counts: dict[str, int], group: list[Group]) -> Check:
        described = await self._describe_group(group)
        inputs = [counts[t] for t in self.names.inputs if t in counts]
        return judge_group(self.group, described.state, described.members, max(inputs, default=0))

    async def _lag(self, counts: dict[str, int], group: list[Group]) -> Check:
        inputs = {t: counts[t] for t in self.names.inputs if t in counts}
        if not inputs:
            return skip("lag", "no input topic exists")
        lag, never = await group_lag(self.admin, self.settings, self.group, inputs)
        members = len(group[0].members) if group else 0
        return judge_lag(self.group, lag, never, members)

    async def _clock(self) -> Check:
        try:
            skew, uncertainty = await measure_skew(self.admin)
        except NoClock as error:
            return skip("clock", f"cannot measure: {error}")
        return judge_skew(skew, uncertainty, "the cluster's active controller")

    async def _catalog(self, existing: list[str]) -> Check:
        if self.names.engagements not in existing:
            return skip("catalog", f"no topic {self.names.engagements}")
        statuses, broken = await load_catalog(self.settings, self.timeout)
        return judge_catalog(statuses, broken)


async def run_doctor(
    settings: Settings, seconds_per_check: float = DEFAULT_TIMEOUT_SECONDS
) -> list[Check]:
    """Return the checks of a deployment, in the order of CHECKS, each given at most
    ``seconds_per_check`` (an unreachable broker fails the first and skips the others)."""
    doctor = _Doctor(settings, seconds_per_check)
    try:
        return await doctor.run()
    finally:
        await doctor.admin.close()
