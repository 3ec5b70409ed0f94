"""The console users file, roles, passwords and `declic console add-user|remove-user|users`."""

from __future__ import annotations

import io
import logging
import shlex
import stat
import sys
from pathlib import Path

import argon2
import pytest

from engine.cli import build_parser, main
from engine.console.users import (
    ACTION_WORDS,
    ACTIONS,
    ROLE_ACTIONS,
    ROLES,
    ConsoleUser,
    UsersFile,
    check_password,
    load_users,
    may,
    remove_user,
    render_users,
    write_user,
)
from engine.errors import ConfigError, DeclicError

PASSWORD = "correct horse battery"


@pytest.fixture
def users_file(tmp_path: Path) -> Path:
    return tmp_path / "conf" / "console-users.yaml"


# --- roles -------------------------------------------------------------------------------------


def test_roles_allow_what_the_issue_says() -> None:
    assert ROLES == ("viewer", "editor", "admin")
    assert set(ROLE_ACTIONS) == set(ROLES)
    assert set(ACTION_WORDS) == set(ACTIONS)
    assert [a for a in ACTIONS if may("viewer", a)] == ["view"]
    assert [a for a in ACTIONS if may("editor", a)] == [
        "view",
        "create",
        "edit",
        "pause",
        "resume",
        "test_send",
    ]
    assert all(may("admin", action) for action in ACTIONS)
    assert not may("nobody", "view")


def test_an_unknown_action_fails_loudly() -> None:
    with pytest.raises(ValueError, match="unknown console action 'pasue'"):
        may("admin", "pasue")


# --- the file ----------------------------------------------------------------------------------


def test_missing_file_has_no_users(users_file: Path) -> None:
    assert load_users(users_file) == {}


def test_write_read_replace_remove(users_file: Path) -> None:
    assert write_user(users_file, "alice", "admin", PASSWORD) is True
    assert write_user(users_file, "bob.smith@example.com", "viewer", None) is True
    users = load_users(users_file)
    assert list(users) == ["alice", "bob.smith@example.com"]
    alice = users["alice"]
    assert alice.role == "admin" and alice.password_hash is not None
    assert alice.password_hash.startswith("$argon2id$")
    assert PASSWORD not in users_file.read_text()
    assert users["bob.smith@example.com"] == ConsoleUser("bob.smith@example.com", "viewer", None)
    text = users_file.read_text()
    assert text.startswith("# Written by `declic console add-user`")

    assert write_user(users_file, "alice", "editor", "another long password") is False
    replaced = load_users(users_file)["alice"]
    assert replaced.role == "editor" and replaced.password_hash != alice.password_hash

    assert remove_user(users_file, "alice") is True
    assert remove_user(users_file, "alice") is False
    assert list(load_users(users_file)) == ["bob.smith@example.com"]
    assert remove_user(users_file, "bob.smith@example.com") is True
    assert load_users(users_file) == {}


def test_file_is_private_and_written_atomically(users_file: Path) -> None:
    write_user(users_file, "alice", "admin", PASSWORD)
    assert stat.S_IMODE(users_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(users_file.parent.stat().st_mode) == 0o700
    write_user(users_file, "bob", "viewer", PASSWORD)
    assert stat.S_IMODE(users_file.stat().st_mode) == 0o600
    assert [p.name for p in users_file.parent.iterdir()] == [users_file.name]  # no temp left


def test_names_that_yaml_would_read_as_other_things_stay_text(users_file: Path) -> None:
    for name in ("null", "true", "123", "1.5", "no"):
        write_user(users_file, name, "viewer", None)
    assert list(load_users(users_file)) == ["null", "true", "123", "1.5", "no"]


def test_written_file_is_the_documented_format() -> None:
    text = render_users({"alice": ConsoleUser("alice", "admin", "$argon2id$v=19$x")})
    assert text == (
        "# Written by `declic console add-user`; password hashes are argon2id.\n"
        "users:\n"
        '  "alice": {role: admin, password_hash: "$argon2id$v=19$x"}\n'
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("users: [alice]\n", '"users" must map user names'),
        ("people: {}\n", 'one key, "users"'),
        ("users:\n  alice: {role: root}\n", "user 'alice': role must be one of viewer"),
        ("users:\n  alice: admin\n", "user 'alice': expected {role"),
        ("users:\n  alice: {role: admin, password: x}\n", "user 'alice': unknown field"),
        ("users:\n  bob: {role: admin, password_hash: plain}\n", "user 'bob': password_hash"),
        ("users:\n  12: {role: admin}\n", "user 12: quote the name"),
        ("users: {alice: [\n", "not valid YAML"),
    ],
)
def test_malformed_file_names_the_setting_the_file_and_the_user(
    users_file: Path, text: str, message: str
) -> None:
    users_file.parent.mkdir()
    users_file.write_text(text)
    with pytest.raises(ConfigError) as raised:
        load_users(users_file)
    ((field, problem),) = raised.value.problems
    assert field == "console_users_file"
    assert problem.startswith(f"{users_file}: ")
    assert message in problem


