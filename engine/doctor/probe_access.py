"""What the principal of these settings may do, as the brokers' authorizer says.

* No authorizer (DescribeAcls answers SECURITY_DISABLED): every principal may do
  everything, so the ACL check is skipped (not failed).
* Topics and the group: the operations the authorizer allows this principal
  (authorized-operations fields of Metadata v8 and DescribeGroups v3), computed by the
  broker from its ACLs: no operation is tried.
* Transactional ids: Kafka reports no authorized operations for them. FindCoordinator on
  the id of partition 0 needs Describe on it, which proves that much only: proving Write
  would take starting a transactional producer, which fences the worker owning the id.
"""

from __future__ import annotations

from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.admin import DescribeAclsRequest
from aiokafka.protocol.coordination import FindCoordinatorRequest

from engine.doctor.judge import Permission
from engine.settings import Settings
from engine.stream.topics import TopicNames

SECURITY_DISABLED = 54
TRANSACTIONAL_ID_AUTHORIZATION_FAILED = 53
_ANY = 1  # resource type, pattern type, operation and permission "any" in filters
TRANSACTION_COORDINATOR = 1


async def has_authorizer(admin: AIOKafkaAdminClient) -> bool:
    """Return whether the brokers check ACLs at all."""
    client: Any = admin._client
    request = DescribeAclsRequest(_ANY, None, _ANY, None, None, _ANY, _ANY)
    response = await client.send(client.get_random_node(), request)
    # Any other answer (ACLs listed, or ClusterAuthorizationFailed) means an authorizer.
    return int(response.error_code) != SECURITY_DISABLED


async def may_describe_transactional_id(admin: AIOKafkaAdminClient, transactional_id: str) -> bool:
    """Return whether this principal may Describe a transactional id."""
    client: Any = admin._client
    request = FindCoordinatorRequest(transactional_id, TRANSACTION_COORDINATOR)
    response = await client.send(client.get_random_node(), request)
    return int(response.error_code) != TRANSACTIONAL_ID_AUTHORIZATION_FAILED


def principal(settings: Settings) -> str:
    """Return the principal the brokers know these settings as, as far as the client knows."""
    if settings.kafka_sasl_username:
        return f"User:{settings.kafka_sasl_username}"
    if settings.kafka_ssl_certfile:
        return f"the principal of certificate {settings.kafka_ssl_certfile}"
    return "User:ANONYMOUS"


def worker_permissions(names: TopicNames, group: str, transactional_id: str) -> list[Permission]:
    """Return what a worker does: read its inputs, the catalog, the figures, the history
    and its state; write its outputs, the figures and its state; consume as its group;
    and (Describe standing for Write, see above) its partitions' transactional ids."""
    reads = [
        *names.inputs,
        names.engagements,
        names.engagement_changelog,
        names.engagement_stats,
        names.state_changelog,
    ]
    writes = [
        names.deliveries,
        names.impressions,
        names.conversions,
        names.dead_letters,
        names.engagement_stats,
        names.state_changelog,
        names.user_audit,  # the record of each `declic users forget` carried out
    ]
    return [
        *(Permission("topic", topic, "Read") for topic in reads),
        *(Permission("topic", topic, "Write") for topic in writes),
        Permission("group", group, "Read"),
        Permission("transactional id", transactional_id, "Describe"),
    ]
