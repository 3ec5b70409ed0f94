"""`declic worker --processes N`: N engine processes in the one consumer group, one parent.

The parent runs no engine and never connects to Kafka. It starts N `declic worker` children
(one process each, worker id ``<id>-<k>``, data directory ``<data dir>/<k>``, web server on
an internal port of 127.0.0.1), restarts a child that dies, forwards SIGTERM and SIGINT to
the children and waits for their graceful stop, forwards SIGUSR1 (each logs its tasks), and
serves one /health and one /metrics for all of them (engine.supervisor_web).

Each child's static membership (group.instance.id), client ids and store follow its worker
id, so a restarted child takes its predecessor's place, partitions and local state; the
transactional ids follow the partition, so whichever child owns a partition fences its
previous owner.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from engine.child_process import free_port
from engine.cli_flags import COMMAND_SETTINGS
from engine.errors import ConfigError
from engine.settings import Settings
from engine.worker_process import INHERITED, settings_environment

log = logging.getLogger("declic.supervisor")

WORKER_COMMAND = (sys.executable, "-m", "engine.cli", "worker")
# Every setting a worker uses reaches its children (secrets by environment, never argv).
CHILD_SETTINGS = tuple(dict.fromkeys((*INHERITED, *COMMAND_SETTINGS["worker"])))
# Exit statuses no restart cures: invalid settings (2), Kafka refusing this worker (3).
FATAL_STATUSES = (2, 3)
POLL_SECONDS = 0.1
# A graceful stop commits every partition; past this, the child is killed.
STOP_SECONDS = 60.0
_PR_SET_PDEATHSIG = 1
# Room left in worker_id (at most 128 characters) for "-<k>".
_SUFFIX_ROOM = 4


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """When to restart a dead child, and when to give up.

    A child that dies within ``instant_seconds`` of starting crashed at once: the wait
    before its restart doubles with each such crash in a row, and ``give_up_after`` of them
    stop the worker (exit status 1). A child that ran longer is restarted after
    ``first_backoff``.

    The pod's probes reach the parent only, so the parent asks each child's /health every
    ``probe_seconds`` and kills one that answers nothing (any HTTP status is an answer) for
    ``hang_seconds`` (as the liveness probe would kill a single-process worker), or not
    within ``start_seconds`` of starting (the startup probe's allowance): then restarts it.
    """

    first_backoff: float = 0.5
    max_backoff: float = 10.0
    instant_seconds: float = 10.0
    give_up_after: int = 5
    hang_seconds: float = 180.0
    start_seconds: float = 1800.0
    probe_seconds: float = 10.0

    def backoff(self, instant_crashes: int) -> float:
        """Return the wait before a restart, after this many instant crashes in a row."""
        return min(self.max_backoff, self.first_backoff * 2.0 ** max(0, instant_crashes - 1))


def child_settings(settings: Settings, index: int, web_port: int) -> Settings:
    """Return the settings of child `index`: its own worker id, data directory and port."""
    return settings.model_copy(
        update={
            "worker_id": f"{settings.worker_id}-{index}",
            "data_dir": settings.data_dir / str(index),
            "web_host": "127.0.0.1",  # internal: the parent serves the configured address
            "web_port": web_port,
            "worker_processes": 1,
        }
    )


def follow_supervisor() -> None:
    """In a child: die with the parent (SIGTERM on Linux), so that no engine process outlives
    a killed supervisor; exit now if it died already. Nothing outside a supervisor's child."""
    parent = os.environ.get("DECLIC_SUPERVISOR_PID")
    if not parent:
        return
    # Set here, not in a pre-exec hook: the parent has threads, and forking with threads
    # allows only async-signal-safe calls before exec.
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if str(os.getppid()) != parent:  # the parent died before the signal was set
        sys.exit(1)


def describe_status(status: int) -> str:
    """Return an exit status in words: "status 1", "killed by SIGKILL"."""
    if status < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-status).name}"
        return f"killed by signal {-status}"
    return f"status {status}"


