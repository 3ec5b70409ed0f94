"""The `declic users` commands: forget (erase a user) and show (what Declic holds)."""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
from typing import Any

import orjson

from engine.cli_flags import add_command
from engine.cli_support import settings_from_args
from engine.errors import DeclicError

_EXAMPLES = {
    "forget": """examples:
  declic users forget user-42 --author alice
  declic users forget user-42 --author alice --json""",
    "show": """examples:
  declic users show user-42
  declic users show user-42 --json""",
}


def add_user_commands(commands: Any) -> None:
    users = add_command(
        commands,
        "users",
        None,
        help="erase a user, or show what Declic holds about one",
        description="Erase everything Declic's state holds about a user, or print it (for an "
        "access request, or to see why a user did not get a message).",
        epilog="examples:\n  declic users show user-42\n"
        "  declic users forget user-42 --author alice",
    )
    actions = users.add_subparsers(dest="action", required=True, metavar="ACTION")
    forget = add_command(
        actions,
        "forget",
        "engagements-change",
        help="erase everything Declic's state holds about a user",
        description="Remove the user's profile, histories, counted events, stored and pending "
        "deliveries from the worker owning them and from the state changelog (tombstones, "
        "which compaction acts on), and record the request id, author and times, with no "
        "data of the user, on the user-audit topic. First waits for the workers to process "
        "the user's records already on the other input topics (else they would undo the "
        "erasure; nothing is sent if they do not in time), then for that record: once "
        "printed, the erasure is committed. The user's next event is a new user's. Records already "
        "on the input and output topics stay until their retention removes them.",
        epilog=_EXAMPLES["forget"],
    )
    forget.add_argument("user_id", metavar="USER_ID")
    forget.add_argument(
        "--wait",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how long to wait, for the workers to catch up and for their answer (default 30)",
    )
    forget.add_argument("--json", action="store_true", help="print the audit record as JSON")
    forget.set_defaults(handler=_cmd_forget)
    show = add_command(
        actions,
        "show",
        "engagements-read",
        help="print what Declic's state holds about a user",
        description="Read the user's partition of the state changelog to its end (no worker "
        "needed) and print their profile, last delivery per engagement, counted events, "
        "conversion watches, stored deliveries with the interactions seen, and pending "
        "deliveries. The read takes as long as a worker's recovery of that partition.",
        epilog=_EXAMPLES["show"],
    )
    show.add_argument("user_id", metavar="USER_ID")
    show.add_argument("--json", action="store_true", help="print it as JSON")
    show.set_defaults(handler=_cmd_show)


def _cmd_forget(args: argparse.Namespace) -> int:
    from engine.admin.users import forget_user

    if not args.wait > 0 or not math.isfinite(args.wait):
        # Checked before anything is sent: a request sent is carried out, answer or not.
        raise DeclicError(f"--wait: expected seconds above 0, got {args.wait:g}")
    settings = settings_from_args(args)
    audit = asyncio.run(forget_user(settings, args.user_id, args.wait))
    if args.json:
        sys.stdout.write(orjson.dumps(audit).decode() + "\n")
        return 0
    removed = audit["removed"]
    print(
        f"forgot user {args.user_id}: removed {removed['user_state']} user state, "
        f"{removed['deliveries']} deliveries, {removed['pending_deliveries']} pending "
        f"deliveries (request {audit['request_id']} by {audit['author']}, partition "
        f"{audit['partition']}, done at {audit['done_at']})"
    )
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from engine.admin.users import render_user, show_user

    view = asyncio.run(show_user(settings_from_args(args), args.user_id))
    if args.json:
        sys.stdout.write(orjson.dumps(view.to_json_dict(), option=orjson.OPT_INDENT_2).decode())
        sys.stdout.write("\n")
        return 0
    sys.stdout.write(render_user(view))
    return 0
