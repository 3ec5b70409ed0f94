"""The console's users: who may log in, with which role, from the users file.

The file (``DECLIC_CONSOLE_USERS_FILE``, written by ``declic console add-user``) is YAML::

    # Written by `declic console add-user`; password hashes are argon2id.
    users:
      "alice": {role: admin, password_hash: "$argon2id$v=19$m=65536,t=3,p=4$..."}
      "bob": {role: viewer, password_hash: null}

``role`` is one of ``viewer`` (reads), ``editor`` (also creates, edits, pauses, resumes and
test-sends) and ``admin`` (also archives and manages users). ``password_hash`` is an argon2
hash; null (or absent) means the user has no password and logs in only through the
authenticating proxy's header (``DECLIC_CONSOLE_USER_HEADER``), with that role rather than
the viewer role proxy users not listed get. ``declic console add-user`` accepts names of 1 to
64 letters, digits and ``. _ @ -``; a name written by hand may be anything a proxy header can
carry (1 to 256 characters, no control characters), quoted.

The console reads the file again whenever it changes: adding a user, changing a role or
removing a user needs no restart, and a removed user is logged out at their next request.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from engine.errors import ConfigError, DeclicError

log = logging.getLogger("declic.console")

ROLES = ("viewer", "editor", "admin")
ACTIONS = (
    "view",
    "create",
    "edit",
    "pause",
    "resume",
    "test_send",
    "archive",
    "manage_users",
)
_EDITOR = ("view", "create", "edit", "pause", "resume", "test_send")
ROLE_ACTIONS: dict[str, frozenset[str]] = {
    "viewer": frozenset({"view"}),
    "editor": frozenset(_EDITOR),
    "admin": frozenset(ACTIONS),
}
"""What each role may do."""
ACTION_WORDS: dict[str, str] = {
    "view": "view engagements",
    "create": "create engagements",
    "edit": "edit engagements",
    "pause": "pause engagements",
    "resume": "resume engagements",
    "test_send": "send test deliveries",
    "archive": "archive engagements",
    "manage_users": "manage users",
}
"""How a refusal names each action: "bob (viewer) may not edit engagements"."""

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024
NAME_PATTERN = re.compile(r"[A-Za-z0-9._@-]{1,64}")
MAX_NAME_LENGTH = 256
HEADER_COMMENT = "# Written by `declic console add-user`; password hashes are argon2id."
_FIELDS = frozenset({"role", "password_hash"})


def may(role: str, action: str) -> bool:
    """Return whether `role` may do `action`; raise ValueError for an unknown action."""
    if action not in ACTION_WORDS:
        raise ValueError(f"unknown console action {action!r}; expected one of {ACTIONS}")
    return action in ROLE_ACTIONS.get(role, frozenset())


@dataclass(frozen=True, slots=True)
class ConsoleUser:
    """One user of the users file. No password hash: logs in through the proxy only."""

    name: str
    role: str
    password_hash: str | None


def valid_name(name: str) -> bool:
    """Return whether `name` can name a user: 1 to 256 characters, no control characters
    (the rule for the proxy's user header too)."""
    return 0 < len(name) <= MAX_NAME_LENGTH and not any(
        ord(char) < 32 or 127 <= ord(char) < 160 or 0xD800 <= ord(char) < 0xE000 for char in name
    )


def load_users(path: Path) -> dict[str, ConsoleUser]:
    """Return the users of the file, by name ({} if there is no file); raise ConfigError
    naming console_users_file if the file is malformed."""
    import yaml  # here, not at import: `declic --help` stays fast

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or error
        raise _malformed(path, f"cannot be read ({reason})") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or "invalid"
        raise _malformed(path, f"not valid YAML ({problem}{where})") from None
    if document is None:
        return {}
    if not isinstance(document, dict) or set(document) - {"users"}:
        raise _malformed(path, 'expected a mapping with one key, "users"')
    entries = document.get("users") or {}
    if not isinstance(entries, dict):
        raise _malformed(path, '"users" must map user names to {role, password_hash}')
    users = {}
    for name, entry in entries.items():
        users[str(name)] = _user(path, name, entry)
    return users


def _user(path: Path, name: Any, entry: Any) -> ConsoleUser:
    if not isinstance(name, str):
        raise _malformed(path, f"user {name!r}: quote the name, it must be text")
    if not valid_name(name):
        raise _malformed(path, f"user {name!r}: expected 1 to 256 characters, no control ones")
    if not isinstance(entry, dict):
        raise _malformed(path, f"user {name!r}: expected {{role: ..., password_hash: ...}}")
    unknown = sorted(str(key) for key in set(entry) - _FIELDS)
    if unknown:
        raise _malformed(path, f"user {name!r}: unknown field {unknown[0]!r}")
    role = entry.get("role")
    if role not in ROLES:
        raise _malformed(path, f"user {name!r}: role must be one of {', '.join(ROLES)}")
    password_hash = entry.get("password_hash")
    if password_hash is not None and (
        not isinstance(password_hash, str) or not password_hash.startswith("$argon2")
    ):
        raise _malformed(
            path, f"user {name!r}: password_hash must be an argon2 hash ($argon2id$...) or null"
        )
    return ConsoleUser(name, role, password_hash)


def _malformed(path: Path, text: str) -> ConfigError:
    return ConfigError([("console_users_file", f"{path}: {text}")])


class UsersFile:
    """The users of a file, read again when the file changes (its inode, size or mtime).

    The first read raises ConfigError if the file is malformed; later, a malformed file
    keeps the last good users, and is logged once.
    """

    _UNREAD = (-1, -1, -1)

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int, int] | None = self._UNREAD
        self._users: dict[str, ConsoleUser] = {}
        self._read_once = False

    def __call__(self) -> Mapping[str, ConsoleUser]:
        try:
            stat = self.path.stat()
            stamp: tuple[int, int, int] | None = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        except FileNotFoundError:
            stamp = None
        except OSError:
            stamp = (-2, -2, -2)  # unreadable: load_users says why
        if stamp == self._stamp:
            return self._users
        self._stamp = stamp
        try:
            users = load_users(self.path)
        except ConfigError as error:
            if not self._read_once:
                self._stamp = self._UNREAD
                raise
            log.error("console users file unchanged in memory: %s", error.render({}))
            return self._users
        self._users = users
        self._read_once = True
        return users


