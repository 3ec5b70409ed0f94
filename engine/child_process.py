"""Child processes (a worker, a gateway): a port for each, and ending them the way a
supervisor would."""

from __future__ import annotations

import signal
import socket
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


def free_port() -> int:
    """Return a TCP port free on 127.0.0.1 now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
