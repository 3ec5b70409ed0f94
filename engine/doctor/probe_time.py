"""This host's clock against the cluster's, and the catalog as a worker loads it.

Kafka has no time API, and Declic's topics keep the producers' timestamps (CreateTime),
so no record tells the brokers' time. DescribeQuorum does: the active controller
reports its own clock as its last fetch time (see ``engine.doctor.wire``). The skew
is that time minus the middle of the request's round trip; its uncertainty is half the
round trip (the best of a few tries is kept). It is the controller's clock: in a
cluster whose brokers run NTP, the brokers'. Nothing is written.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient

from engine.doctor.wire import MetadataQuorumRequest, leader_clock_ms
from engine.errors import DeclicError
from engine.settings import Settings
from engine.stream.catalog_follower import decode_engagement_record
from engine.stream.tail import read_to_end

TRIES = 3
CLUSTER_AUTHORIZATION_FAILED = 31


class NoClock(DeclicError):
    """Raise when the cluster does not tell its time (no KRaft, or no Describe on it)."""


async def measure_skew(admin: AIOKafkaAdminClient) -> tuple[float, float]:
    """Return (skew, uncertainty) in milliseconds: positive when this host is behind."""
    client: Any = admin._client
    node = client.get_random_node()
    best: tuple[float, float] | None = None
    for _ in range(TRIES):
        sent = time.time()
        response = await client.send(node, MetadataQuorumRequest())
        received = time.time()
        if int(response.error_code) == CLUSTER_AUTHORIZATION_FAILED:
            raise NoClock("not authorized to describe the cluster (DescribeQuorum)")
        clock = leader_clock_ms(response)
        if clock is None:
            raise NoClock("the metadata quorum did not report its leader's time")
        middle_ms = (sent + received) * 500
        half_ms = (received - sent) * 500
        if best is None or half_ms < best[1]:
            best = (clock - middle_ms, half_ms)
    assert best is not None
    return best


async def load_catalog(
    settings: Settings, max_seconds: float
) -> tuple[Counter[str], dict[str, str]]:
    """Read the engagements topic as a worker does (committed records, the latest per id);
    return the engagements by status, and why each that fails to load does."""
    records = await read_to_end(settings, settings.topic("engagements"), max_seconds=max_seconds)
    latest: dict[str, bytes | None] = {}
    for record in records:
        key = record.key.decode(errors="replace") if record.key is not None else "(no key)"
        latest[key] = record.value
    statuses: Counter[str] = Counter()
    broken: dict[str, str] = {}
    for key, value in latest.items():
        if value is None:
            continue  # deleted
        try:
            document, engagement = decode_engagement_record(value)
        except DeclicError as error:
            broken[key] = str(error)
            continue
        if engagement.id != key:
            broken[key] = f"its id is {engagement.id!r}"
            continue
        statuses[str(document["engagement"]["status"])] += 1
    return statuses, broken