def check_new_user(name: str, role: str, password: str | None) -> None:
    """Raise DeclicError unless `add-user` may write this user."""
    if not NAME_PATTERN.fullmatch(name):
        raise DeclicError(
            f"user name {name!r}: expected 1 to 64 letters, digits or . _ @ - characters"
        )
    if role not in ROLES:
        raise DeclicError(f"role {role!r}: expected one of {', '.join(ROLES)}")
    if password is not None and len(password) < MIN_PASSWORD_LENGTH:
        raise DeclicError(
            f"password too short: at least {MIN_PASSWORD_LENGTH} characters, got {len(password)}"
        )
    if password is not None and len(password) > MAX_PASSWORD_LENGTH:
        raise DeclicError(f"password too long: at most {MAX_PASSWORD_LENGTH} characters")


def write_user(path: Path, name: str, role: str, password: str | None) -> bool:
    """Add or replace a user (no password: proxy login only); return True if added.

    Raise DeclicError for an invalid name, role or password (at least 12 characters),
    ConfigError if the existing file is malformed (it is left as it is).
    """
    check_new_user(name, role, password)
    users = load_users(path)
    password_hash = PasswordHasher().hash(password) if password is not None else None
    created = name not in users
    users[name] = ConsoleUser(name, role, password_hash)
    _write(path, users)
    return created


def remove_user(path: Path, name: str) -> bool:
    """Remove a user; return False if there was none of that name."""
    users = load_users(path)
    if users.pop(name, None) is None:
        return False
    _write(path, users)
    return True


def render_users(users: Mapping[str, ConsoleUser]) -> str:
    """Return the file's text for these users."""
    lines = [HEADER_COMMENT, "users:" if users else "users: {}"]
    for user in users.values():
        # JSON strings are YAML double-quoted strings; quoting keeps names like "null" text.
        password_hash = orjson.dumps(user.password_hash).decode()
        lines.append(
            f"  {orjson.dumps(user.name).decode()}: "
            f"{{role: {user.role}, password_hash: {password_hash}}}"
        )
    return "\n".join(lines) + "\n"


def _write(path: Path, users: Mapping[str, ConsoleUser]) -> None:
    """Replace the file atomically (mode 0600), creating its directories (mode 0700)."""
    missing = [parent for parent in path.absolute().parents if not parent.exists()]
    for directory in reversed(missing):
        directory.mkdir(mode=0o700, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=".tmp", dir=path.parent
    )
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            os.fchmod(file.fileno(), 0o600)
            file.write(render_users(users))
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    with contextlib.suppress(OSError):
        directory_descriptor = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory_descriptor)
        finally:
            os.close(directory_descriptor)


@functools.cache
def _dummy_hash() -> str:
    """A hash no password given matches, verified for unknown users (same timing)."""
    return PasswordHasher().hash(os.urandom(32).hex())


def check_password(
    users: Mapping[str, ConsoleUser], name: str, password: str
) -> ConsoleUser | None:
    """Return the user if `password` is theirs, else None (unknown user, no password, wrong
    password: one argon2 verification each way)."""
    user = users.get(name)
    password_hash = user.password_hash if user is not None else None
    try:
        # Passwords longer than add-user accepts are wrong; truncated, they cost no more.
        PasswordHasher().verify(password_hash or _dummy_hash(), password[:MAX_PASSWORD_LENGTH])
    except (VerificationError, InvalidHashError):
        return None
    if password_hash is None or len(password) > MAX_PASSWORD_LENGTH:
        return None
    return user
