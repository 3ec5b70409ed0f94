"""Browser fixtures: a real broker and worker (tests/integration's), a real gateway child
process, headless Chromium pages.

The broker comes from DECLIC_KAFKA_BOOTSTRAP (`make test` starts one); Chromium and its
driver from Debian's `chromium` and `chromium-driver` (`make setup` installs them as root).
Under CI=true a missing broker or browser fails the tests; elsewhere they are skipped with
the reason.
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Iterator

import pytest
from selenium.webdriver.chrome.webdriver import WebDriver

from engine.bench.browser import (
    AppServer,
    GatewayProcess,
    browser_missing,
    start_chromium,
)
from engine.child_process import free_port
from engine.settings import Settings, load_settings
from engine.worker_process import WorkerProcess

# The broker, the shared worker and the harness are the integration tests' own.
from tests.integration.conftest import Harness, bootstrap, harness, worker

__all__ = ["Harness", "bootstrap", "harness", "worker"]


def _on_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


@pytest.fixture(scope="session")
def settings(bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Return settings with topics of their own; no frequency caps (each test has its own
    users anyway)."""
    run = uuid.uuid4().hex[:8]
    return load_settings(
        {
            "kafka_bootstrap": bootstrap,
            "topic_prefix": f"web-{run}-",
            "partitions": 2,
            "data_dir": tmp_path_factory.mktemp("declic-web") / "data",
            "web_port": free_port(),
            "worker_id": f"web-{run}-1",
            "checkpoint_interval_seconds": 0.1,
            "frequency_caps": [],
            "author": "browser-tests",
        }
    )


@pytest.fixture(scope="session")
def app_port() -> int:
    """Return the port of the app's own origin (allowed by the gateway's CORS)."""
    return free_port()


@pytest.fixture(scope="session")
def gateway(
    settings: Settings,
    worker: WorkerProcess,
    app_port: int,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[GatewayProcess]:
    """Start `declic gateway --demo` once the worker created the topics."""
    process = GatewayProcess(
        settings,
        tmp_path_factory.mktemp("gateway-logs") / "gateway.log",
        token_secret=secrets.token_hex(32),
        allowed_origins=f"http://127.0.0.1:{app_port}",
    )
    process.start()
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="session")
def app(gateway: GatewayProcess, app_port: int) -> Iterator[AppServer]:
    """Serve the app page (another origin than the gateway's) and its /token backend."""
    server = AppServer(gateway, app_port)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    """Return a headless Chromium of its own, quit after the test."""
    reason = browser_missing()
    if reason is not None:
        if _on_ci():
            pytest.fail(reason)
        pytest.skip(reason)
    driver = start_chromium()
    try:
        yield driver
    finally:
        driver.quit()
