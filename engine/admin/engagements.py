"""Manage engagements on their compacted topic: validate, version, publish, and log each change.

Every change publishes, in one Kafka transaction, the engagement's new version
on the `engagements` topic and a record of who changed what on the
`engagement-changelog` topic, so the two never disagree.

An engagement file is checked for everything the publication needs but the catalog on
the broker (so `apply --dry-run` answers for the real apply): the schema, the compile,
numbers a record can carry, and the size of both records against what the producer
sends. Each problem is one line, ``FILE:LINE: FIELD.PATH: reason``.

``audience.hash_version`` (the bucketing formula) is never left to chance: a new
engagement that does not set it is published with version 2, and an existing one keeps
its own, so applying a file again never reshuffles users. Only a file (or form) that
names another version changes it, an ordinary change on the changelog.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from engine.admin.history import changed_fields
from engine.core.bucketing import NEW_HASH_VERSION
from engine.core.engagements import authoring_problems, engagement_problems
from engine.core.fields import FieldProblem
from engine.core.timestamps import format_timestamp
from engine.engagement_files import (
    EngagementFileError,
    EngagementSource,
    load_engagement_sources,
)
from engine.errors import DeclicError
from engine.schemas import apply_engagement_defaults, validator
from engine.settings import Settings
from engine.stream.catalog_follower import CatalogFollower

# The largest record the admin producer sends, counted as the producer counts it (key,
# value and the framing of a batch holding it alone): aiokafka's default max_request_size,
# given explicitly to the producer below. The topics take more (Kafka's default
# max.message.bytes is 1,048,588), so this is the bound both records of a change must fit.
MAX_RECORD_BYTES: Final = 1_048_576
# Who publishes, when the caller does not say: the longest author, the largest records.
_LONGEST_AUTHOR: Final = "-" * 256

# Status changes: action -> (statuses it applies to, resulting status).
STATUS_ACTIONS: dict[str, tuple[frozenset[str], str]] = {
    "pause": (frozenset({"active"}), "paused"),
    "resume": (frozenset({"paused", "draft"}), "active"),
    "archive": (frozenset({"draft", "active", "paused"}), "archived"),
}


class EngagementRejected(DeclicError):
    """Raise when engagements are invalid or a change is not allowed; nothing was published.

    ``problems`` holds one line per problem (``FILE:LINE: FIELD.PATH: reason`` for a
    file); str() joins them with newlines, and the command line prints each line as a
    ``declic: error:`` line.
    """

    def __init__(self, problems: list[str]) -> None:
        unique = list(dict.fromkeys(problems))
        super().__init__("\n".join(unique))
        self.problems = unique


@dataclass(frozen=True, slots=True)
class Change:
    """What a command did to one engagement."""

    engagement_id: str
    action: str  # create, update, unchanged, pause, resume, archive, delete
    version: int


def load_and_validate(paths: Sequence[Path], author: str | None = None) -> list[dict[str, Any]]:
    """Read engagement files and check everything their publication by ``author`` needs
    but the catalog on the broker; return the engagements, defaults filled in.

    Raise EngagementRejected with every problem of every file, one per line as
    ``FILE:LINE: FIELD.PATH: reason``. Without ``author``, record sizes are checked for
    the longest author allowed.
    """
    problems: list[str] = []
    documents: list[dict[str, Any]] = []
    ids: dict[str, str] = {}
    names: dict[str, str] = {}
    for path in paths:
        try:
            sources = load_engagement_sources(path)
        except EngagementFileError as error:
            problems.append(str(error))
            continue
        for source in sources:
            found = engagement_file_problems(source.document)
            if found:
                found.sort(key=lambda problem: source.line_of(problem.path))
                problems += [_located(source, problem) for problem in found]
                continue
            engagement = apply_engagement_defaults(source.document)
            clash = _clash(source, engagement, ids, names)
            if clash is not None:
                problems.append(clash)
                continue
            # As the real apply would publish it, if new: the time is of fixed width.
            record, change = _version_records(
                None,
                with_hash_version(engagement, None),
                "create",
                version=1,
                author=author or _LONGEST_AUTHOR,
                at=format_timestamp(0),
            )
            where = f"{source.file}:{source.line}: engagement {engagement['id']!r}"
            problems += [f"{where}: {problem}" for problem in _record_problems(record, change)]
            documents.append(engagement)
    if problems:
        raise EngagementRejected(problems)
    return documents


def engagement_file_problems(document: Mapping[str, Any]) -> list[FieldProblem]:
    """Return every problem of an engagement document as written (no defaults yet), each
    at its field, in plain words; empty when it can be published."""
    problems = validator("engagement").problems(document)
    if problems:
        # The schema's problems stop the compile, not the checks that need no compile.
        reported = {problem.path for problem in problems}
        return problems + [
            problem for problem in authoring_problems(document) if problem.path not in reported
        ]
    return engagement_problems(apply_engagement_defaults(document))


def _located(source: EngagementSource, problem: FieldProblem) -> str:
    return f"{source.file}:{source.line_of(problem.path)}: {problem}"


def _clash(
    source: EngagementSource,
    engagement: dict[str, Any],
    ids: dict[str, str],
    names: dict[str, str],
) -> str | None:
    """Return the problem if another engagement of the files has this id, or this name
    while neither is archived; else remember them."""
    here = f"{source.file}:{source.line_of(('id',))}"
    holder = ids.get(engagement["id"])
    if holder is not None:
        return f"{here}: id: {engagement['id']!r} is also defined at {holder}"
    if engagement["status"] != "archived":
        name_holder = names.get(engagement["name"])
        if name_holder is not None:
            line = source.line_of(("name",))
            return (
                f"{source.file}:{line}: name: {engagement['name']!r} is also used at {name_holder}"
            )
        names[engagement["name"]] = f"{source.file}:{source.line_of(('name',))}"
    ids[engagement["id"]] = here
    return None


def with_hash_version(
    engagement: dict[str, Any], existing: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Return ``engagement`` as published over ``existing`` (its current record, None when
    new): without ``audience.hash_version``, a new engagement gets version 2 and an
    existing one keeps its own (absent stays absent, meaning version 1).

    The schema has no default for it on purpose: a default would read every engagement
    stored before versions as version 2, and reshuffle its users.
    """
    audience = engagement.get("audience")
    if not isinstance(audience, Mapping) or "hash_version" in audience:
        return engagement
    if existing is None:
        version: Any = NEW_HASH_VERSION
    else:
        current = existing["engagement"].get("audience")
        if not isinstance(current, Mapping) or "hash_version" not in current:
            return engagement
        version = current["hash_version"]
    return {**engagement, "audience": {**audience, "hash_version": version}}