def test_a_malformed_file_is_never_overwritten(users_file: Path) -> None:
    users_file.parent.mkdir()
    users_file.write_text("users: [oops]\n")
    with pytest.raises(ConfigError):
        write_user(users_file, "alice", "admin", PASSWORD)
    assert users_file.read_text() == "users: [oops]\n"


def test_users_file_is_read_again_when_it_changes(
    users_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    users = UsersFile(users_file)
    assert users() == {}
    write_user(users_file, "alice", "admin", None)
    assert list(users()) == ["alice"]
    first = users()
    assert users() is first  # unchanged: not read again
    write_user(users_file, "bob", "editor", None)
    assert list(users()) == ["alice", "bob"]

    # Malformed after good: the last good users stay, and the error is logged once.
    users_file.write_text("users: {alice: {role: king}}\n")
    with caplog.at_level(logging.ERROR, logger="declic.console"):
        assert list(users()) == ["alice", "bob"]
        assert list(users()) == ["alice", "bob"]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "role must be one of" in errors[0].getMessage()

    users_file.write_text("users: {carol: {role: viewer}}\n")
    assert list(users()) == ["carol"]
    users_file.unlink()
    assert users() == {}


def test_a_malformed_file_at_first_read_is_an_error(users_file: Path) -> None:
    users_file.parent.mkdir()
    users_file.write_text("users: 3\n")
    with pytest.raises(ConfigError):
        UsersFile(users_file)()


@pytest.mark.parametrize(
    ("name", "role", "password", "message"),
    [
        ("", "admin", PASSWORD, "user name ''"),
        ("a b", "admin", PASSWORD, "1 to 64 letters"),
        ("x" * 65, "admin", PASSWORD, "1 to 64 letters"),
        ("alice", "root", PASSWORD, "role 'root'"),
        ("alice", "admin", "short", "at least 12 characters"),
    ],
)
def test_write_user_refuses(
    users_file: Path, name: str, role: str, password: str, message: str
) -> None:
    with pytest.raises(DeclicError, match=message):
        write_user(users_file, name, role, password)
    assert not users_file.exists()


# --- passwords ---------------------------------------------------------------------------------


def test_check_password(users_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_user(users_file, "alice", "admin", PASSWORD)
    write_user(users_file, "sso", "editor", None)
    users = load_users(users_file)
    assert check_password(users, "alice", PASSWORD) == users["alice"]
    verified: list[str] = []
    real_verify = argon2.PasswordHasher.verify

    def counting_verify(self: argon2.PasswordHasher, hash: str, password: str) -> bool:
        verified.append(hash)
        return real_verify(self, hash, password)

    monkeypatch.setattr(argon2.PasswordHasher, "verify", counting_verify)
    for name, password in (
        ("alice", "wrong password!"),
        ("alice", PASSWORD + "x"),
        ("nobody", PASSWORD),  # unknown: one verification all the same
        ("sso", PASSWORD),  # no password: proxy only
        ("sso", ""),
    ):
        assert check_password(users, name, password) is None, name
    assert len(verified) == 5
    assert all(hash.startswith("$argon2id$") for hash in verified)


# --- the command line ---------------------------------------------------------------------------


class Cli:
    """Run `declic` with a users file, standard input and captured output."""

    def __init__(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], path: Path
    ) -> None:
        self.monkeypatch, self.capsys, self.path = monkeypatch, capsys, path

    def __call__(self, line: str, stdin: str | io.StringIO = "") -> tuple[int, str, str]:
        self.monkeypatch.setattr(
            sys, "stdin", io.StringIO(stdin) if isinstance(stdin, str) else stdin
        )
        status = main([*shlex.split(line), "--console-users-file", str(self.path)])
        out, err = self.capsys.readouterr()
        return status, out, err


@pytest.fixture
def cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], users_file: Path
) -> Cli:
    return Cli(monkeypatch, capsys, users_file)


