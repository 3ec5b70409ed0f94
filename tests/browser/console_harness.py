"""The campaign console end to end: `declic topics`, a `declic worker` and a `declic
console` as child processes on a real broker, topics of their own; a small HTTP client
that speaks to the console with a browser's session cookie; full-page screenshots.

Used by tests/browser/test_console.py.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

from selenium.webdriver.remote.webdriver import WebDriver

from engine.child_process import end_child, free_port
from engine.settings import Settings, load_settings
from engine.worker_process import SECURITY, WorkerProcess, settings_environment

PASSWORD = "correct horse battery staple"
USERS = {"ada": "admin", "erin": "editor", "vic": "viewer"}
READY_SECONDS = 120.0
# What a `declic` command of the test (topics, publish, engagements, console) inherits.
CLIENT_SETTINGS = ("kafka_bootstrap", "app_id", "topic_prefix", "partitions", *SECURITY)
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "console"

T = TypeVar("T")


def poll(what: str, check: Callable[[], T | None], timeout: float, every: float = 0.2) -> T:
    """Return check()'s first truthy value, trying every `every` seconds up to `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f}s")
        time.sleep(every)


@dataclass
class Reply:
    status: int
    text: str
    headers: dict[str, str]


def http(
    url: str,
    *,
    cookies: dict[str, str] | None = None,
    form: list[tuple[str, str]] | None = None,
    timeout: float = 30.0,
) -> Reply:
    """GET `url`, or POST `form` to it (urlencoded), with these cookies; redirects are not
    followed."""

    class _NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    data = None if form is None else urllib.parse.urlencode(form).encode()
    request = urllib.request.Request(url, data=data, method="GET" if form is None else "POST")
    if cookies:
        request.add_header("Cookie", "; ".join(f"{k}={v}" for k, v in cookies.items()))
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=timeout) as reply:
            return Reply(int(reply.status), reply.read().decode(), dict(reply.headers))
    except urllib.error.HTTPError as error:
        with error:
            return Reply(error.code, error.read().decode(errors="replace"), dict(error.headers))


def browser_cookies(driver: WebDriver) -> dict[str, str]:
    """Return the browser's cookies for the page it shows, by name."""
    return {cookie["name"]: cookie["value"] for cookie in driver.get_cookies()}


