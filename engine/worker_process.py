"""Run `declic worker` as a child process: used by the demo and by the integration tests."""

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
from typing import IO, Any

from pydantic import SecretStr

from engine.child_process import end_child
from engine.errors import DeclicError
from engine.settings import Settings

# How a child connects to Kafka: passed as DECLIC_* variables (never on a command line,
# which any user of the machine can read), secrets by their value.
SECURITY = (
    "kafka_security_protocol",
    "kafka_sasl_mechanism",
    "kafka_sasl_username",
    "kafka_sasl_password",
    "kafka_ssl_cafile",
    "kafka_ssl_certfile",
    "kafka_ssl_keyfile",
    "kafka_ssl_key_password",
)
# Settings a child worker inherits from its parent, as DECLIC_* variables.
INHERITED = (
    "kafka_bootstrap",
    "app_id",
    "topic_prefix",
    "partitions",
    "data_dir",
    "web_host",
    "web_port",
    "worker_id",
    "max_event_age_seconds",
    "max_future_seconds",
    "checkpoint_interval_seconds",
    "max_batch_records",
    "transaction_timeout_seconds",
    "max_record_bytes",
    "max_input_bytes",
    "replication_factor",
    "log_level",
    "frequency_caps",
    "default_timezone",
    "author",
    "stats_interval_seconds",
    "unseen_delivery_seconds",
    *SECURITY,
)


def settings_environment(settings: Settings, names: tuple[str, ...] = SECURITY) -> dict[str, str]:
    """Return our environment with these settings as DECLIC_* variables.

    A secret is passed by its value (``model_dump`` would give its mask); a setting that is
    None is removed from the environment, so that the child does not read ours instead.
    """
    env = dict(os.environ)
    values = settings.model_dump(mode="json", include=set(names))
    for name, value in values.items():
        variable = f"DECLIC_{name.upper()}"
        secret = getattr(settings, name)
        if isinstance(secret, SecretStr):
            env[variable] = secret.get_secret_value()
        elif value is None:
            env.pop(variable, None)
        else:
            env[variable] = value if isinstance(value, str) else json.dumps(value)
    return env


class WorkerProcess:
    """A `declic worker` child process with its own settings."""

    def __init__(self, settings: Settings, log_path: Path, processes: int = 1) -> None:
        self.settings = settings
        self.log_path = log_path
        # One engine process unless asked: the demo's, the tests' and the bench's worker
        # stay one process whatever DECLIC_WORKER_PROCESSES and the machine's CPUs say.
        self.processes = processes
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def base_url(self) -> str:
        """Return the worker's HTTP address."""
        return f"http://{self.settings.web_host}:{self.settings.web_port}"

    @property
    def pid(self) -> int | None:
        """Return the child's pid while it runs."""
        return self._process.pid if self._process is not None else None

    def environment(self) -> dict[str, str]:
        """Return the child's environment: ours plus its settings."""
        env = settings_environment(self.settings, INHERITED)
        env["DECLIC_WORKER_PROCESSES"] = str(self.processes)
        return env

    def start(self) -> None:
        """Launch the worker."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "engine.cli", "worker"],
            env=self.environment(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 180.0, partitions: bool = True) -> dict[str, Any]:
        """Block until /health answers with the catalog loaded (and partitions assigned)."""
        deadline = time.monotonic() + timeout
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise DeclicError(
                    f"worker exited with status {self._process.returncode}; see {self.log_path}"
                )
            try:
                health = self.health()
                if not partitions or health.get("partitions"):
                    return health
                last_error = f"no partition assigned yet: {health}"
            except (OSError, ValueError) as error:
                last_error = str(error)
            time.sleep(0.5)
        raise DeclicError(
            f"worker not ready after {timeout:.0f}s ({last_error}); see {self.log_path}"
        )

    def health(self) -> dict[str, Any]:
        """Return the worker's /health document."""
        with urllib.request.urlopen(f"{self.base_url}/health", timeout=2) as response:
            document: dict[str, Any] = json.loads(response.read())
            return document

    def health_status(self) -> tuple[int, dict[str, Any]]:
        """Return /health's HTTP status and document, a 503 (not ready) included."""
        try:
            with urllib.request.urlopen(f"{self.base_url}/health", timeout=2) as response:
                return int(response.status), dict(json.loads(response.read()))
        except urllib.error.HTTPError as error:
            with error:
                return error.code, dict(json.loads(error.read()))

    def metrics_text(self) -> str:
        """Return the worker's /metrics page."""
        with urllib.request.urlopen(f"{self.base_url}/metrics", timeout=5) as response:
            return str(response.read().decode())

    def wait_exit(self, timeout: float) -> int | None:
        """Wait for the worker to exit on its own; return its status (None if still running)."""
        if self._process is None:
            return None
        try:
            return self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = 60.0) -> int | None:
        """Stop gracefully (SIGTERM), or kill after timeout; return the exit status."""
        return self._end(signal.SIGTERM, timeout)

    def kill(self) -> int | None:
        """Kill at once (SIGKILL), as a crash would."""
        return self._end(signal.SIGKILL, 30.0)

    def pause(self) -> None:
        """Freeze the worker (SIGSTOP), as a long GC pause or a hung host would."""
        if self._process is not None:
            self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Let a frozen worker go on (SIGCONT)."""
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)

    @property
    def running(self) -> bool:
        """Return whether the child process is alive."""
        return self._process is not None and self._process.poll() is None

    def _end(self, signum: int, timeout: float) -> int | None:
        process = self._process
        if process is None:
            return None
        status = end_child(process, signum, timeout)
        self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None
        return status