def _prepared(document: dict[str, Any]) -> dict[str, Any]:
    problems = engagement_file_problems(document)
    if problems:
        owner = document.get("id", "?")
        raise EngagementRejected([f"{owner}: {problem}" for problem in problems])
    return apply_engagement_defaults(document)


async def read_catalog(settings: Settings) -> dict[str, dict[str, Any]]:
    """Return the engagement records currently on the topic, by id."""
    follower = CatalogFollower(settings)
    try:
        await follower.start()
    finally:
        await follower.stop()
    return dict(follower.records)


def name_holder(
    engagement: Mapping[str, Any], current: Mapping[str, Mapping[str, Any]]
) -> str | None:
    """Return the id of another engagement, not archived, holding ``engagement``'s name
    (None if there is none, or if ``engagement`` is archived: archiving frees a name)."""
    if engagement.get("status") == "archived":
        return None
    for engagement_id, record in current.items():
        other = record["engagement"]
        if (
            engagement_id != engagement.get("id")
            and other["status"] != "archived"
            and other["name"] == engagement.get("name")
        ):
            return engagement_id
    return None


def _check_unique_names(
    documents: Sequence[dict[str, Any]], current: dict[str, dict[str, Any]]
) -> None:
    problems = []
    for engagement in documents:
        holder = name_holder(engagement, current)
        if holder is not None:
            problems.append(
                f"{engagement['id']}: name {engagement['name']!r} is already used by "
                f"engagement {holder!r}"
            )
    if problems:
        raise EngagementRejected(problems)


async def apply_engagements(
    settings: Settings,
    documents: Sequence[dict[str, Any]],
    now_ms: int,
    expected_versions: Mapping[str, int | None] | None = None,
) -> list[Change]:
    """Publish new or changed engagements with their next version.

    ``expected_versions`` (engagement id -> the version the change was made from, None
    for a new one) refuses, publishing nothing, a change made from a version that is no
    longer the current one: someone else's change in between would be overwritten.
    """
    documents = [_prepared(document) for document in documents]
    current = await read_catalog(settings)
    check_versions(expected_versions or {}, current)
    _check_unique_names(documents, current)
    changes: list[Change] = []
    updates: list[tuple[dict[str, Any] | None, dict[str, Any], str]] = []
    for document in documents:
        existing = current.get(document["id"])
        engagement = with_hash_version(document, existing)
        if existing is not None and existing["engagement"] == engagement:
            changes.append(Change(engagement["id"], "unchanged", existing["version"]))
            continue
        action = "create" if existing is None else "update"
        updates.append((existing, engagement, action))
    published = await _publish_versions(settings, updates, now_ms)
    return changes + published


