"""Two Kafka requests aiokafka does not offer, built from its protocol types.

* Metadata v8 asks for the operations the calling principal may perform on each topic
  (``topic_authorized_operations``, KIP-430): what its ACLs allow, as the broker's
  authorizer computes it, without trying any operation.
* DescribeGroups v3 (aiokafka's decodes the answer as v2): the same for a group.
* DescribeQuorum v1 (KIP-836) reports, for the active controller itself, its own clock
  at the moment it answers (``last_fetch_timestamp`` of the leader is its current time):
  the only broker-side clock a client can read without writing anything.
"""

from __future__ import annotations

from typing import Any

from aiokafka.protocol.admin import DescribeGroupsResponse_v3
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (
    Array,
    Boolean,
    CompactArray,
    CompactString,
    Int16,
    Int32,
    Int64,
    Schema,
    String,
    TaggedFields,
)

# AclOperation codes (org.apache.kafka.common.acl.AclOperation), as bits of the
# authorized-operations fields.
OPERATIONS = {"All": 2, "Read": 3, "Write": 4, "Create": 5, "Describe": 8}
# Read, Write (and others) imply Describe; the authorizer's answer already includes it.
NO_OPERATIONS_KNOWN = -(2**31)  # what a broker sends when it was not asked


def allowed_operations(bits: int) -> set[str]:
    """Return the operation names an authorized-operations bit field allows."""
    if bits == NO_OPERATIONS_KNOWN:
        return set()
    return {name for name, code in OPERATIONS.items() if bits & (1 << code)}


class MetadataResponse_v8(Response):  # type: ignore[misc]  # noqa: N801 (Kafka names versions so)
    API_KEY = 3
    API_VERSION = 8
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "brokers",
            Array(("node_id", Int32), ("host", String()), ("port", Int32), ("rack", String())),
        ),
        ("cluster_id", String()),
        ("controller_id", Int32),
        (
            "topics",
            Array(
                ("error_code", Int16),
                ("name", String()),
                ("is_internal", Boolean),
                (
                    "partitions",
                    Array(
                        ("error_code", Int16),
                        ("partition_index", Int32),
                        ("leader_id", Int32),
                        ("leader_epoch", Int32),
                        ("replica_nodes", Array(Int32)),
                        ("isr_nodes", Array(Int32)),
                        ("offline_replicas", Array(Int32)),
                    ),
                ),
                ("topic_authorized_operations", Int32),
            ),
        ),
        ("cluster_authorized_operations", Int32),
    )


class MetadataRequest_v8(RequestStruct):  # type: ignore[misc]  # noqa: N801
    API_KEY = 3
    API_VERSION = 8
    RESPONSE_TYPE = MetadataResponse_v8
    SCHEMA = Schema(
        ("topics", Array(String())),
        ("allow_auto_topic_creation", Boolean),
        ("include_cluster_authorized_operations", Boolean),
        ("include_topic_authorized_operations", Boolean),
    )


class AuthorizedTopicsRequest(Request[MetadataRequest_v8]):  # type: ignore[misc]
    """Metadata of some topics, with the operations this principal may perform on each."""

    API_KEY = 3

    def __init__(self, topics: list[str]) -> None:
        self._topics = topics

    def build(self, request_struct_class: type[MetadataRequest_v8]) -> MetadataRequest_v8:
        return request_struct_class(self._topics, False, False, True)


_REPLICA = (
    ("replica_id", Int32),
    ("log_end_offset", Int64),
    ("last_fetch_timestamp", Int64),
    ("last_caught_up_timestamp", Int64),
    ("tags", TaggedFields),
)


class DescribeQuorumResponse_v1(Response):  # type: ignore[misc]  # noqa: N801 (Kafka names versions so)
    API_KEY = 55
    API_VERSION = 1
    SCHEMA = Schema(
        ("error_code", Int16),
        (
            "topics",
            CompactArray(
                ("topic_name", CompactString()),
                (
                    "partitions",
                    CompactArray(
                        ("partition_index", Int32),
                        ("error_code", Int16),
                        ("leader_id", Int32),
                        ("leader_epoch", Int32),
                        ("high_watermark", Int64),
                        ("current_voters", CompactArray(*_REPLICA)),
                        ("observers", CompactArray(*_REPLICA)),
                        ("tags", TaggedFields),
                    ),
                ),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class DescribeQuorumRequest_v1(RequestStruct):  # type: ignore[misc]  # noqa: N801
    FLEXIBLE_VERSION = True
    API_KEY = 55
    API_VERSION = 1
    RESPONSE_TYPE = DescribeQuorumResponse_v1
    SCHEMA = Schema(
        (
            "topics",
            CompactArray(
                ("topic_name", CompactString()),
                ("partitions", CompactArray(("partition_index", Int32), ("tags", TaggedFields))),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class MetadataQuorumRequest(Request[DescribeQuorumRequest_v1]):  # type: ignore[misc]
    """The KRaft metadata quorum (topic __cluster_metadata, partition 0)."""

    API_KEY = 55

    def build(
        self, request_struct_class: type[DescribeQuorumRequest_v1]
    ) -> DescribeQuorumRequest_v1:
        return request_struct_class([("__cluster_metadata", [(0, {})], {})], {})


def leader_clock_ms(response: Any) -> int | None:
    """Return the active controller's clock when it answered, or None if not told."""
    for _name, partitions, _tags in response.topics:
        for _index, error, leader, _epoch, _hw, voters, _observers, _tags2 in partitions:
            if error:
                return None
            for replica_id, _end, last_fetch, _caught_up, _tags3 in voters:
                if replica_id == leader and last_fetch > 0:
                    return int(last_fetch)
    return None


class DescribeGroupsRequest_v3(RequestStruct):  # type: ignore[misc]  # noqa: N801
    # aiokafka's own v3 decodes the answer as v2, dropping authorized_operations.
    API_KEY = 15
    API_VERSION = 3
    RESPONSE_TYPE = DescribeGroupsResponse_v3
    SCHEMA = Schema(("groups", Array(String())), ("include_authorized_operations", Boolean))


class AuthorizedGroupRequest(Request[DescribeGroupsRequest_v3]):  # type: ignore[misc]
    """A group's state and members, with the operations this principal may perform on it."""

    API_KEY = 15

    def __init__(self, group: str) -> None:
        self._group = group

    def build(
        self, request_struct_class: type[DescribeGroupsRequest_v3]
    ) -> DescribeGroupsRequest_v3:
        return request_struct_class([self._group], True)
