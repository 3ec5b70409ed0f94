"""Headless Chromium, a `declic gateway` child process and a tiny app page using the web SDK.

Shared by the browser tests (tests/browser/) and `python -m engine.bench.web_latency`.
Chromium and its driver are Debian's (`apt-get install chromium chromium-driver`; `make
setup` installs them when run as root), driven by Selenium (the `dev` extra).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from engine.child_process import end_child, free_port
from engine.errors import DeclicError
from engine.settings import Settings
from engine.worker_process import SECURITY, settings_environment

if TYPE_CHECKING:
    from selenium.webdriver.chrome.webdriver import WebDriver

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# What a gateway child inherits from its parent's settings, as DECLIC_* variables.
GATEWAY_INHERITED = ("kafka_bootstrap", "app_id", "topic_prefix", *SECURITY)


def browser_missing() -> str | None:
    """Return why no headless Chromium can be driven on this machine, or None."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            return f"{path} is missing: apt-get install {package} (`make setup` does, as root)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed: pip install -e '.[dev]'"
    return None


def start_chromium(width: int = 1280, height: int = 900) -> WebDriver:
    """Start a headless Chromium (a profile of its own) and return its driver."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    arguments = [
        "--headless=new",
        f"--window-size={width},{height}",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--disable-extensions",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        # Pages in other windows keep their timers and rendering (the latency bench).
        "--disable-background-timer-throttling",
        "--disable-backgrounding-occluded-windows",
        "--disable-renderer-backgrounding",
    ]
    if os.geteuid() == 0:
        arguments.append("--no-sandbox")  # Chromium refuses to run as root with its sandbox
    for argument in arguments:
        options.add_argument(argument)
    service = Service(executable_path=str(CHROMEDRIVER), log_output=subprocess.DEVNULL)
    return webdriver.Chrome(service=service, options=options)


def _http_json(
    url: str, body: dict[str, Any] | None = None, token: str | None = None, timeout: float = 10.0
) -> tuple[int, Any]:
    """Request a URL (POST when body is given); return the status and the JSON answer."""
    headers = {"Accept": "application/json"}
    data = None
    if body is not None:
        headers["Content-Type"] = "application/json"
        data = json.dumps(body).encode()
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            raw = reply.read()
            status = int(reply.status)
    except urllib.error.HTTPError as error:
        with error:
            raw = error.read()
            status = error.code
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


class GatewayProcess:
    """A `declic gateway --demo` child process, on a port of its own."""

    def __init__(
        self,
        settings: Settings,
        log_path: Path,
        token_secret: str,
        *,
        port: int | None = None,
        allowed_origins: str = "",
        demo: bool = True,
        variables: dict[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.log_path = log_path
        self.token_secret = token_secret
        self.port = port if port is not None else free_port()
        self.allowed_origins = allowed_origins
        self.demo = demo
        self.variables = dict(variables or {})
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def base_url(self) -> str:
        """Return the gateway's address."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """Return the child's process id while it runs, else None."""
        return self._process.pid if self.running and self._process is not None else None

    @property
    def running(self) -> bool:
        """Return whether the child process is alive."""
        return self._process is not None and self._process.poll() is None

    def environment(self) -> dict[str, str]:
        """Return the child's environment: ours, the Kafka settings, the gateway's."""
        env = settings_environment(self.settings, GATEWAY_INHERITED)
        env["DECLIC_GATEWAY_TOKEN_SECRET"] = self.token_secret
        env["DECLIC_GATEWAY_ALLOWED_ORIGINS"] = self.allowed_origins
        env.update(self.variables)
        return env

    def start(self) -> None:
        """Launch the gateway."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        command = [sys.executable, "-m", "engine.cli", "gateway"]
        command += ["--gateway-host", "127.0.0.1", "--gateway-port", str(self.port)]
        if self.demo:
            command.append("--demo")
        self._process = subprocess.Popen(
            command,
            env=self.environment(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Block until /health answers 200 (the gateway caught up on its topics)."""
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise DeclicError(
                    f"gateway exited with status {self._process.returncode}; see {self.log_path}"
                )
            try:
                status, body = _http_json(f"{self.base_url}/health", timeout=2)
                if status == 200:
                    return
                last = f"{status} {body}"
            except OSError as error:
                last = str(error)
            time.sleep(0.2)
        raise DeclicError(f"gateway not ready after {timeout:.0f}s ({last}); see {self.log_path}")

    def stop(self, timeout: float = 30.0) -> int | None:
        """Stop gracefully (SIGTERM), or kill after timeout; return the exit status."""
        process = self._process
        if process is None:
            return None
        status = end_child(process, timeout=timeout)
        self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None
        return status

    def metrics_text(self) -> str:
        """Return the gateway's /metrics page."""
        with urllib.request.urlopen(f"{self.base_url}/metrics", timeout=5) as reply:
            return str(reply.read().decode())

    def metric(self, name: str) -> float:
        """Return the sum of a metric's samples named exactly `name` (0 when absent)."""
        from prometheus_client.parser import text_string_to_metric_families

        return sum(
            sample.value
            for family in text_string_to_metric_families(self.metrics_text())
            for sample in family.samples
            if sample.name == name
        )

    def demo_token(self, user_id: str) -> str:
        """Return a token for a user, from /demo/token."""
        query = urllib.parse.urlencode({"user": user_id})
        status, body = _http_json(f"{self.base_url}/demo/token?{query}")
        if status != 200 or not isinstance(body, dict) or "token" not in body:
            raise DeclicError(f"GET /demo/token answered {status}: {body}")
        return str(body["token"])

    def demo_event(self, token: str, name: str, properties: dict[str, Any]) -> str:
        """Publish a custom event for the token's user through /demo/events; return its id."""
        status, body = _http_json(
            f"{self.base_url}/demo/events", {"name": name, "properties": properties}, token
        )
        if status != 202 or not isinstance(body, dict):
            raise DeclicError(f"POST /demo/events answered {status}: {body}")
        return str(body.get("event_id"))


# A page of an app on another origin than the gateway's: it loads the SDK from the gateway,
# gets its tokens from its own backend (/token, below), and records what it renders.
# Query: gateway, user, token (optional: else asked to /token), render=default|custom,
# hidden=1 (messages go into a container hidden until shown), autodismiss=MS.
APP_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Declic test app</title></head>
<body><main id="app"><h1>Test app</h1></main><div id="host"></div>
<script>
"use strict";
const params = new URLSearchParams(location.search);
const gateway = params.get("gateway");
const user = params.get("user");
window.rendered = [];          // {id, at, triggered_at, created_at}: at = Date.now() at render
window.declicErrors = [];
window.tokenRequests = 0;
const messages = new Map();
// ?hidden=1: the SDK's messages go into a container hidden until the test shows it.
if (params.get("hidden")) document.getElementById("host").style.display = "none";
async function getToken() {
  window.tokenRequests += 1;
  const reply = await fetch("/token?user=" + encodeURIComponent(user), {cache: "no-store"});
  return (await reply.json()).token;
}
const counted = new WeakSet();  // an element inserted with its parent is seen twice
function recordRender(element) {
  if (counted.has(element)) return;
  counted.add(element);
  const id = element.getAttribute("data-declic-delivery");
  const delivery = messages.get(id) || {};
  window.rendered.push({id, at: Date.now(), triggered_at: delivery.triggered_at,
                        created_at: delivery.created_at});
}
new MutationObserver((records) => {
  for (const record of records) for (const node of record.addedNodes) {
    if (node.nodeType !== 1) continue;
    const found = node.matches("[data-declic-delivery]") ? [node]
      : Array.from(node.querySelectorAll("[data-declic-delivery]"));
    for (const element of found) recordRender(element);
  }
}).observe(document.documentElement, {childList: true, subtree: true});
function customRender(message, ui) {
  const card = document.createElement("div");
  card.setAttribute("data-custom-delivery", message.delivery_id);
  card.textContent = String(message.message.title);
  const button = document.createElement("button");
  button.setAttribute("data-custom-button", "custom-cta");
  button.textContent = "Go";
  button.addEventListener("click", () => { ui.logClick("custom-cta"); card.remove(); });
  card.appendChild(button);
  document.getElementById("app").appendChild(card);
  ui.logImpression();
  ui.logImpression();  // twice, as a careless app might: the SDK sends one
}
const script = document.createElement("script");
script.src = gateway + "/sdk/declic.js";
script.onload = () => {
  window.declic = Declic.connect({
    gateway, userId: user, token: params.get("token") || undefined, getToken,
    render: params.get("render") === "custom" ? customRender : "default",
    container: document.getElementById("host"),
    onMessage: (message) => { messages.set(message.delivery_id, message); },
    onError: (error) => { window.declicErrors.push(error.code + ": " + error.message); },
  });
  if (params.get("autodismiss")) {
    new MutationObserver(() => {
      for (const element of document.querySelectorAll("[data-declic-delivery]")) {
        if (element.dataset.dismissing) continue;
        element.dataset.dismissing = "1";
        setTimeout(() => window.declic.dismiss(element.getAttribute("data-declic-delivery"),
                                               "auto"), Number(params.get("autodismiss")));
      }
    }).observe(document.body, {childList: true, subtree: true});
  }
};
script.onerror = () => window.declicErrors.push("the SDK did not load from " + script.src);
document.head.appendChild(script);
</script></body></html>
"""


class AppServer:
    """The app's own web server, on another origin than the gateway: GET / is APP_PAGE,
    GET /token?user=U a token for U (the app's backend; here from the gateway's demo)."""

    def __init__(self, gateway: GatewayProcess, port: int | None = None) -> None:
        self.gateway = gateway
        self.port = port if port is not None else free_port()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def origin(self) -> str:
        """Return the app's origin, for DECLIC_GATEWAY_ALLOWED_ORIGINS."""
        return f"http://127.0.0.1:{self.port}"

    def page_url(self, user_id: str, **query: str) -> str:
        """Return the URL of the app page for a user."""
        fields = {"gateway": self.gateway.base_url, "user": user_id, **query}
        return f"{self.origin}/?{urllib.parse.urlencode(fields)}"

    def start(self) -> None:
        """Serve in a thread."""
        gateway = self.gateway

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                if url.path == "/":
                    self._answer(200, "text/html; charset=utf-8", APP_PAGE.encode())
                elif url.path == "/token":
                    user = urllib.parse.parse_qs(url.query).get("user", [""])[0]
                    try:
                        body = json.dumps({"token": gateway.demo_token(user)}).encode()
                        self._answer(200, "application/json", body)
                    except (DeclicError, OSError) as error:
                        self._answer(502, "text/plain", str(error).encode())
                else:
                    self._answer(404, "text/plain", b"not found")

            def _answer(self, status: int, kind: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
