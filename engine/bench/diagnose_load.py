"""`declic bench --diagnose-clients N`: N clients requesting a worker's /diagnose in a loop.

Run as a child process (`python -m engine.bench.diagnose_load URL...`) so the clients take
no CPU from the bench's publisher, whose pacing the latency is measured against. Each URL
is one client, a thread requesting it again as soon as the last answer came. The clients
stop when the child's stdin closes; the child then prints one JSON line: the duration in
ms of each request served (status 200) and the errors by kind.
"""

from __future__ import annotations

import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

import orjson

REQUEST_TIMEOUT_SECONDS = 60.0
# Once stopped, a request still waiting for its answer after this long is not counted.
STOP_GRACE_SECONDS = 5.0
ERROR_PAUSE_SECONDS = 0.1


class _Client:
    """One client: GET the URL in a loop until told to stop."""

    def __init__(self, url: str, stop: threading.Event) -> None:
        self.url = url
        self.stop = stop
        self.durations_ms: list[float] = []
        self.errors: dict[str, int] = {}
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self.stop.is_set():
            begin = time.monotonic()
            try:
                with urllib.request.urlopen(self.url, timeout=REQUEST_TIMEOUT_SECONDS) as reply:
                    reply.read()
            except urllib.error.HTTPError as error:
                self._error(f"http {error.code}")
            except (OSError, ValueError) as error:
                self._error(type(error).__name__)
            else:
                if not self.stop.is_set():
                    self.durations_ms.append((time.monotonic() - begin) * 1000)

    def _error(self, kind: str) -> None:
        if not self.stop.is_set():
            self.errors[kind] = self.errors.get(kind, 0) + 1
        self.stop.wait(ERROR_PAUSE_SECONDS)  # a refused connection must not spin


def run(urls: Sequence[str]) -> dict[str, Any]:
    """Run one client per URL until stdin closes; return what they got."""
    stop = threading.Event()
    clients = [_Client(url, stop) for url in urls]
    began = time.monotonic()
    for client in clients:
        client.thread.start()
    sys.stdin.buffer.read()  # until the parent closes it
    stop.set()
    seconds = time.monotonic() - began
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for client in clients:
        client.thread.join(max(0.0, deadline - time.monotonic()))
    durations = [ms for client in clients for ms in client.durations_ms]
    errors: dict[str, int] = {}
    for client in clients:
        for kind, count in client.errors.items():
            errors[kind] = errors.get(kind, 0) + count
    return {
        "clients": len(clients),
        "seconds": round(seconds, 3),
        "durations_ms": [round(ms, 3) for ms in durations],
        "errors": errors,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the clients; print the result as one JSON line."""
    urls = list(sys.argv[1:] if argv is None else argv)
    if not urls:
        print("usage: python -m engine.bench.diagnose_load URL...", file=sys.stderr)
        return 2
    sys.stdout.buffer.write(orjson.dumps(run(urls)) + b"\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
