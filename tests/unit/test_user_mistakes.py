"""The mistakes a new user makes, and what `declic` answers: exit status 2, one
`declic: error:` line per problem naming the file, field or setting in the user's own
words, and never a traceback. No broker runs here: a mistake must be caught before any
connection (the bootstrap address given is unreachable, so a mistake caught too late
shows up as status 3)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from engine.cli import main

UNREACHABLE = ["--kafka-bootstrap", "127.0.0.1:1"]
EXAMPLES = Path(__file__).parents[2] / "deploy" / "examples"
GOOD = (EXAMPLES / "welcome-back.yaml").read_text()


@dataclass(frozen=True)
class Mistake:
    """A command line (FILE stands for the file written from `file`), its environment, and
    the words the error must contain."""

    name: str
    argv: list[str]
    named: list[str]
    env: dict[str, str] = field(default_factory=dict)
    file: str | None = None
    suffix: str = ".yaml"


MISTAKES = [
    # Settings given as flags: the flag as typed is named.
    Mistake("partitions not a number", ["topics", "--partitions", "x", *UNREACHABLE], ["--partitions", "'x'"]),
    Mistake("partitions zero", ["topics", "--partitions", "0", *UNREACHABLE], ["--partitions", "at least 1"]),
    Mistake("bootstrap without port (old spelling)", ["topics", "--bootstrap", "kafka"], ["--bootstrap", "host:port"]),
    Mistake("bootstrap without port", ["engagements", "list", "--kafka-bootstrap", "kafka"], ["--kafka-bootstrap"]),
    Mistake("log level unknown", ["topics", "--log-level", "loud", *UNREACHABLE], ["--log-level", "DEBUG, INFO"]),
    Mistake("frequency caps not JSON", ["worker", "--frequency-caps", "[{"], ["--frequency-caps", "JSON"]),
    Mistake("frequency cap of 0", ["worker", "--frequency-caps", '[{"max": 0, "per_seconds": 60}]'], ["--frequency-caps", "max", "at least 1"]),
    Mistake("app id with a space", ["topics", "--app-id", "my app", *UNREACHABLE], ["--app-id", "'my app'"]),
    Mistake("web port too high", ["worker", "--web-port", "70000"], ["--web-port", "at most 65535"]),
    Mistake("unknown time zone", ["worker", "--default-timezone", "Mars/Olympus"], ["--default-timezone", "Mars/Olympus"]),
    Mistake("security protocol unknown", ["topics", "--kafka-security-protocol", "TLS", *UNREACHABLE], ["--kafka-security-protocol", "SASL_SSL"]),
    Mistake("SASL without a user", ["topics", "--kafka-security-protocol", "SASL_SSL", "--kafka-sasl-mechanism", "PLAIN", *UNREACHABLE], ["DECLIC_KAFKA_SASL_USERNAME", "required"]),
    Mistake("CA file missing", ["engagements", "list", "--kafka-security-protocol", "SSL", "--kafka-ssl-cafile", "/nonexistent/ca.pem", *UNREACHABLE], ["--kafka-ssl-cafile", "no such file"]),
    Mistake("negative checkpoint interval", ["worker", "--checkpoint-interval", "-1"], ["--checkpoint-interval", "more than 0"]),
    Mistake("record size too small", ["worker", "--max-record-bytes", "10"], ["--max-record-bytes", "at least 65536"]),
    # Settings given as variables: the variable is named.
    Mistake("partitions variable not a number", ["topics", *UNREACHABLE], ["DECLIC_PARTITIONS", "whole number"], env={"DECLIC_PARTITIONS": "four"}),
    Mistake("log level variable unknown", ["engagements", "list", *UNREACHABLE], ["DECLIC_LOG_LEVEL"], env={"DECLIC_LOG_LEVEL": "verbose"}),
    Mistake("frequency caps variable not JSON", ["worker"], ["DECLIC_FREQUENCY_CAPS", "JSON"], env={"DECLIC_FREQUENCY_CAPS": "3 per day"}),
    Mistake("frequency caps variable an object", ["worker"], ["DECLIC_FREQUENCY_CAPS", "list"], env={"DECLIC_FREQUENCY_CAPS": "{}"}),
    Mistake("bootstrap variable without port", ["topics"], ["DECLIC_KAFKA_BOOTSTRAP"], env={"DECLIC_KAFKA_BOOTSTRAP": "kafka"}),
    Mistake("SASL mechanism without SASL", ["topics", *UNREACHABLE], ["DECLIC_KAFKA_SASL_MECHANISM", "no SASL"], env={"DECLIC_KAFKA_SASL_MECHANISM": "PLAIN"}),
    # Misused commands.
    Mistake("unknown command", ["frobnicate"], ["frobnicate"]),
    Mistake("unknown flag", ["topics", "--partition", "3"], ["--partition"]),
    Mistake("engagements without an action", ["engagements"], ["ACTION"]),
    Mistake("diagnose without an engagement", ["diagnose", *UNREACHABLE], ["ENGAGEMENT", "--all"]),
    Mistake("diagnose of one and all", ["diagnose", "welcome-back", "--all", *UNREACHABLE], ["--all"]),
    Mistake("diagnose since a word", ["diagnose", "welcome-back", "--since", "yesterday", *UNREACHABLE], ["--since", "yesterday"]),
    Mistake("publish to an output topic", ["publish", "deliveries", "x.ndjson"], ["deliveries"]),
    Mistake("publish a missing file", ["publish", "sessions", "/nonexistent/events.ndjson", *UNREACHABLE], ["/nonexistent/events.ndjson"]),
    Mistake("publish a record without its name", ["publish", "custom-events", "FILE", *UNREACHABLE], ["FILE:2", "name"], file='{"event_id": "e1", "user_id": "u1", "name": "A", "timestamp": 1}\n{"event_id": "e2", "user_id": "u1", "timestamp": 1}\n', suffix=".ndjson"),
    Mistake("publish a line that is not JSON", ["publish", "sessions", "FILE", *UNREACHABLE], ["FILE:1"], file="user_id=u1\n", suffix=".ndjson"),
    Mistake("test-send without a user", ["engagements", "test-send", "welcome-back"], ["--user"]),
    Mistake("bench with no users", ["bench", "--users", "0", *UNREACHABLE], ["--users", "at least 1"]),
    Mistake("bench with more workers than partitions", ["bench", "--workers", "8", "--partitions", "2", *UNREACHABLE], ["--workers", "partitions"]),
    Mistake("demo with no users", ["demo", "--users", "0", *UNREACHABLE], ["--users", "at least 1"]),
    # Engagement files: the file and the field path are named.
    Mistake("apply a missing file", ["engagements", "apply", "--dry-run", "/nonexistent/e.yaml"], ["/nonexistent/e.yaml"]),
    Mistake("YAML syntax error", ["engagements", "apply", "--dry-run", "FILE"], ["FILE:3", "YAML"], file="id: x\nname: [unclosed\n"),
    Mistake("percent over 100", ["engagements", "apply", "--dry-run", "FILE"], ["FILE", "audience.percent"], file=GOOD.replace("percent: 100", "percent: 120")),
    Mistake("unknown field", ["engagements", "apply", "--dry-run", "FILE"], ["FILE", "colour"], file=GOOD + "colour: blue\n"),
    Mistake("YAML duplicate key", ["engagements", "apply", "--dry-run", "FILE"], ["FILE", "priority"], file=GOOD + "priority: 3\n"),
    Mistake("JSON duplicate key", ["engagements", "apply", "--dry-run", "FILE"], ["FILE", "name"], file='{"id": "x", "name": "a", "name": "b"}', suffix=".json"),
    Mistake("delay past every bound", ["engagements", "apply", "--dry-run", "FILE"], ["FILE", "delay_seconds"], file=GOOD.replace("  event: session_start", "  event: session_start\n  delay_seconds: 100000000000000000000")),
    Mistake("message and variants", ["engagements", "apply", "--dry-run", "FILE"], ["FILE", "variants"], file=GOOD + "variants:\n  - {id: a, weight: 1, message: {layout: banner, title: A, body: B}}\n"),
    Mistake("end before start", ["engagements", "apply", "--dry-run", "FILE"], ["FILE", "schedule"], file=GOOD.replace("start: null", "start: '2026-06-01T00:00:00Z'").replace("end: null", "end: '2026-01-01T00:00:00Z'")),
]  # fmt: skip


@pytest.mark.parametrize("mistake", MISTAKES, ids=[m.name for m in MISTAKES])
def test_a_mistake_is_named_with_status_2_and_no_traceback(
    mistake: Mistake,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in mistake.env.items():
        monkeypatch.setenv(name, value)
    path = tmp_path / f"mistake{mistake.suffix}"
    if mistake.file is not None:
        path.write_text(mistake.file)
    argv = [str(path) if word == "FILE" else word for word in mistake.argv]
    try:
        status = main(argv)
    except SystemExit as exit_info:  # argparse's own refusals
        status = int(exit_info.code or 0)
    err = capsys.readouterr().err.replace(str(path), "FILE")
    assert status == 2, err
    assert "Traceback" not in err
    lines = err.splitlines()
    errors = [line for line in lines if line.startswith("declic: error: ")]
    assert errors, err
    assert all(line.startswith(("declic: error: ", "usage:", " ")) for line in lines), err
    assert len(set(errors)) == len(errors), f"a line said twice:\n{err}"
    for word in mistake.named:
        assert word in err, f"{word!r} not named in:\n{err}"
    for internal in ("invalid_engagement", "Input should be", "ValidationError", "kafka_"):
        assert internal not in err, f"internal wording {internal!r} in:\n{err}"


def test_the_table_holds_at_least_30_mistakes() -> None:
    assert len(MISTAKES) >= 30


def test_a_typo_in_a_variable_is_named_with_the_closest_setting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("DECLIC_PARTITION", "8")
    assert main(["engagements", "apply", "--dry-run", str(EXAMPLES / "welcome-back.yaml")]) == 0
    err = capsys.readouterr().err
    assert "DECLIC_PARTITION is not a Declic setting" in err
    assert "did you mean DECLIC_PARTITIONS?" in err


def test_a_bug_exits_1_asking_for_a_report(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import engine.cli as cli

    def broken(*args: object) -> int:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(cli, "_cmd_topics", broken)
    assert main(["topics", *UNREACHABLE]) == 1
    err = capsys.readouterr().err
    assert "ZeroDivisionError" in err and "this is a bug" in err and "report" in err
