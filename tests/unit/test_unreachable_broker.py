"""Every command run against a broker that is not there says so in one line, exit 3.

Run as real processes: what a user sees includes the Kafka client's own logging and
the warnings of clients left unclosed, which an in-process run would not show.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ADDRESS = "127.0.0.1:1"  # nothing listens on port 1: the connection is refused
EXPECTED = f"declic: error: Kafka at {ADDRESS} is unreachable (connection refused)"
EXAMPLE = Path(__file__).parents[2] / "deploy" / "examples" / "welcome-back.yaml"
SESSION = '{"event_id": "e1", "user_id": "u1", "type": "session_start", "timestamp": 1}\n'

COMMANDS = [
    ["topics"],
    ["engagements", "apply", str(EXAMPLE)],
    ["engagements", "list"],
    ["engagements", "export", "welcome-back"],
    ["engagements", "history"],
    ["engagements", "pause", "welcome-back"],
    ["engagements", "resume", "welcome-back"],
    ["engagements", "archive", "welcome-back"],
    ["engagements", "delete", "welcome-back"],
    ["engagements", "test-send", "welcome-back", "--user", "u1"],
    ["diagnose", "welcome-back"],
    ["diagnose", "--all"],
    ["publish", "sessions", "EVENTS"],
    ["demo"],
    ["bench", "--users", "10", "--engagements", "2", "--events", "10"],
]


@pytest.mark.parametrize("words", COMMANDS, ids=lambda words: " ".join(words[:2]))
def test_an_unreachable_broker_is_one_line(words: list[str], tmp_path: Path) -> None:
    events = tmp_path / "events.ndjson"
    events.write_text(SESSION)
    argv = [str(events) if word == "EVENTS" else word for word in words]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "engine.cli",
            *argv,
            "--kafka-bootstrap",
            ADDRESS,
            *(["--data-dir", str(tmp_path / "data")] if words[0] in ("demo", "bench") else []),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 3, result.stderr
    lines = result.stderr.splitlines()
    if words[0] == "bench":  # the bench notes its progress on stderr, indented
        lines = [line for line in lines if not line.startswith("  ")]
    assert lines == [EXPECTED], result.stderr
