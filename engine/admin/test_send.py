"""`declic engagements test-send`: ask the worker owning a user for one test delivery."""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from engine.admin.engagements import EngagementRejected, read_catalog
from engine.core.timestamps import format_timestamp
from engine.errors import DeclicError
from engine.schemas import validator
from engine.settings import Settings
from engine.stream.tail import TopicTail


async def request_test_send(
    settings: Settings,
    engagement_id: str,
    user_id: str,
    variant: str | None,
    wait_seconds: float,
) -> dict[str, Any]:
    """Publish a test-send request and return the test delivery the worker produced."""
    record = (await read_catalog(settings)).get(engagement_id)
    if record is None:
        raise EngagementRejected([f"no engagement {engagement_id!r}"])
    variants = [entry["id"] for entry in record["engagement"].get("variants", [])]
    if variant is not None and variant not in (variants or ["default"]):
        raise EngagementRejected(
            [
                f"{engagement_id!r} has no variant {variant!r} (it has: "
                f"{', '.join(variants or ['default'])})"
            ]
        )
    request = {
        "request_id": f"test-{uuid.uuid4().hex}",
        "engagement_id": engagement_id,
        "user_id": user_id,
        "requested_at": format_timestamp(int(time.time() * 1000)),
        "author": settings.author,
    }
    if variant is not None:
        request["variant"] = variant
    validator("test-send").check(request)
    deliveries = TopicTail(settings, settings.topic("deliveries"))
    try:
        await deliveries.start()
        producer = AIOKafkaProducer(**settings.kafka_producer_options())
        try:
            await producer.start()
            await producer.send_and_wait(
                settings.topic("test-sends"), orjson.dumps(request), key=user_id.encode()
            )
        finally:
            await producer.stop()
        deadline = time.monotonic() + wait_seconds
        while time.monotonic() < deadline:
            for delivery in await deliveries.read(quiet_seconds=0, max_seconds=0.5):
                if delivery.get("test") and delivery["trigger_event_id"] == request["request_id"]:
                    return delivery
    finally:
        await deliveries.stop()
    raise DeclicError(
        f"no worker produced the test delivery within {wait_seconds:.0f}s: "
        "is a `declic worker` running on this cluster?"
    )
