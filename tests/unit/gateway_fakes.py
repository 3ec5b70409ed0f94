"""In-memory stand-ins for the gateway's Kafka side, at its own seam.

The hub is fed as the Kafka follower feeds it (``Hub.add_delivery``, ``Hub.mark_shown``,
with records decoded by the real ``records`` module); the producer is a list. The app,
its middlewares and handlers are the real ones, served by aiohttp's test server.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp.test_utils import TestClient, TestServer

from engine.core.deliveries import delivery_id as derive_delivery_id
from engine.core.timestamps import format_timestamp
from engine.gateway.app import build_app, make_gateway
from engine.gateway.context import Gateway
from engine.gateway.hub import Hub
from engine.gateway.index import DeliveryIndex
from engine.gateway.kafka_io import PublishFailed
from engine.gateway.metrics import GatewayMetrics
from engine.gateway.records import decode_delivery, decode_shown
from engine.gateway.tokens import TokenChecker, sign_token

SECRET = "unit-test-secret-0123456789abcdef0123456789"
NOW_MS = 1_796_000_000_000  # 2026-11-30


def hs256_with_header(secret: str, header: dict[str, Any], payload: dict[str, Any]) -> str:
    """Return an HS256 token whose header is exactly ``header`` (PyJWT refuses to write
    some of the headers a client can send)."""

    def part(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    signing = f"{part(json.dumps(header).encode())}.{part(json.dumps(payload).encode())}"
    signature = hmac.new(secret.encode(), signing.encode(), hashlib.sha256).digest()
    return f"{signing}.{part(signature)}"


@dataclass
class FakeClock:
    """The gateway's clocks: epoch milliseconds and a monotonic one, moved by hand."""

    ms: int = NOW_MS
    seconds: float = 1000.0

    def now_ms(self) -> int:
        return self.ms

    def monotonic(self) -> float:
        return self.seconds

    def advance(self, seconds: float) -> None:
        self.ms += int(seconds * 1000)
        self.seconds += seconds


@dataclass
class FakePublisher:
    """Records what the gateway publishes; fails while ``failing`` is set."""

    sent: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    failing: bool = False

    async def publish(self, topic: str, key: str, value: bytes) -> None:
        if self.failing:
            raise PublishFailed("Kafka did not acknowledge the record (KafkaTimeoutError)")
        self.sent.append((topic, key, orjson.loads(value)))


def delivery_record(
    user_id: str,
    event: str,
    created_ms: int = NOW_MS,
    expires_ms: int | None = None,
    message: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Return a delivery record as a worker writes it."""
    record: dict[str, Any] = {
        "delivery_id": derive_delivery_id("spring-sale", user_id, event),
        "engagement_id": "spring-sale",
        "engagement_version": 1,
        "variant": "default",
        "user_id": user_id,
        "trigger_event_id": event,
        "message": message or {"title": "Spring sale", "body": f"for {user_id}"},
        "triggered_at": format_timestamp(created_ms - 10),
        "created_at": format_timestamp(created_ms),
        "test": False,
    }
    if expires_ms is not None:
        record["expires_at"] = format_timestamp(expires_ms)
    return record


@dataclass
class FakeKafka:
    """Feed the hub as the follower does: records at growing offsets of a partition."""

    hub: Hub
    offsets: dict[int, int] = field(default_factory=dict)

    def deliver(self, record: dict[str, Any], partition: int = 0) -> str:
        """Feed one delivery record; return its event id."""
        offset = self.offsets.get(partition, 0)
        self.offsets[partition] = offset + 1
        decoded = decode_delivery(orjson.dumps(record), partition, offset, self.hub.clock())
        assert decoded is not None, record
        self.hub.add_delivery(decoded)
        return f"{partition}-{offset}"

    def impression(self, user_id: str, delivery_id: str) -> None:
        """Feed one impression record of `impressions`."""
        shown = decode_shown(
            orjson.dumps(
                {"event_id": str(uuid.uuid4()), "user_id": user_id, "delivery_id": delivery_id}
            )
        )
        assert shown is not None
        self.hub.mark_shown(shown)


@dataclass
class Rig:
    """A gateway app on a test server, with its fakes."""

    client: TestClient[Any, Any]
    gateway: Gateway
    kafka: FakeKafka
    publisher: FakePublisher
    clock: FakeClock
    health: dict[str, Any]

    def token(self, user_id: str, audience: str | None = None) -> str:
        # Tokens are checked against the real time (PyJWT's), not the rig's clock.
        return sign_token(SECRET, user_id, audience=audience)

    def auth(self, user_id: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user_id)}"}


@asynccontextmanager
async def gateway_rig(
    *,
    origins: tuple[str, ...] = (),
    rate_per_user: float = 1000.0,
    rate_per_address: float = 1000.0,
    demo: bool = False,
    caught_up: bool = True,
    max_messages: int = 20,
    keepalive_seconds: float = 15.0,
    audience: str | None = None,
) -> AsyncIterator[Rig]:
    """Yield a rig: the real app on a test server, Kafka replaced by fakes."""
    clock = FakeClock()
    metrics = GatewayMetrics()
    hub = Hub(DeliveryIndex(max_messages, 1000), metrics, clock.now_ms)
    if caught_up:
        hub.caught_up.set()
    publisher = FakePublisher()
    health: dict[str, Any] = {"ready": True}

    def report() -> tuple[bool, dict[str, Any]]:
        ok = bool(health["ready"]) and hub.caught_up.is_set()
        problems = [] if ok else ["reading the history of deliveries and impressions"]
        return ok, {
            "status": "ok" if ok else "unavailable",
            "problems": problems,
            "caught_up": hub.caught_up.is_set(),
            "lag": {"deliveries": 0, "impressions": 0},
            "users": len(hub.index),
            "deliveries": hub.index.deliveries,
            "streams": hub.stream_count,
        }

    gateway = make_gateway(
        hub,
        TokenChecker(secret=SECRET, audience=audience),
        publisher,
        metrics,
        report,
        rate_per_user=rate_per_user,
        rate_per_address=rate_per_address,
        topics=("interactions", "custom-events"),
        monotonic=clock.monotonic,
        demo=demo,
    )
    gateway.keepalive_seconds = keepalive_seconds
    app = build_app(gateway, origins)
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield Rig(client, gateway, FakeKafka(hub), publisher, clock, health)
    finally:
        hub.close_all()
        await client.close()
