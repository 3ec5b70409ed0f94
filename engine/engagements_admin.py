"""Manage engagements on their compacted topic: validate, version and publish them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from engine.core.engagements import compile_engagement
from engine.core.timestamps import format_timestamp
from engine.errors import DeclicError
from engine.schemas import apply_engagement_defaults, load_engagement_documents, validator
from engine.settings import Settings
from engine.stream.catalog_follower import CatalogFollower


class EngagementRejected(DeclicError):
    """Raise when engagement files are invalid; nothing was published."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Change:
    """What `apply` did to one engagement."""

    engagement_id: str
    action: str  # created, updated, unchanged
    version: int


def load_and_validate(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """Read engagement files; raise EngagementRejected listing every problem."""
    problems: list[str] = []
    documents: list[dict[str, Any]] = []
    sources: dict[str, str] = {}
    schema = validator("engagement")
    for path in paths:
        for source, document in load_engagement_documents(path):
            errors = schema.errors(document)
            if errors:
                problems += [f"{source}: {error}" for error in errors]
                continue
            engagement = apply_engagement_defaults(document)
            try:
                compile_engagement(engagement, 1)
            except DeclicError as error:
                problems.append(f"{source}: {error}")
                continue
            holder = sources.get(engagement["id"])
            if holder is not None:
                problems.append(f"{source}: id {engagement['id']!r} is also defined in {holder}")
                continue
            sources[engagement["id"]] = source
            documents.append(engagement)
    if problems:
        raise EngagementRejected(problems)
    return documents


async def read_catalog(settings: Settings) -> dict[str, dict[str, Any]]:
    """Return the engagement records currently on the topic, by id."""
    follower = CatalogFollower(settings)
    try:
        await follower.start()
    finally:
        await follower.stop()
    return dict(follower.records)


async def apply_engagements(
    settings: Settings, documents: Sequence[dict[str, Any]], now_ms: int
) -> list[Change]:
    """Publish new or changed engagements with their next version."""
    current = await read_catalog(settings)
    changes: list[Change] = []
    records: list[tuple[str, dict[str, Any]]] = []
    for engagement in documents:
        existing = current.get(engagement["id"])
        if existing is not None and existing["engagement"] == engagement:
            changes.append(Change(engagement["id"], "unchanged", existing["version"]))
            continue
        version = 1 if existing is None else existing["version"] + 1
        record = {
            "engagement": engagement,
            "version": version,
            "updated_at": format_timestamp(now_ms),
            "author": settings.author,
        }
        validator("engagement-record").check(record)
        records.append((engagement["id"], record))
        changes.append(
            Change(engagement["id"], "created" if existing is None else "updated", version)
        )
    if records:
        await _publish(settings, [(key, orjson.dumps(value)) for key, value in records])
    return changes


async def delete_engagement(settings: Settings, engagement_id: str) -> bool:
    """Publish a tombstone for an engagement; return False if it did not exist."""
    current = await read_catalog(settings)
    if engagement_id not in current:
        return False
    await _publish(settings, [(engagement_id, None)])
    return True


async def _publish(settings: Settings, records: Sequence[tuple[str, bytes | None]]) -> None:
    producer = AIOKafkaProducer(
        **settings.kafka_client_options(),
        client_id=f"{settings.app_id}-admin",
        acks="all",
        enable_idempotence=True,
    )
    await producer.start()
    try:
        topic = settings.topic("engagements")
        futures = [await producer.send(topic, value, key=key.encode()) for key, value in records]
        for future in futures:
            await future
    finally:
        await producer.stop()
