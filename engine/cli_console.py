"""The `declic console` commands: serve the campaign console; add-user, remove-user, users."""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from typing import Any

from engine.cli_flags import add_command
from engine.cli_support import settings_from_args
from engine.console.users import MIN_PASSWORD_LENGTH, ROLES
from engine.errors import DeclicError
from engine.log_setup import quiet_libraries

_EXAMPLES = {
    "console": """examples:
  declic console add-user alice --role admin
  declic console --console-port 6070
  declic console --console-user-header X-Forwarded-User --console-trusted-proxies 10.0.0.5""",
    "add-user": """examples:
  declic console add-user alice --role admin
  declic console add-user bob --role viewer --password-stdin
  declic console add-user carol@example.com --role editor --proxy-only""",
    "remove-user": """example:
  declic console remove-user bob""",
    "users": """example:
  declic console users --console-users-file /etc/declic/console-users.yaml""",
}


def add_console_commands(commands: Any) -> None:
    """Add `declic console` and its user actions."""
    console = add_command(
        commands,
        "console",
        "console",
        help="serve the campaign console, or manage its users",
        description="Run the campaign console, a web application to list, create, edit, pause, "
        "test-send and archive engagements and follow their figures, on "
        "http://DECLIC_CONSOLE_HOST:DECLIC_CONSOLE_PORT. Every page needs a user of "
        "DECLIC_CONSOLE_USERS_FILE (added with `declic console add-user`), or, for single "
        "sign-on, one named by DECLIC_CONSOLE_USER_HEADER on requests from "
        "DECLIC_CONSOLE_TRUSTED_PROXIES. Stop with SIGTERM or Ctrl-C.",
        epilog=_EXAMPLES["console"],
    )
    console.set_defaults(handler=_cmd_console)
    actions = console.add_subparsers(
        dest="console_action", required=False, metavar="ACTION", title="user actions"
    )

    def action(name: str, **options: Any) -> argparse.ArgumentParser:
        parser = add_command(actions, name, "console-users", epilog=_EXAMPLES[name], **options)
        # A setting given before the action (declic console --log-level DEBUG users) stays:
        # the action's own flags set nothing unless given.
        for flag in parser._actions:
            if flag.dest.startswith("setting_"):
                flag.default = argparse.SUPPRESS
        return parser

    add_user = action(
        "add-user",
        help="add a console user, or change their role or password",
        description="Add a user to DECLIC_CONSOLE_USERS_FILE, or replace their role and "
        "password. Roles: viewer (reads), editor (also creates, edits, pauses, resumes and "
        "test-sends), admin (also archives and manages users). The password, of at least "
        f"{MIN_PASSWORD_LENGTH} characters, is asked twice on the terminal, or read from "
        "one line of standard input; only its argon2id hash is written. A running console "
        "picks the change up at once.",
    )
    add_user.add_argument("name", metavar="NAME", help="1 to 64 letters, digits or . _ @ -")
    add_user.add_argument("--role", required=True, choices=ROLES, help="what the user may do")
    password = add_user.add_mutually_exclusive_group()
    password.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from one line of standard input",
    )
    password.add_argument(
        "--proxy-only",
        action="store_true",
        help="no password: the user logs in only through DECLIC_CONSOLE_USER_HEADER",
    )
    add_user.set_defaults(handler=_cmd_add_user)

    remove_user = action(
        "remove-user",
        help="remove a console user",
        description="Remove a user from DECLIC_CONSOLE_USERS_FILE; a running console logs "
        "them out at their next request.",
    )
    remove_user.add_argument("name", metavar="NAME")
    remove_user.set_defaults(handler=_cmd_remove_user)

    users = action(
        "users",
        help="list the console users",
        description="List the users of DECLIC_CONSOLE_USERS_FILE: name, role, and whether "
        "they log in with a password or through the proxy only.",
    )
    users.set_defaults(handler=_cmd_users)


def _cmd_console(args: argparse.Namespace) -> int:
    from engine.console.server import run_console

    settings = settings_from_args(args)
    settings.check_console()  # exit 2 before anything starts
    # A server logs what it does, like a worker: INFO unless asked otherwise.
    logging.getLogger().setLevel(settings.log_level)
    quiet_libraries(settings.log_level)
    return int(run_console(settings))


def _read_password(args: argparse.Namespace) -> str | None:
    if args.proxy_only:
        return None
    if args.password_stdin:
        line = sys.stdin.readline()
        password = line.removesuffix("\n").removesuffix("\r")
        if not password:
            raise DeclicError("--password-stdin: no password on standard input")
        return password
    if not sys.stdin.isatty():
        raise DeclicError(
            "no terminal to ask the password on: use --password-stdin (or --proxy-only)"
        )
    password = getpass.getpass(f"Password for {args.name}: ")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise DeclicError(
            f"password too short: at least {MIN_PASSWORD_LENGTH} characters, got {len(password)}"
        )
    if getpass.getpass("Same password again: ") != password:
        raise DeclicError("the two passwords differ; nothing written")
    return password


def _cmd_add_user(args: argparse.Namespace) -> int:
    from engine.console.users import check_new_user, write_user

    path = settings_from_args(args).console_users_file
    check_new_user(args.name, args.role, None)  # a bad name fails before the password prompt
    password = _read_password(args)
    created = write_user(path, args.name, args.role, password)
    how = "" if password is not None else ", proxy login only"
    if created:
        print(f"added {args.name} ({args.role}{how}) to {path}")
    else:
        print(f"updated {args.name} ({args.role}{how}) in {path}")
    return 0


def _cmd_remove_user(args: argparse.Namespace) -> int:
    from engine.console.users import remove_user

    path = settings_from_args(args).console_users_file
    if not remove_user(path, args.name):
        raise DeclicError(f"no user {args.name!r} in {path}")
    print(f"removed {args.name} from {path}")
    return 0


def _cmd_users(args: argparse.Namespace) -> int:
    from engine.console.users import load_users

    path = settings_from_args(args).console_users_file
    users = load_users(path)
    if not users:
        print(f"no users in {path}: add one with `declic console add-user NAME --role admin`")
        return 0
    width = max(len(name) for name in users)
    for user in sorted(users.values(), key=lambda user: user.name):
        how = "password" if user.password_hash is not None else "proxy only"
        print(f"{user.name:<{width}}  {user.role:<6}  {how}")
    return 0
