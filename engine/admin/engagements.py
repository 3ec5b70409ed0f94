"""Manage engagements on their compacted topic: validate, version, publish, and log each change.

Every change publishes, in one Kafka transaction, the engagement's new version
on the `engagements` topic and a record of who changed what on the
`engagement-changelog` topic, so the two never disagree.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from engine.admin.history import changed_fields
from engine.core.engagements import compile_engagement
from engine.core.timestamps import format_timestamp
from engine.errors import DeclicError
from engine.schemas import apply_engagement_defaults, load_engagement_documents, validator
from engine.settings import Settings
from engine.stream.catalog_follower import CatalogFollower

# Status changes: action -> (statuses it applies to, resulting status).
STATUS_ACTIONS: dict[str, tuple[frozenset[str], str]] = {
    "pause": (frozenset({"active"}), "paused"),
    "resume": (frozenset({"paused", "draft"}), "active"),
    "archive": (frozenset({"draft", "active", "paused"}), "archived"),
}


class EngagementRejected(DeclicError):
    """Raise when engagements are invalid or a change is not allowed; nothing was published."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Change:
    """What a command did to one engagement."""

    engagement_id: str
    action: str  # create, update, unchanged, pause, resume, archive, delete
    version: int


def load_and_validate(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """Read engagement files; raise EngagementRejected listing every problem."""
    problems: list[str] = []
    documents: list[dict[str, Any]] = []
    sources: dict[str, str] = {}
    names: dict[str, str] = {}
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
            if engagement["status"] != "archived":
                name_holder = names.get(engagement["name"])
                if name_holder is not None:
                    problems.append(
                        f"{source}: name {engagement['name']!r} is also used by {name_holder}"
                    )
                    continue
                names[engagement["name"]] = source
            sources[engagement["id"]] = source
            documents.append(engagement)
    if problems:
        raise EngagementRejected(problems)
    return documents


def _prepared(document: dict[str, Any]) -> dict[str, Any]:
    errors = validator("engagement").errors(document)
    if errors:
        raise EngagementRejected([f"{document.get('id', '?')}: {error}" for error in errors])
    return apply_engagement_defaults(document)


async def read_catalog(settings: Settings) -> dict[str, dict[str, Any]]:
    """Return the engagement records currently on the topic, by id."""
    follower = CatalogFollower(settings)
    try:
        await follower.start()
    finally:
        await follower.stop()
    return dict(follower.records)


def _check_unique_names(
    documents: Sequence[dict[str, Any]], current: dict[str, dict[str, Any]]
) -> None:
    holders = {
        record["engagement"]["name"]: engagement_id
        for engagement_id, record in current.items()
        if record["engagement"]["status"] != "archived"
    }
    problems = []
    for engagement in documents:
        holder = holders.get(engagement["name"])
        if engagement["status"] != "archived" and holder not in (None, engagement["id"]):
            problems.append(
                f"{engagement['id']}: name {engagement['name']!r} is already used by "
                f"engagement {holder!r}"
            )
    if problems:
        raise EngagementRejected(problems)


async def apply_engagements(
    settings: Settings, documents: Sequence[dict[str, Any]], now_ms: int
) -> list[Change]:
    """Publish new or changed engagements with their next version."""
    documents = [_prepared(document) for document in documents]
    current = await read_catalog(settings)
    _check_unique_names(documents, current)
    changes: list[Change] = []
    updates: list[tuple[dict[str, Any] | None, dict[str, Any], str]] = []
    for engagement in documents:
        existing = current.get(engagement["id"])
        if existing is not None and existing["engagement"] == engagement:
            changes.append(Change(engagement["id"], "unchanged", existing["version"]))
            continue
        action = "create" if existing is None else "update"
        updates.append((existing, engagement, action))
    published = await _publish_versions(settings, updates, now_ms)
    return changes + published


async def change_status(settings: Settings, engagement_id: str, action: str, now_ms: int) -> Change:
    """Pause, resume or archive an engagement."""
    allowed, new_status = STATUS_ACTIONS[action]
    current = await read_catalog(settings)
    existing = current.get(engagement_id)
    if existing is None:
        raise EngagementRejected([f"no engagement {engagement_id!r}"])
    status = existing["engagement"]["status"]
    if status not in allowed:
        raise EngagementRejected(
            [
                f"cannot {action} {engagement_id!r}: it is {status} (allowed from: "
                f"{', '.join(sorted(allowed))})"
            ]
        )
    engagement = {**existing["engagement"], "status": new_status}
    if action == "resume":
        _check_unique_names([engagement], current)
    [change] = await _publish_versions(settings, [(existing, engagement, action)], now_ms)
    return change


async def delete_engagement(settings: Settings, engagement_id: str, now_ms: int) -> Change:
    """Publish a tombstone for an engagement, and log it."""
    current = await read_catalog(settings)
    existing = current.get(engagement_id)
    if existing is None:
        raise EngagementRejected([f"no engagement {engagement_id!r}"])
    change = {
        "engagement_id": engagement_id,
        "version": existing["version"],
        "action": "delete",
        "author": settings.author,
        "at": format_timestamp(now_ms),
        "changes": changed_fields(existing["engagement"], None),
    }
    await _publish(settings, [(engagement_id, None, change)])
    return Change(engagement_id, "delete", existing["version"])


async def _publish_versions(
    settings: Settings,
    updates: Sequence[tuple[dict[str, Any] | None, dict[str, Any], str]],
    now_ms: int,
) -> list[Change]:
    batch: list[tuple[str, dict[str, Any] | None, dict[str, Any]]] = []
    changes: list[Change] = []
    for existing, engagement, action in updates:
        version = 1 if existing is None else existing["version"] + 1
        record = {
            "engagement": engagement,
            "version": version,
            "updated_at": format_timestamp(now_ms),
            "author": settings.author,
        }
        validator("engagement-record").check(record)
        change = {
            "engagement_id": engagement["id"],
            "version": version,
            "action": action,
            "author": settings.author,
            "at": record["updated_at"],
            "changes": changed_fields(existing["engagement"] if existing else None, engagement),
        }
        batch.append((engagement["id"], record, change))
        changes.append(Change(engagement["id"], action, version))
    if batch:
        await _publish(settings, batch)
    return changes


async def _publish(
    settings: Settings, batch: Sequence[tuple[str, dict[str, Any] | None, dict[str, Any]]]
) -> None:
    producer = AIOKafkaProducer(
        **settings.kafka_producer_options(),
        client_id=f"{settings.app_id}-admin",
        transactional_id=f"{settings.topic_prefix}{settings.app_id}-admin-{uuid.uuid4().hex}",
    )
    await producer.start()
    try:
        async with producer.transaction():
            for engagement_id, record, change in batch:
                validator("engagement-change").check(change)
                key = engagement_id.encode()
                value = None if record is None else orjson.dumps(record)
                await producer.send(settings.topic("engagements"), value, key=key)
                await producer.send(
                    settings.topic("engagement-changelog"), orjson.dumps(change), key=key
                )
    finally:
        await producer.stop()
