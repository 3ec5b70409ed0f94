"""Ask the brokers: reachable, their version, the topics' layout and configuration."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.protocol.admin import ApiVersionRequest

from engine.doctor.judge import TopicLayout
from engine.doctor.wire import AuthorizedTopicsRequest, allowed_operations

UNKNOWN_TOPIC = 3
TOPIC_AUTHORIZATION_FAILED = 29


@dataclass(frozen=True, slots=True)
class Broker:
    """What the bootstrap broker says of itself and its cluster."""

    versions: dict[int, tuple[int, int]]
    brokers: int
    controller: int


@dataclass(frozen=True, slots=True)
class TopicFacts:
    """One topic as the metadata shows it to this principal."""

    exists: bool
    hidden: bool  # exists or not, this principal may not describe it
    partitions: int
    layout: TopicLayout | None
    operations: set[str]


async def describe_broker(admin: AIOKafkaAdminClient) -> Broker:
    """Return the API versions of one broker and the size of the cluster."""
    client: Any = admin._client  # aiokafka's admin client has no ApiVersions call of its own
    node = client.get_random_node()
    response = await client.send(node, ApiVersionRequest())
    versions = {entry[0]: (entry[1], entry[2]) for entry in response.api_versions}
    cluster = await admin.describe_cluster()
    return Broker(versions, len(cluster["brokers"]), int(cluster["controller_id"]))


async def describe_topics(
    admin: AIOKafkaAdminClient, topics: Sequence[str]
) -> dict[str, TopicFacts]:
    """Return each topic's partitions, replicas and the operations this principal may do."""
    client: Any = admin._client
    response = await client.send(client.get_random_node(), AuthorizedTopicsRequest(list(topics)))
    facts = {}
    for error, name, _internal, partitions, operations in response.topics:
        if error in (UNKNOWN_TOPIC, TOPIC_AUTHORIZATION_FAILED) or (not error and not partitions):
            # A topic missing still has the operations the ACLs would allow on it.
            hidden = error == TOPIC_AUTHORIZATION_FAILED
            allowed = set() if hidden else allowed_operations(operations)
            facts[name] = TopicFacts(False, hidden, 0, None, allowed)
            continue
        layout = TopicLayout(
            replicas=min(len(p[4]) for p in partitions),
            in_sync=min(len(p[5]) for p in partitions),
            offline=sum(1 for p in partitions if p[2] < 0),
            min_insync=None,
        )
        facts[name] = TopicFacts(
            True, False, len(partitions), layout, allowed_operations(operations)
        )
    return facts


async def topic_configs(
    admin: AIOKafkaAdminClient, topics: Sequence[str]
) -> dict[str, dict[str, str]]:
    """Return the effective configuration of each topic (broker defaults included)."""
    if not topics:
        return {}
    resources = [ConfigResource(ConfigResourceType.TOPIC, topic) for topic in topics]
    configs: dict[str, dict[str, str]] = {}
    for response in await admin.describe_configs(resources):
        for error, _message, _type, name, entries in response.resources:
            if not error:
                configs[name] = {entry[0]: entry[1] for entry in entries}
    return configs
