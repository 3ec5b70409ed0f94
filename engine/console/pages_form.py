"""GET and POST /engagements/new and /engagements/{id}/edit: one form, in the order an app
owner thinks of an engagement; its field names are the engagement's own paths.

A post is checked by the validator of `declic engagements apply` (and for the uniqueness of
id and name against the catalog), each problem shown next to its field; a valid one is
published as the CLI publishes it, by the logged-in user. `Save draft` publishes a draft,
`Launch` an active engagement, `Save` keeps the status of one already launched.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

from aiohttp import web

from engine.admin.engagements import EngagementRejected, engagement_file_problems, name_holder
from engine.console.auth import require
from engine.console.context import CONSOLE
from engine.console.forms import document_to_fields, fields_to_document, problem_fields
from engine.console.views import audience_estimate, known_users

# Names the page posts beside the engagement's paths.
PAGE_FIELDS: Final = frozenset({"csrf_token", "action", "experiment", "version"})
ACTION_STATUS: Final = {"draft": "draft", "launch": "active"}
NEW_ENGAGEMENT: Final[dict[str, Any]] = {
    "trigger": {"event": "custom"},
    "audience": {"filters": [], "percent": 100},
    "message": {"title": "", "body": ""},
}
_SLUG_DROP = re.compile(r"[^a-z0-9_-]+")


def slug(name: str) -> str:
    """Return an engagement id made from a name: ``Spring sale!`` -> ``spring-sale``."""
    text = _SLUG_DROP.sub("-", name.casefold()).strip("-_")
    return text[:64].rstrip("-_") or "engagement"


async def new_form(request: web.Request) -> web.Response:
    """GET /engagements/new, or ?duplicate=ID for a copy of an engagement as a draft."""
    require(request, "create")
    document: dict[str, Any] = dict(NEW_ENGAGEMENT)
    source = request.query.get("duplicate")
    if source:
        record = (await request.app[CONSOLE].data.snapshot()).records.get(source)
        if record is None:
            raise web.HTTPNotFound(text=f"no engagement {source!r} to duplicate")
        copied = record["engagement"]
        document = {
            **copied,
            "id": f"{copied['id'][:59]}-copy",
            "name": f"{copied['name'][:249]} (copy)",
            "status": "draft",
        }
    return await _form(request, None, document_to_fields(document), {}, [])


async def edit_form(request: web.Request) -> web.Response:
    """GET /engagements/{id}/edit."""
    require(request, "edit")
    record = await _record(request)
    return await _form(request, record, document_to_fields(record["engagement"]), {}, [])


async def save_new(request: web.Request) -> web.Response:
    """POST /engagements/new."""
    return await _save(request, None)


async def save_edit(request: web.Request) -> web.Response:
    """POST /engagements/{id}/edit."""
    return await _save(request, await _record(request))


async def _record(request: web.Request) -> dict[str, Any]:
    engagement_id = request.match_info["engagement_id"]
    record = (await request.app[CONSOLE].data.snapshot()).records.get(engagement_id)
    if record is None:
        raise web.HTTPNotFound(text=f"no engagement {engagement_id!r}")
    if record["engagement"]["status"] == "archived":
        raise web.HTTPConflict(text=f"{engagement_id!r} is archived: duplicate it instead")
    return record


async def _save(request: web.Request, record: dict[str, Any] | None) -> web.Response:
    session = require(request, "create" if record is None else "edit")
    console = request.app[CONSOLE]
    form = await request.post()
    action = str(form.get("action", "draft"))
    # Browsers send a textarea's line breaks as CRLF: keep the text as typed.
    pairs = _engagement_pairs(
        (
            (name, value.replace("\r\n", "\n"))
            for name, value in form.items()
            if isinstance(value, str)
        ),
        str(form.get("experiment", "single")),
    )
    shown = dict(pairs)
    if record is not None:
        pairs = [(name, value) for name, value in pairs if name != "id"]
        pairs.append(("id", record["engagement"]["id"]))
    elif not shown.get("id", "").strip():
        pairs = [(name, value) for name, value in pairs if name != "id"]
        pairs.append(("id", slug(shown.get("name", ""))))
    result = fields_to_document(pairs)
    document = result.document
    status = ACTION_STATUS.get(action)
    if status is None and record is not None and action == "save":
        status = record["engagement"]["status"]
    if status is None:
        raise web.HTTPBadRequest(text=f"unknown action {action!r}")
    document["status"] = status
    if record is not None:
        keep_empty(record["engagement"], document)
    errors: dict[str, list[str]] = {name: [text] for name, text in result.problems.items()}
    if not errors:
        for name, texts in problem_fields(engagement_file_problems(document)).items():
            errors.setdefault(name, []).extend(texts)
    snapshot = await console.data.snapshot()
    errors.update(_clashes(document, record, snapshot.records))
    # As read (blank rows dropped, renumbered): the names the problems are keyed by.
    shown = {**result.fields, "id": str(document.get("id", ""))}
    # The version the form was opened on: publishing over a later one would undo it.
    version = _version_of(form.get("version"), record)
    if errors:
        return await _form(request, record, shown, errors, [], status=400, version=version)
    try:
        await console.data.apply(document, session.user, console.wall_clock_ms(), version)
    except EngagementRejected as error:
        return await _form(request, record, shown, {}, error.problems, status=409, version=version)
    raise web.HTTPSeeOther(f"/engagements/{document['id']}?done={action}")


def _version_of(sent: object, record: Mapping[str, Any] | None) -> int | None:
    if record is None:
        return None
    if isinstance(sent, str) and sent.isascii() and sent.isdigit():
        return int(sent)
    version: int = record["version"]
    return version


def keep_empty(old: Mapping[str, Any], new: dict[str, Any]) -> None:
    """Put back in ``new`` the empty lists and objects of ``old`` it lacks: a form shows no
    row for them and so cannot send them, but publishing without them is a change."""
    for key, value in old.items():
        mine = new.get(key)
        if value in ([], {}) and key not in new:
            new[key] = type(value)()
        elif isinstance(value, Mapping) and isinstance(mine, dict):
            keep_empty(value, mine)
        elif isinstance(value, list) and isinstance(mine, list) and len(value) == len(mine):
            for before, after in zip(value, mine, strict=True):
                if isinstance(before, Mapping) and isinstance(after, dict):
                    keep_empty(before, after)


def _engagement_pairs(pairs: Iterable[tuple[str, str]], experiment: str) -> list[tuple[str, str]]:
    """Keep the engagement's fields; an experiment's variants replace the single message."""
    dropped = "message." if experiment == "ab" else "variants."
    return [
        (name, value)
        for name, value in pairs
        if name not in PAGE_FIELDS and not name.startswith(dropped)
    ]


def _clashes(
    document: Mapping[str, Any],
    record: Mapping[str, Any] | None,
    records: Mapping[str, Mapping[str, Any]],
) -> dict[str, list[str]]:
    """Name the engagement holding this id (for a new one) or this name."""
    errors: dict[str, list[str]] = {}
    engagement_id = document.get("id")
    if record is None and isinstance(engagement_id, str) and engagement_id in records:
        holder = records[engagement_id]["engagement"]
        errors["id"] = [f"already used by engagement {holder['name']!r}"]
    holder_id = name_holder(document, records)
    if holder_id is not None:
        errors["name"] = [f"already used by engagement {holder_id!r}"]
    return errors


async def _form(
    request: web.Request,
    record: Mapping[str, Any] | None,
    fields: Mapping[str, str],
    errors: Mapping[str, list[str]],
    general: list[str],
    *,
    status: int = 200,
    version: int | None = None,
) -> web.Response:
    console = request.app[CONSOLE]
    snapshot = await console.data.snapshot()
    engagement_id = None if record is None else record["engagement"]["id"]
    try:
        percent = float(fields.get("audience.percent") or 100)
    except ValueError:
        percent = 100.0
    context = {
        "record": record,
        "f": fields,
        "errors": errors,
        # Every problem is also listed at the top: some belong to no one input.
        "summary": general
        + [f"{name or 'engagement'}: {text}" for name, texts in errors.items() for text in texts],
        "experiment": "ab" if any(name.startswith("variants.") for name in fields) else "single",
        "event_names": await console.data.event_names(),
        "estimate": audience_estimate(
            snapshot.stats.get(engagement_id) if engagement_id else None,
            known_users(snapshot.stats),
            percent,
        ),
        "rows": lambda prefix, blank=1: _rows(fields, prefix, blank),
        "status": None if record is None else record["engagement"]["status"],
        "version": version if version is not None or record is None else record["version"],
    }
    render = console.extra["render"]
    response: web.Response = await render(request, "form.html", context, status)
    return response


def _rows(fields: Mapping[str, str], prefix: str, blank: int) -> list[int]:
    """Return the row numbers of a list field to show: those filled in, then ``blank`` more."""
    start = prefix + "."
    used = sorted(
        {
            int(rest.split(".", 1)[0])
            for name in fields
            if name.startswith(start) and (rest := name[len(start) :]).split(".", 1)[0].isdigit()
        }
    )
    following = (used[-1] + 1) if used else 0
    return used + list(range(following, following + blank))
