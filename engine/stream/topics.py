"""Topic names and their explicit creation, each with the partition count meant."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, TopicAuthorizationFailedError, for_code

from engine.errors import ConfigError
from engine.retry import retry_kafka_briefly
from engine.settings import Settings

log = logging.getLogger(__name__)


class InputKind(StrEnum):
    """The input topics, named as on the wire."""

    SESSIONS = "sessions"
    CUSTOM_EVENTS = "custom-events"
    INTERACTIONS = "interactions"
    PROFILES = "profiles"
    TEST_SENDS = "test-sends"
    USER_REQUESTS = "user-requests"


INPUT_KINDS = tuple(InputKind)
ENGAGEMENTS = "engagements"
DELIVERIES = "deliveries"
IMPRESSIONS = "impressions"
DEAD_LETTERS = "dead-letters"
CONVERSIONS = "conversions"
ENGAGEMENT_CHANGELOG = "engagement-changelog"
ENGAGEMENT_STATS = "engagement-stats"
STATE_CHANGELOG = "state-changelog"
USER_AUDIT = "user-audit"

COMPACTED = {"cleanup.policy": "compact"}
KEPT_FOREVER = {"retention.ms": "-1", "retention.bytes": "-1"}
LEADER_WAIT_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class TopicNames:
    """Full topic names for one deployment (prefix applied)."""

    inputs: dict[str, InputKind]
    engagements: str
    deliveries: str
    impressions: str
    conversions: str
    dead_letters: str
    engagement_changelog: str
    engagement_stats: str
    state_changelog: str
    user_audit: str

    @classmethod
    def for_settings(cls, settings: Settings) -> TopicNames:
        """Return the topic names that the settings select."""
        return cls(
            inputs={settings.topic(kind.value): kind for kind in INPUT_KINDS},
            engagements=settings.topic(ENGAGEMENTS),
            deliveries=settings.topic(DELIVERIES),
            impressions=settings.topic(IMPRESSIONS),
            conversions=settings.topic(CONVERSIONS),
            dead_letters=settings.topic(DEAD_LETTERS),
            engagement_changelog=settings.topic(ENGAGEMENT_CHANGELOG),
            engagement_stats=settings.topic(ENGAGEMENT_STATS),
            state_changelog=settings.internal_topic(STATE_CHANGELOG),
            user_audit=settings.topic(USER_AUDIT),
        )

    def partitioned(self) -> list[str]:
        """Return every topic that must share the input partition count."""
        return [*self.inputs, self.state_changelog]


def topic_specs(settings: Settings) -> list[NewTopic]:
    """Return every topic the engine uses, with partitions and configuration.

    With three replicas or more, a write needs two in-sync replicas (every producer
    asks all in-sync replicas to acknowledge): one node down loses nothing and stops
    nothing.
    """
    names = TopicNames.for_settings(settings)
    replicas = settings.replication_factor
    durable = {"min.insync.replicas": "2"} if replicas >= 3 else {}

    def topic(name: str, partitions: int, configs: dict[str, str] | None = None) -> NewTopic:
        return NewTopic(name, partitions, replicas, topic_configs={**durable, **(configs or {})})

    specs = [topic(name, settings.partitions) for name in names.inputs]
    specs += [
        topic(names.deliveries, settings.partitions),
        topic(names.impressions, settings.partitions),
        topic(names.conversions, settings.partitions),
        topic(names.dead_letters, settings.partitions),
        topic(names.state_changelog, settings.partitions, COMPACTED),
        # The catalog is small and read whole by every worker: one partition keeps its order.
        topic(names.engagements, 1, COMPACTED),
        # The audit trail of engagement changes: in order, and never deleted.
        topic(names.engagement_changelog, 1, KEPT_FOREVER),
        # Latest figures per (engagement, partition): small, read whole by `declic diagnose`.
        topic(names.engagement_stats, 1, COMPACTED),
        # Who had a user forgotten, and when (no user data): in order, and never deleted.
        topic(names.user_audit, 1, KEPT_FOREVER),
    ]
    return specs


async def ensure_topics(settings: Settings) -> list[str]:
    """Create missing topics; check that existing ones have the partition count required."""
    admin = AIOKafkaAdminClient(**settings.kafka_client_options())
    try:
        await admin.start()
        specs = topic_specs(settings)
        existing = set(await retry_kafka_briefly(admin.list_topics))
        missing = [spec for spec in specs if spec.name not in existing]
        if missing:
            response = await retry_kafka_briefly(lambda: admin.create_topics(missing))
            _raise_creation_errors(response)
            log.info("created topics: %s", ", ".join(spec.name for spec in missing))
            await _wait_for_leaders(admin, [spec.name for spec in missing])
        await _check_partition_counts(admin, settings)
        return [spec.name for spec in missing]
    finally:
        await admin.close()


def _raise_creation_errors(response: Any) -> None:
    """Raise the first error the broker gave for a topic (one created meanwhile is fine).

    The admin client returns per-topic errors instead of raising them: a replication
    factor larger than the brokers alive (a node down) would otherwise pass unseen.
    """
    for entry in response.topic_errors:
        topic, code = entry[0], entry[1]
        if code in (0, TopicAlreadyExistsError.errno):
            continue  # another process may win the race: the partition check still applies
        error = for_code(code)
        message = entry[2] if len(entry) > 2 and entry[2] else error.description
        raise error(f"cannot create topic {topic!r}: {message}")


async def _wait_for_leaders(admin: AIOKafkaAdminClient, topics: list[str]) -> None:
    # A topic answers NotLeaderForPartition until its partitions have a leader.
    deadline = time.monotonic() + LEADER_WAIT_SECONDS
    while time.monotonic() < deadline:
        described = await retry_kafka_briefly(lambda: admin.describe_topics(topics))
        if all(
            not entry.get("error_code")
            and entry["partitions"]
            and all(partition["leader"] >= 0 for partition in entry["partitions"])
            for entry in described
        ):
            return
        await asyncio.sleep(0.1)
    log.warning("topics %s still have no leader after %ss", topics, LEADER_WAIT_SECONDS)


async def partitions_of(settings: Settings, topic: str) -> list[int]:
    """Return the partition numbers of a topic; raise ConfigError if it does not exist."""
    admin = AIOKafkaAdminClient(**settings.kafka_client_options())
    try:
        await admin.start()
        [described] = await retry_kafka_briefly(lambda: admin.describe_topics([topic]))
    finally:
        await admin.close()
    partitions = sorted(entry["partition"] for entry in described["partitions"])
    if described.get("error_code") == TopicAuthorizationFailedError.errno:
        # Not missing: hidden. Say which permission is lacking, not "run declic topics".
        raise TopicAuthorizationFailedError(topic)
    if described.get("error_code") or not partitions:
        raise ConfigError(f"topic {topic!r} does not exist: run `declic topics` first")
    return partitions


async def _check_partition_counts(admin: AIOKafkaAdminClient, settings: Settings) -> None:
    names = TopicNames.for_settings(settings)
    # A Kafka error stays one: the caller waits for Kafka, it is no setting to fix.
    described = await retry_kafka_briefly(lambda: admin.describe_topics(names.partitioned()))
    counts = {entry["topic"]: len(entry["partitions"]) for entry in described}
    if len(set(counts.values())) > 1:
        listing = ", ".join(f"{topic}={count}" for topic, count in sorted(counts.items()))
        raise ConfigError(
            "input topics and the state changelog must have the same partition count "
            f"(user state is co-partitioned with events): {listing}"
        )