class Child:
    """One engine process of the worker, restarted under the same index."""

    def __init__(self, index: int, settings: Settings, command: Sequence[str]) -> None:
        self.index = index
        self.base_settings = settings
        self.command = list(command)
        self.settings = child_settings(settings, index, 0)
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.restart_at: float | None = None
        self.instant_crashes = 0
        self.restarts = 0
        # When the running process last answered an HTTP request; None: not yet.
        self.answered_at: float | None = None
        self.killed = False

    @property
    def pid(self) -> int | None:
        """Return the pid of the running process, None between a death and its restart."""
        return self.process.pid if self.process is not None else None

    @property
    def base_url(self) -> str:
        """Return the child's internal HTTP address."""
        return f"http://127.0.0.1:{self.settings.web_port}"

    def start(self) -> None:
        """Launch the process, on a port free now."""
        self.settings = child_settings(self.base_settings, self.index, free_port())
        env = settings_environment(self.settings, CHILD_SETTINGS)
        env["DECLIC_SUPERVISOR_PID"] = str(os.getpid())
        self.process = subprocess.Popen(
            self.command,
            env=env,
            stdin=subprocess.DEVNULL,
            # Its own process group: a Ctrl-C at the terminal reaches the parent only, which
            # forwards one SIGTERM (two signals could cut a graceful stop short).
            process_group=0,
        )
        self.started_at = time.monotonic()
        self.restart_at = None
        self.answered_at = None
        self.killed = False
        log.info(
            "process %d started: pid %d, worker id %s, port %d",
            self.index,
            self.process.pid,
            self.settings.worker_id,
            self.settings.web_port,
        )

    def signal(self, signum: int) -> None:
        """Send a signal to the running process (after SIGCONT: a frozen one could not act)."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGCONT)
                self.process.send_signal(signum)


class SupervisorMetrics:
    """The parent's own metrics, served with its children's."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.restarts = Counter(
            "declic_worker_process_restarts",
            "Engine processes restarted by their parent after they died",
            ["process"],
            registry=self.registry,
        )
        self.running = Gauge(
            "declic_worker_processes_running",
            "Engine processes running under this worker",
            registry=self.registry,
        )


