"""Which Kafka release a broker is at least, from the APIs it offers (ApiVersions).

Kafka does not tell its version over the protocol; the APIs and versions it offers only
bound it from below: each marker is an API that first appeared in a release (or, for
4.0, old versions it stopped serving). Hence "Kafka >= X.Y", never "Kafka X.Y".
"""

from __future__ import annotations

from collections.abc import Mapping

# API key -> the release that introduced it (KIP numbers in Kafka's protocol guide).
_INTRODUCED: tuple[tuple[int, tuple[int, int]], ...] = (
    (18, (0, 10)),  # ApiVersions
    (22, (0, 11)),  # InitProducerId: transactions
    (36, (1, 0)),  # SaslAuthenticate
    (42, (1, 1)),  # DeleteGroups
    (43, (2, 2)),  # ElectLeaders
    (44, (2, 3)),  # IncrementalAlterConfigs
    (47, (2, 4)),  # OffsetDelete
    (48, (2, 6)),  # DescribeClientQuotas
    (50, (2, 7)),  # DescribeUserScramCredentials
    (60, (2, 8)),  # DescribeCluster
    (65, (3, 0)),  # DescribeTransactions
    (75, (3, 8)),  # DescribeTopicPartitions
)
FETCH = 1
# Kafka 4.0 stopped serving Fetch v0-v3 (KIP-896).
_FETCH_V4_ONLY = (4, 0)
# Static membership (KIP-345, JoinGroup v5) and read_committed transactions: what a worker
# relies on, both in 2.3.
MINIMUM = (2, 3)


def version_floor(versions: Mapping[int, tuple[int, int]]) -> tuple[int, int] | None:
    """Return the oldest release offering these API versions, or None if none is known."""
    floor = None
    for key, release in _INTRODUCED:
        if key in versions and (floor is None or release > floor):
            floor = release
    fetch = versions.get(FETCH)
    if fetch is not None and fetch[0] >= 4 and (floor is None or floor < _FETCH_V4_ONLY):
        floor = _FETCH_V4_ONLY
    return floor