def check_versions(
    expected: Mapping[str, int | None], current: Mapping[str, Mapping[str, Any]]
) -> None:
    """Raise EngagementRejected for each engagement whose current version is not the one
    expected (None: that it does not exist)."""
    problems = []
    for engagement_id, version in expected.items():
        record = current.get(engagement_id)
        if record is None and version is None:
            continue
        if record is None:
            problems.append(f"{engagement_id}: was deleted since version {version} was read")
        elif version is None:
            problems.append(
                f"{engagement_id}: id already used by engagement {record['engagement']['name']!r}"
            )
        elif record["version"] != version:
            problems.append(
                f"{engagement_id}: changed since version {version} was read: version "
                f"{record['version']} by {record['author']} at {record['updated_at']}; "
                "reload it, nothing was saved"
            )
    if problems:
        raise EngagementRejected(problems)


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


def _version_records(
    existing: dict[str, Any] | None,
    engagement: dict[str, Any],
    action: str,
    *,
    version: int,
    author: str,
    at: str,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return the engagements record of a new version, and its engagement-changelog record."""
    record = {"engagement": engagement, "version": version, "updated_at": at, "author": author}
    change = {
        "engagement_id": engagement["id"],
        "version": version,
        "action": action,
        "author": author,
        "at": at,
        "changes": changed_fields(existing["engagement"] if existing else None, engagement),
    }
    return record, change


def _record_problems(record: dict[str, Any] | None, change: dict[str, Any]) -> list[str]:
    """Return why the two records of one change cannot be published: either is invalid, or
    larger than the producer sends."""
    engagement_id = change["engagement_id"]
    problems = [f"{violation}" for violation in validator("engagement-change").errors(change)]
    if record is not None:
        problems += [f"{violation}" for violation in validator("engagement-record").errors(record)]
    if problems:
        return problems
    key = engagement_id.encode()
    try:
        values = (
            ("engagements", None if record is None else orjson.dumps(record)),
            ("engagement-changelog", orjson.dumps(change)),
        )
    except orjson.JSONEncodeError as error:  # ruled out by the checks before; never publish
        return [f"cannot be written as JSON: {error}"]
    for topic, value in values:
        size = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, [])
        if size > MAX_RECORD_BYTES:
            problems.append(
                f"its record on the {topic} topic would take {size} bytes with Kafka's "
                f"framing, more than the {MAX_RECORD_BYTES} a record may take: shorten the "
                "messages or the filter lists"
            )
    return problems


async def _publish_versions(
    settings: Settings,
    updates: Sequence[tuple[dict[str, Any] | None, dict[str, Any], str]],
    now_ms: int,
) -> list[Change]:
    batch: list[tuple[str, dict[str, Any] | None, dict[str, Any]]] = []
    changes: list[Change] = []
    for existing, engagement, action in updates:
        version = 1 if existing is None else existing["version"] + 1
        record, change = _version_records(
            existing,
            engagement,
            action,
            version=version,
            author=settings.author,
            at=format_timestamp(now_ms),
        )
        batch.append((engagement["id"], record, change))
        changes.append(Change(engagement["id"], action, version))
    if batch:
        await _publish(settings, batch)
    return changes


async def _publish(
    settings: Settings, batch: Sequence[tuple[str, dict[str, Any] | None, dict[str, Any]]]
) -> None:
    # Every record is checked and encoded before connecting: a refusal publishes nothing.
    problems = [
        f"engagement {engagement_id!r}: {problem}"
        for engagement_id, record, change in batch
        for problem in _record_problems(record, change)
    ]
    if problems:
        raise EngagementRejected(problems)
    encoded = [
        (
            engagement_id.encode(),
            None if record is None else orjson.dumps(record),
            orjson.dumps(change),
        )
        for engagement_id, record, change in batch
    ]
    producer = AIOKafkaProducer(
        **settings.kafka_producer_options(),
        client_id=f"{settings.app_id}-admin",
        transactional_id=f"{settings.topic_prefix}{settings.app_id}-admin-{uuid.uuid4().hex}",
        max_request_size=MAX_RECORD_BYTES,
    )
    try:
        await producer.start()
        async with producer.transaction():
            for key, value, change_value in encoded:
                await producer.send(settings.topic("engagements"), value, key=key)
                await producer.send(settings.topic("engagement-changelog"), change_value, key=key)
    finally:
        await producer.stop()