class Supervisor:
    """Run `settings.worker_processes` engine processes until SIGTERM or SIGINT."""

    def __init__(
        self,
        settings: Settings,
        command: Sequence[str] = WORKER_COMMAND,
        policy: RestartPolicy | None = None,
    ) -> None:
        if len(settings.worker_id) > 128 - _SUFFIX_ROOM:
            raise ConfigError(
                [("worker_id", f"at most {128 - _SUFFIX_ROOM} characters with several processes")]
            )
        self.settings = settings
        self.policy = policy or RestartPolicy()
        self.children = [Child(k, settings, command) for k in range(settings.worker_processes)]
        self.metrics = SupervisorMetrics()
        for child in self.children:
            self.metrics.restarts.labels(process=str(child.index))
        self.status = 0
        self._stop: asyncio.Event | None = None

    def stop(self) -> None:
        """Ask the supervisor to stop its children and return."""
        if self._stop is not None:
            self._stop.set()

    async def run(self) -> int:
        """Start the children and the web server; return the exit status once stopped."""
        from engine.supervisor_web import start_web

        self._stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stop.set)
        # SIGUSR1 makes a worker log its tasks' await chains: each process logs its own (the
        # default action would end the parent, and its processes with it).
        loop.add_signal_handler(signal.SIGUSR1, self._signal_children, signal.SIGUSR1)
        runner = await start_web(self)
        log.info(
            "declic worker %s: %d engine processes, serving http://%s:%d",
            self.settings.worker_id,
            len(self.children),
            self.settings.web_host,
            self.settings.web_port,
        )
        try:
            for child in self.children:
                self._start(child)
            while self.status == 0 and not self._stop.is_set():
                self.check_children(time.monotonic())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), POLL_SECONDS)
        finally:
            await asyncio.to_thread(self._stop_children)
            await runner.cleanup()
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
                loop.remove_signal_handler(signum)
        log.info("declic worker %s stopped", self.settings.worker_id)
        return self.status

    def _signal_children(self, signum: int) -> None:
        for child in self.children:
            child.signal(signum)

    def _start(self, child: Child) -> None:
        child.start()
        self.metrics.running.set(sum(1 for c in self.children if c.process is not None))

    def check_children(self, now: float) -> None:
        """Restart the children whose wait is over; handle those that died."""
        for child in self.children:
            if child.process is None:
                if child.restart_at is not None and now >= child.restart_at:
                    child.restarts += 1
                    self.metrics.restarts.labels(process=str(child.index)).inc()
                    self._start(child)
                continue
            status = child.process.poll()
            if status is None:
                self._kill_if_silent(child, now)
                continue
            self._died(child, status, now)
            if self.status:
                return

    def _kill_if_silent(self, child: Child, now: float) -> None:
        """Kill a child silent too long: a stuck event loop handles no SIGTERM either."""
        if child.killed or child.process is None:
            return
        since, allowance = (
            (child.started_at, self.policy.start_seconds)
            if child.answered_at is None
            else (child.answered_at, self.policy.hang_seconds)
        )
        if now - since <= allowance:
            return
        log.error(
            "process %d (pid %d) answered nothing for %.0f s (%s): killing it",
            child.index,
            child.process.pid,
            now - since,
            "since it started" if child.answered_at is None else "it answered before",
        )
        child.killed = True
        child.process.kill()

    def _died(self, child: Child, status: int, now: float) -> None:
        ran = now - child.started_at
        pid = child.pid
        child.process = None
        self.metrics.running.set(sum(1 for c in self.children if c.process is not None))
        if status in FATAL_STATUSES:
            log.error(
                "process %d (pid %s) ended (%s): no restart can help (see its log); "
                "stopping the worker",
                child.index,
                pid,
                describe_status(status),
            )
            self.status = status
            return
        child.instant_crashes = (
            child.instant_crashes + 1 if ran < self.policy.instant_seconds else 0
        )
        if child.instant_crashes >= self.policy.give_up_after:
            log.error(
                "process %d crashed %d times in a row within %.0f s of starting (last: %s); "
                "giving up, stopping the worker",
                child.index,
                child.instant_crashes,
                self.policy.instant_seconds,
                describe_status(status),
            )
            self.status = 1
            return
        wait = self.policy.backoff(child.instant_crashes)
        child.restart_at = now + wait
        log.warning(
            "process %d (pid %s) ended (%s) after %.1f s; restarting it in %.1f s",
            child.index,
            pid,
            describe_status(status),
            ran,
            wait,
        )

    def _stop_children(self) -> None:
        """SIGTERM every child, wait for their graceful stop (they commit), kill laggards."""
        running = [child for child in self.children if child.process is not None]
        for child in running:
            child.signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        for child in running:
            process = child.process
            assert process is not None
            try:
                status = process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning(
                    "process %d did not stop within %.0f s: killing it", child.index, STOP_SECONDS
                )
                process.kill()
                status = process.wait()
            log.info(
                "process %d (pid %d) stopped: %s", child.index, process.pid, describe_status(status)
            )
            child.process = None
        self.metrics.running.set(0)

    def describe(self) -> list[dict[str, Any]]:
        """Return each child's index, pid, worker id, port and restarts."""
        return [
            {
                "process": child.index,
                "pid": child.pid,
                "worker_id": child.settings.worker_id,
                "restarts": child.restarts,
            }
            for child in self.children
        ]


def run_supervisor(settings: Settings) -> int:
    """Run `declic worker` with several processes; return its exit status."""
    logging.getLogger().setLevel(settings.log_level)
    return asyncio.run(Supervisor(settings).run())
