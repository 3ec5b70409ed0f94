"""`declic gateway` as a process, without a broker: it serves at once, says on /health that
it waits for Kafka, and stops cleanly on SIGTERM; no secret in what it prints."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from engine.child_process import free_port

SECRET = "process-test-secret-0123456789abcdef-0123"


def _health(port: int) -> tuple[int, dict[str, object]] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as reply:
            return int(reply.status), json.loads(reply.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())
    except OSError:
        return None


def test_waits_for_kafka_saying_so_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "DECLIC_KAFKA_BOOTSTRAP": "127.0.0.1:1",  # nothing listens: refused
        "DECLIC_GATEWAY_TOKEN_SECRET": SECRET,
        "DECLIC_GATEWAY_PORT": str(port),
        "DECLIC_LOG_LEVEL": "DEBUG",
    }
    log = tmp_path / "gateway.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "engine.cli", "gateway", "--demo"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 60
            answer = None
            while time.monotonic() < deadline:
                assert process.poll() is None, log.read_text()
                answer = _health(port)
                if answer is not None and "waiting for Kafka" in str(answer[1]["problems"]):
                    break
                time.sleep(0.1)
            assert answer is not None and answer[0] == 503, answer
            assert answer[1]["status"] == "unavailable"
            process.send_signal(signal.SIGTERM)
            assert process.wait(30) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(30)
    text = log.read_text()
    assert "cannot follow the deliveries and impressions topics yet" in text
    assert "declic gateway stopped" in text
    assert SECRET not in text
    assert "Traceback" not in text