def screenshot(driver: WebDriver, name: str, around: str | None = None) -> Path:
    """Save the whole page (not only the window) as docs/console/<name>.png; or, given a
    CSS selector, the page's full width around that element (a long form's one section)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
    if around is not None:
        top, height = driver.execute_script(
            """
            const box = document.querySelector(arguments[0]).getBoundingClientRect();
            return [box.top + window.scrollY, box.height];
            """,
            around,
        )
        clip["y"] = max(0, top - 24)
        clip["height"] = min(size["height"] - clip["y"], height + 48)
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
    )
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


class ConsoleStack:
    """Topics of their own, a worker and a console, each a child process."""

    def __init__(self, bootstrap: str, directory: Path) -> None:
        run = uuid.uuid4().hex[:8]
        self.directory = directory
        self.settings: Settings = load_settings(
            {
                "kafka_bootstrap": bootstrap,
                "topic_prefix": f"console-{run}-",
                "partitions": 2,
                "data_dir": directory / "data",
                "web_port": free_port(),
                "worker_id": f"console-{run}-1",
                "checkpoint_interval_seconds": 0.1,
                # Figures every second: the page shows them within its 5 s refresh.
                "stats_interval_seconds": 1,
                # Every user of the test gets one event: no cap should hold one back.
                "frequency_caps": [],
                "author": "console-e2e",
            }
        )
        self.users_file = directory / "console-users.yaml"
        self.console_port = free_port()
        self.worker = WorkerProcess(self.settings, directory / "worker.log")
        self.console_log = directory / "console.log"
        self._console: subprocess.Popen[bytes] | None = None
        self._console_log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        """Return the console's address."""
        return f"http://127.0.0.1:{self.console_port}"

    def environment(self) -> dict[str, str]:
        """Return the environment of a `declic` command: the broker, the topics, the users."""
        env = settings_environment(self.settings, CLIENT_SETTINGS)
        env["DECLIC_CONSOLE_HOST"] = "127.0.0.1"
        env["DECLIC_CONSOLE_PORT"] = str(self.console_port)
        env["DECLIC_CONSOLE_USERS_FILE"] = str(self.users_file)
        env["DECLIC_LOG_LEVEL"] = "INFO"
        return env

    def declic(self, *arguments: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run a `declic` command to its end; fail with its output unless it exits 0."""
        result = subprocess.run(
            [sys.executable, "-m", "engine.cli", *arguments],
            env=self.environment(),
            input=stdin,
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, (
            f"declic {' '.join(arguments)} exited {result.returncode}:\n"
            f"{result.stdout}{result.stderr}"
        )
        return result

    @contextmanager
    def running(self) -> Iterator[ConsoleStack]:
        """Create the topics and users, start the worker and the console, wait until both
        answer /health; stop both on the way out, whatever happened."""
        with ExitStack() as stack:
            self.declic("topics")
            for name, role in USERS.items():
                self.declic(
                    "console", "add-user", name, "--role", role, "--password-stdin",
                    stdin=PASSWORD + "\n",
                )  # fmt: skip
            self.worker.start()
            stack.callback(self.worker.stop)
            self._start_console()
            stack.callback(self._stop_console)
            self.worker.wait_ready(timeout=READY_SECONDS)
            self._wait_console()
            yield self

    def _start_console(self) -> None:
        self._console_log = self.console_log.open("ab")
        self._console = subprocess.Popen(
            [sys.executable, "-m", "engine.cli", "console"],
            env=self.environment(),
            stdin=subprocess.DEVNULL,
            stdout=self._console_log,
            stderr=subprocess.STDOUT,
        )

    def _wait_console(self) -> None:
        def healthy() -> bool:
            process = self._console
            if process is not None and process.poll() is not None:
                raise AssertionError(
                    f"declic console exited {process.returncode}: {self.console_log.read_text()}"
                )
            try:
                return http(f"{self.url}/health", timeout=5).status == 200
            except OSError:
                return False

        poll("the console's /health answering 200", healthy, READY_SECONDS)

    def _stop_console(self) -> None:
        if self._console is not None:
            end_child(self._console, timeout=15)
            self._console = None
        if self._console_log is not None:
            self._console_log.close()
            self._console_log = None

    def worker_versions(self) -> dict[str, int]:
        """Return the engagement versions the worker runs, by id."""
        with urllib.request.urlopen(f"{self.worker.base_url}/engagements", timeout=5) as reply:
            known: dict[str, Any] = json.loads(reply.read())
        return {key: int(value.get("version", 0)) for key, value in known.items()}

    def engagements(self) -> dict[str, dict[str, Any]]:
        """Return the catalog as `declic engagements list --json` prints it, by id."""
        lines = self.declic("engagements", "list", "--json").stdout.splitlines()
        records = [json.loads(line) for line in lines if line.strip()]
        return {record["engagement"]["id"]: record for record in records}

    def publish_custom_events(self, name: str, user_ids: list[str]) -> None:
        """Publish one custom event `name` per user, now, with `declic publish`."""
        now_ms = int(time.time() * 1000)
        path = self.directory / f"events-{uuid.uuid4().hex[:6]}.ndjson"
        lines = [
            json.dumps(
                {
                    "event_id": f"ev-{uuid.uuid4().hex[:12]}",
                    "user_id": user_id,
                    "name": name,
                    "timestamp": now_ms,
                }
            )
            for user_id in user_ids
        ]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        self.declic("publish", "custom-events", str(path))