def test_add_user_with_password_on_stdin(cli: Cli, users_file: Path) -> None:
    status, out, _ = cli("console add-user alice --role admin --password-stdin", PASSWORD + "\n")
    assert status == 0
    assert out == f"added alice (admin) to {users_file}\n"
    assert check_password(load_users(users_file), "alice", PASSWORD) is not None

    new = "a new long password\n"
    status, out, _ = cli("console add-user alice --role editor --password-stdin", new)
    assert status == 0 and out == f"updated alice (editor) in {users_file}\n"
    assert load_users(users_file)["alice"].role == "editor"

    status, out, _ = cli("console add-user carol@example.com --role viewer --proxy-only")
    assert status == 0 and "proxy login only" in out

    status, out, _ = cli("console users")
    assert status == 0
    assert out.splitlines() == [
        "alice              editor  password",
        "carol@example.com  viewer  proxy only",
    ]

    status, out, _ = cli("console remove-user alice")
    assert status == 0 and out == f"removed alice from {users_file}\n"
    status, _, err = cli("console remove-user alice")
    assert status == 2 and err == f"declic: error: no user 'alice' in {users_file}\n"


def test_no_users_is_said(cli: Cli) -> None:
    status, out, _ = cli("console users")
    assert status == 0 and out.startswith("no users in ")


@pytest.mark.parametrize(
    ("line", "stdin", "message"),
    [
        (
            "console add-user alice --role admin --password-stdin",
            "short\n",
            "declic: error: password too short: at least 12 characters, got 5\n",
        ),
        (
            "console add-user 'al ice' --role admin --password-stdin",
            PASSWORD + "\n",
            "declic: error: user name 'al ice': expected 1 to 64 letters",
        ),
        (
            "console add-user alice --role admin --password-stdin",
            "",
            "declic: error: --password-stdin: no password on standard input\n",
        ),
        (
            "console add-user alice --role admin",
            "",
            "declic: error: no terminal to ask the password on: use --password-stdin",
        ),
    ],
)
def test_add_user_refusals_exit_2(
    cli: Cli, users_file: Path, line: str, stdin: str, message: str
) -> None:
    status, _, err = cli(line, stdin)
    assert status == 2
    assert message in err
    assert not users_file.exists()


def test_an_unknown_role_is_a_usage_error(cli: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli("console add-user alice --role root --password-stdin", PASSWORD + "\n")
    assert exit_info.value.code == 2
    assert "declic: error: argument --role: invalid choice: 'root'" in capsys.readouterr().err


def test_add_user_asks_twice_on_a_terminal(
    cli: Cli, users_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    answers = iter([PASSWORD, PASSWORD + "!"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    status, _, err = cli("console add-user alice --role admin", Terminal())
    assert status == 2 and "the two passwords differ" in err
    assert not users_file.exists()

    answers = iter(["too short"])
    status, _, err = cli("console add-user alice --role admin", Terminal())
    assert status == 2 and "at least 12 characters" in err

    answers = iter([PASSWORD, PASSWORD])
    status, _, _ = cli("console add-user alice --role admin", Terminal())
    assert status == 0 and "alice" in load_users(users_file)


def test_settings_given_before_the_action_are_kept(
    users_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_user(users_file, "alice", "admin", None)
    assert main(["console", "--console-users-file", str(users_file), "users"]) == 0
    assert capsys.readouterr().out.startswith("alice")


def test_console_without_action_serves() -> None:
    args = build_parser().parse_args(["console", "--console-port", "7000"])
    assert args.console_action is None
    assert args.handler.__name__ == "_cmd_console"
    assert args.setting_console_port == "7000"
