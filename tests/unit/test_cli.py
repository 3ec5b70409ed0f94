"""The command line as a user meets it: help, errors and exit codes, without a broker."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from engine.cli import build_parser, main

SUBCOMMANDS = [
    ["worker"],
    ["topics"],
    *(
        ["engagements", action]
        for action in (
            "apply",
            "list",
            "export",
            "pause",
            "resume",
            "archive",
            "delete",
            "history",
        )
    ),
    ["engagements", "test-send"],
    ["diagnose"],
    ["publish"],
    ["demo"],
    ["bench"],
    ["doctor"],
    ["gateway"],
    ["console"],
    ["console", "add-user"],
    ["console", "remove-user"],
    ["console", "users"],
    ["users", "forget"],
    ["users", "show"],
]
# Commands that need no Kafka: they show only their own settings.
OFFLINE = (["console", "add-user"], ["console", "remove-user"], ["console", "users"])


@pytest.mark.parametrize("words", SUBCOMMANDS, ids=" ".join)
def test_every_subcommand_has_help_with_its_settings_and_examples(
    words: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*words, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: declic " + " ".join(words))
    if words in OFFLINE:
        assert "--console-users-file" in out and "--kafka-bootstrap" not in out
    else:
        assert "--kafka-bootstrap" in out and "[DECLIC_KAFKA_BOOTSTRAP]" in out
    assert "\nexample" in out and f"  declic {' '.join(words)}" in out.split("\nexample")[1]


def test_commands_show_only_the_settings_they_use(capsys: pytest.CaptureFixture[str]) -> None:
    for words, shown, hidden in (
        (["topics"], "--partitions", "--web-port"),
        (["engagements", "list"], "--app-id", "--author"),
        (["engagements", "pause"], "--author", "--partitions"),
        (["worker"], "--frequency-caps", "--author"),
    ):
        with pytest.raises(SystemExit):
            main([*words, "--help"])
        out = capsys.readouterr().out
        assert shown in out and hidden not in out, words


def test_invalid_engagement_file_is_refused_with_field_and_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "id: Bad_Id\nname: x\nstatus: active\ntrigger: {event: session_start}\n"
        "audience: {filters: [], percent: 120}\nmessage: {}\n"
    )
    # --dry-run needs no broker: a refusal happens before anything is sent anyway.
    status = main(["engagements", "apply", "--dry-run", str(bad)])
    err = capsys.readouterr().err
    assert status == 2
    assert "id:" in err and "percent" in err
    assert str(bad) in err


def test_valid_examples_pass_a_dry_run(capsys: pytest.CaptureFixture[str]) -> None:
    examples = sorted((Path(__file__).parents[2] / "deploy" / "examples").glob("*.yaml"))
    assert main(["engagements", "apply", "--dry-run", *map(str, examples)]) == 0
    out = capsys.readouterr().out
    assert out.count(": valid") == len(examples)


def test_unreachable_broker_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["engagements", "list", "--bootstrap", "127.0.0.1:1"])
    assert status == 3
    assert "Kafka at 127.0.0.1:1" in capsys.readouterr().err


def test_doctor_on_an_unreachable_broker_fails_one_line_at_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status = main(["doctor", "--bootstrap", "127.0.0.1:1", "--timeout", "2"])
    lines = capsys.readouterr().out.splitlines()
    assert status == 1
    failed = [line for line in lines if line.startswith("FAIL")]
    assert failed == ["FAIL  broker: 127.0.0.1:1 is unreachable (connection refused)"]
    assert all(line.startswith(("FAIL", "skip")) for line in lines[:-1])


def test_invalid_setting_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DECLIC_PARTITIONS", "zero")
    assert main(["topics"]) == 2
    assert "DECLIC_PARTITIONS" in capsys.readouterr().err


def test_publish_refuses_a_file_with_a_bad_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = tmp_path / "events.ndjson"
    events.write_text(
        '{"event_id": "e1", "user_id": "u1", "name": "A", "timestamp": 1}\n'
        '{"event_id": "e2", "user_id": "u1", "timestamp": 1}\n'
    )
    assert main(["publish", "custom-events", str(events), "--bootstrap", "127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert f"{events}:2" in err and "name" in err


def test_parser_knows_publishable_topics() -> None:
    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["publish", "deliveries", "x.ndjson"])


def test_one_invalid_file_publishes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = Path(__file__).parents[2] / "deploy" / "examples" / "welcome-back.yaml"
    bad = tmp_path / "bad.json"
    bad.write_text('{"id": "ok", "name": "x", "status": "live", "trigger": {"event": "x"}}')
    # The broker address is unreachable: exit 2 (refused) rather than 3 (Kafka error)
    # shows the files were refused before any connection was attempted.
    status = main(["engagements", "apply", str(good), str(bad), "--bootstrap", "127.0.0.1:1"])
    err = capsys.readouterr().err
    assert status == 2
    assert "status" in err and "message" in err


@pytest.mark.parametrize("words", SUBCOMMANDS, ids=" ".join)
def test_the_examples_of_every_help_parse(
    words: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main([*words, "--help"])
    examples = capsys.readouterr().out.split("\nexample")[1].splitlines()[1:]
    assert examples
    for line in examples:
        command = [word for word in shlex.split(line) if "=" not in word]
        assert command[0] == "declic", line
        build_parser().parse_args(command[1:])  # exits (status 2) if it does not parse
