"""The `declic engagements` commands: apply, list, export, pause, resume, archive, delete,
history, test-send."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

import orjson

from engine.cli_flags import add_command
from engine.cli_support import now_ms, settings_from_args
from engine.errors import DeclicError

_EXAMPLES = {
    "apply": """examples:
  declic engagements apply deploy/examples/*.yaml
  declic engagements apply --dry-run welcome-back.yaml""",
    "list": """examples:
  declic engagements list
  declic engagements list --json""",
    "export": """examples:
  declic engagements export welcome-back > welcome-back.yaml
  declic engagements export welcome-back spring-sale --output campaigns.yaml""",
    "history": """examples:
  declic engagements history welcome-back
  declic engagements history --json""",
    "test-send": """examples:
  declic engagements test-send welcome-back --user user-42
  declic engagements test-send premium-upsell --user user-42 --variant b""",
}


def add_engagement_commands(commands: Any) -> None:
    engagements = add_command(
        commands,
        "engagements",
        None,
        help="manage engagements",
        description="Manage engagements. Every change increments the engagement's version and "
        "is recorded, with its author, on the engagement-changelog topic.",
        epilog="examples:\n  declic engagements apply deploy/examples/*.yaml\n"
        "  declic engagements list",
    )
    actions = engagements.add_subparsers(dest="action", required=True, metavar="ACTION")
    apply = add_command(
        actions,
        "apply",
        "engagements-apply",
        help="validate and publish engagement files",
        description="Validate YAML or JSON engagement files and publish the new or changed ones. "
        "An invalid file is refused with the file, line, field and reason; nothing is "
        "published then. A dry run checks everything but the broker.",
        epilog=_EXAMPLES["apply"],
    )
    apply.add_argument("files", nargs="+", type=Path, metavar="FILE")
    apply.add_argument(
        "--dry-run", action="store_true", help="check everything but the broker; publish nothing"
    )
    apply.set_defaults(handler=_cmd_apply)
    listing = add_command(
        actions,
        "list",
        "engagements-read",
        help="list the engagements",
        description="List the engagements on the topic, with status, version and last change.",
        epilog=_EXAMPLES["list"],
    )
    listing.add_argument("--json", action="store_true", help="print JSON records")
    listing.set_defaults(handler=_cmd_list)
    export = add_command(
        actions,
        "export",
        "engagements-read",
        help="write engagements as YAML that apply accepts unchanged",
        description="Write engagements as they are published (defaults filled in, status "
        "included) as YAML documents: edit the file and apply it, or apply it elsewhere. The "
        "console's Export YAML gives the same text.",
        epilog=_EXAMPLES["export"],
    )
    export.add_argument("engagement_ids", nargs="+", metavar="ID")
    export.add_argument(
        "--output", type=Path, default=None, metavar="FILE", help="write here (default: stdout)"
    )
    export.set_defaults(handler=_cmd_export)
    for action, help_text in (
        ("pause", "stop an active engagement from delivering"),
        ("resume", "make a paused (or draft) engagement active"),
        ("archive", "retire an engagement for good (it frees its name)"),
        ("delete", "remove an engagement from the topic"),
    ):
        command = add_command(
            actions,
            action,
            "engagements-change",
            help=help_text,
            description=help_text[0].upper() + help_text[1:] + ".",
            epilog=f"example:\n  declic engagements {action} welcome-back",
        )
        command.add_argument("engagement_id", metavar="ID")
        command.set_defaults(handler=_cmd_change_status, change=action)
    history = add_command(
        actions,
        "history",
        "engagements-read",
        help="show who changed an engagement, when and what",
        description="Show who changed an engagement (or every one), when, and each field's "
        "old and new value, from the engagement-changelog topic.",
        epilog=_EXAMPLES["history"],
    )
    history.add_argument(
        "engagement_id", metavar="ID", nargs="?", help="one engagement (default: all)"
    )
    history.add_argument("--json", action="store_true", help="print JSON records")
    history.set_defaults(handler=_cmd_history)
    test_send = add_command(
        actions,
        "test-send",
        "engagements-change",
        help="send one test delivery of an engagement to a user",
        description="Produce one delivery marked test: true for a user, whatever the schedule, "
        "audience, percentage, caps and re-eligibility. A running worker answers; the delivery "
        "is printed. Test deliveries never count towards re-eligibility, caps or real metrics.",
        epilog=_EXAMPLES["test-send"],
    )
    test_send.add_argument("engagement_id", metavar="ID")
    test_send.add_argument("--user", required=True, metavar="USER_ID", help="who receives it")
    test_send.add_argument(
        "--variant", default=None, metavar="VARIANT", help="the variant (default: the user's)"
    )
    test_send.add_argument(
        "--wait",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how long to wait for the worker's answer (default 30)",
    )
    test_send.set_defaults(handler=_cmd_test_send)


def _cmd_apply(args: argparse.Namespace) -> int:
    from engine.admin.engagements import apply_engagements, load_and_validate

    # The dry run checks what the real apply would publish, records and author included,
    # so both read the settings; neither connects before every file is found valid.
    settings = settings_from_args(args)
    documents = load_and_validate(args.files, settings.author)
    if args.dry_run:
        for document in documents:
            print(f"{document['id']}: valid")
        return 0
    from engine.stream.topics import ensure_topics

    async def run() -> list[Any]:
        await ensure_topics(settings)
        return await apply_engagements(settings, documents, now_ms())

    for change in asyncio.run(run()):
        print(f"{change.engagement_id}: {change.action} (version {change.version})")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from engine.admin.engagements import read_catalog

    records = asyncio.run(read_catalog(settings_from_args(args)))
    if args.json:
        for record in records.values():
            sys.stdout.write(orjson.dumps(record).decode() + "\n")
        return 0
    print(f"{'ID':<24} {'STATUS':<9} {'VER':>4} {'TRIGGER':<28} {'UPDATED':<25} NAME")
    for engagement_id in sorted(records):
        record = records[engagement_id]
        engagement = record["engagement"]
        trigger = engagement["trigger"]
        trigger_text = trigger.get("name") or trigger["event"]
        print(
            f"{engagement_id:<24} {engagement['status']:<9} {record['version']:>4} "
            f"{trigger_text:<28.28} {record['updated_at']:<25} {engagement['name']}"
        )
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from engine.admin.engagement_yaml import engagement_yaml
    from engine.admin.engagements import EngagementRejected, read_catalog

    records = asyncio.run(read_catalog(settings_from_args(args)))
    missing = [
        engagement_id for engagement_id in args.engagement_ids if engagement_id not in records
    ]
    if missing:
        raise EngagementRejected([f"no engagement {engagement_id!r}" for engagement_id in missing])
    text = engagement_yaml(
        records[engagement_id]["engagement"] for engagement_id in args.engagement_ids
    )
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text, encoding="utf-8")
    return 0


def _cmd_change_status(args: argparse.Namespace) -> int:
    from engine.admin.engagements import change_status, delete_engagement

    settings = settings_from_args(args)
    if args.change == "delete":
        change = asyncio.run(delete_engagement(settings, args.engagement_id, now_ms()))
    else:
        change = asyncio.run(change_status(settings, args.engagement_id, args.change, now_ms()))
    print(f"{change.engagement_id}: {change.action} (version {change.version})")
    return 0


def _cmd_history(args: argparse.Namespace) -> int:
    from engine.admin.history import read_history

    changes = asyncio.run(read_history(settings_from_args(args), args.engagement_id))
    if args.json:
        for change in changes:
            sys.stdout.write(orjson.dumps(change).decode() + "\n")
        return 0
    if args.engagement_id and not changes:
        raise DeclicError(f"no history for engagement {args.engagement_id!r}")
    for change in changes:
        print(
            f"{change['at']}  v{change['version']:<3} {change['action']:<8} "
            f"{change['engagement_id']}  by {change['author']}"
        )
        for field in change["changes"]:
            old = orjson.dumps(field["old"]).decode()
            new = orjson.dumps(field["new"]).decode()
            print(f"    {field['field']}: {_shorten(old)} -> {_shorten(new)}")
    return 0


def _shorten(text: str, width: int = 70) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _cmd_test_send(args: argparse.Namespace) -> int:
    from engine.admin.test_send import request_test_send

    settings = settings_from_args(args)
    delivery = asyncio.run(
        request_test_send(settings, args.engagement_id, args.user, args.variant, args.wait)
    )
    sys.stdout.write(orjson.dumps(delivery, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0
