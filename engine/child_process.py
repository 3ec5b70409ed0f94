"""Ending a child process (a worker, a gateway) the way a supervisor would."""

from __future__ import annotations

import signal
import subprocess

KILL_WAIT_SECONDS = 30.0


def end_child(
    process: subprocess.Popen[bytes], signum: int = signal.SIGTERM, timeout: float = 30.0
) -> int | None:
    """Send `signum` (after SIGCONT: a frozen child could not act on it), wait up to
    `timeout` seconds, then kill; return the exit status."""
    if process.poll() is None:
        process.send_signal(signal.SIGCONT)
        process.send_signal(signum)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(KILL_WAIT_SECONDS)
    return process.returncode
