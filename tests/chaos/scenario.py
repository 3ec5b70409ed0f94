"""One chaos scenario: workers on the cluster, load, faults on a schedule, then the referee.

A scenario gets topics of its own, two engagements (one delivered once per user at
once, one once per user after a delay), three workers, the publisher, the app and the
lag sampler; it runs its faults while the load goes on, stops the publisher, waits
until everything owed has been produced (lag 0, no pending delivery, the app caught
up), and asks the referee. Its figures go to ``.run/chaos/<name>.json``.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from engine.admin.engagements import apply_engagements
from engine.child_process import free_port
from engine.settings import load_settings
from engine.stream.topics import ensure_topics
from engine.worker_process import WorkerProcess
from tests.chaos.conftest import Cluster
from tests.chaos.load import CART, VISIT, ImpressionApp, LagSampler, Publisher
from tests.chaos.referee import referee
from tests.offsets import group_lag

REPORT_DIR = Path(__file__).resolve().parents[2] / ".run" / "chaos"
WORKERS = 3
PARTITIONS = 6
USERS = 3_000
RATE = 150.0  # events per second
DELAY_SECONDS = 4
SETTLE_SECONDS = 180.0


class Scenario:
    """Workers, load and faults for one scenario."""

    def __init__(self, name: str, cluster: Cluster, tmp: Path) -> None:
        self.name = name
        self.cluster = cluster
        run = f"chaos-{name}-{uuid.uuid4().hex[:6]}"
        self.settings = load_settings(
            {
                "kafka_bootstrap": cluster.bootstrap,
                "topic_prefix": f"{run}-",
                "partitions": PARTITIONS,
                "replication_factor": 3,
                "data_dir": tmp / "data",
                "stats_interval_seconds": 5,
                "author": "chaos",
            }
        )
        self.once_id, self.delayed_id = f"{run}-once", f"{run}-later"
        self.workers = [self._worker(n, tmp) for n in range(WORKERS)]
        self.publisher = Publisher(self.settings, run, USERS, RATE)
        self.app = ImpressionApp(self.settings, self.publisher.sent)
        self.lag = LagSampler(self.settings)
        self.faults: list[tuple[str, float]] = []  # (what, monotonic time)
        self.expected_exits: set[int] = set()
        self.unexpected_exits = 0
        self._started = 0.0

    def _worker(self, n: int, tmp: Path) -> WorkerProcess:
        settings = self.settings.model_copy(
            update={
                "worker_id": f"{self.settings.topic_prefix}w{n}",
                "web_port": free_port(),
                "data_dir": tmp / f"worker-{n}",
            }
        )
        return WorkerProcess(settings, tmp / "logs" / f"worker-{n}.log")

    def engagements(self) -> list[dict[str, Any]]:
        """Return the engagement delivered once per user at once, and the delayed one."""
        return [
            _engagement(self.once_id, {"event": "custom", "name": VISIT}),
            _engagement(
                self.delayed_id,
                {"event": "custom", "name": CART, "delay_seconds": DELAY_SECONDS},
            ),
        ]

    async def start(self) -> None:
        """Create topics, apply the engagements, start the workers and the load."""
        await ensure_topics(self.settings)
        await apply_engagements(self.settings, self.engagements(), int(time.time() * 1000))
        for worker in self.workers:
            worker.start()
        await self.wait_all_partitions_running()
        self.lag.start()
        self.app.start()
        self.publisher.start()
        self._started = time.monotonic()

    async def at(self, seconds: float) -> None:
        """Wait until ``seconds`` after the load started; check no worker exited meanwhile."""
        while (left := self._started + seconds - time.monotonic()) > 0:
            await asyncio.sleep(min(left, 0.5))
            self._check_workers()

    def _check_workers(self) -> None:
        for n, worker in enumerate(self.workers):
            if n not in self.expected_exits and not worker.running:
                self.unexpected_exits += 1
                self.expected_exits.add(n)  # counted once; the test fails on it

    def fault(self, what: str) -> None:
        self.faults.append((what, time.monotonic()))

    def kill_worker(self, n: int, *, wipe_state: bool = False) -> None:
        self.expected_exits.add(n)
        self.fault(f"SIGKILL worker {n}" + (" and delete its data directory" if wipe_state else ""))
        self.workers[n].kill()
        if wipe_state:
            shutil.rmtree(self.workers[n].settings.data_dir, ignore_errors=True)

    def restart_worker(self, n: int) -> None:
        self.workers[n].start()
        self.expected_exits.discard(n)

    async def wait_all_partitions_running(self) -> None:
        timeout = 240
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            running: set[int] = set()
            for worker in self.workers:
                if worker.running:
                    try:
                        health = await asyncio.to_thread(worker.health)
                    except (OSError, ValueError):
                        continue
                    running.update(health["partitions"])
            if running == set(range(PARTITIONS)):
                return
            await asyncio.sleep(0.5)
        raise AssertionError(f"{self.name}: partitions not all running after {timeout}s")

    async def finish(self) -> dict[str, Any]:
        """Stop the load, wait for everything owed, referee, stop the workers; report."""
        sent = await self.publisher.stop()
        load_seconds = time.monotonic() - self._started
        self._check_workers()
        await self._settle(app=True)
        await self.app.stop()
        await self._settle(app=False)  # the app's last impressions are joined too
        await self.lag.stop()
        counts = await referee(
            self.settings, sent, self.once_id, self.delayed_id, self.cluster.consume
        )
        self._check_workers()
        recoveries = [
            self.lag.caught_up_after(at)
            for what, at in self.faults
            if what.startswith(("SIGKILL", "SIGSTOP"))
        ]
        measured = [seconds for seconds in recoveries if seconds is not None]
        report = {
            "scenario": self.name,
            "load_seconds": round(load_seconds, 1),
            "events_sent": sent.events,
            "events_refused_by_the_cluster": sent.refused,
            "faults": [what for what, _ in self.faults],
            "catch_up_seconds_median": round(statistics.median(measured), 1) if measured else None,
            "catch_up_seconds_max": round(max(measured), 1) if measured else None,
            "catch_ups_not_measured": len(recoveries) - len(measured),
            "worker_exits_unexpected": self.unexpected_exits,
            **counts,
        }
        REPORT_DIR.mkdir(parents=True, exist_ok=True)
        (REPORT_DIR / f"{self.name}.json").write_text(json.dumps(report, indent=2) + "\n")
        return report

    def keep_logs(self) -> None:
        """Copy the workers' logs to ``.run/chaos/<scenario>-logs/``."""
        kept = REPORT_DIR / f"{self.name}-logs"
        for worker in self.workers:
            kept.mkdir(parents=True, exist_ok=True)
            if worker.log_path.exists():
                shutil.copy(worker.log_path, kept / worker.log_path.name)

    async def close(self) -> None:
        """Stop whatever still runs: the load, the app, the sampler, the workers."""
        for part in (self.publisher, self.app, self.lag):
            try:
                await part.stop()
            except Exception as error:  # closing after a failure: report, go on
                print(f"{self.name}: stopping {type(part).__name__}: {error!r}")
        for worker in self.workers:
            worker.stop()

    async def _settle(self, *, app: bool) -> None:
        """Wait until the group has committed every input and no delivery is pending (and
        the app has shown every delivery)."""
        deadline = time.monotonic() + SETTLE_SECONDS
        while time.monotonic() < deadline:
            try:
                lag = await group_lag(self.settings)
            except Exception:
                lag = -1
            if lag == 0 and await self._pending() == 0 and (not app or await self.app.caught_up()):
                return
            await asyncio.sleep(0.5)
        raise AssertionError(f"{self.name}: did not settle in {SETTLE_SECONDS}s")

    async def _pending(self) -> float:
        total = 0.0
        for worker in self.workers:
            if not worker.running:
                continue  # an exit is reported on its own; its partitions moved on
            try:
                text = await asyncio.to_thread(worker.metrics_text)
            except (OSError, ValueError):
                return float("inf")  # not answering yet: unknown
            for family in text_string_to_metric_families(text):
                if family.name == "declic_pending_deliveries":
                    total += sum(sample.value for sample in family.samples)
        return total


def _engagement(engagement_id: str, trigger: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": engagement_id,
        "name": engagement_id,
        "status": "active",
        "trigger": trigger,
        "message": {"title": "Hello", "body": "..."},
        "ignore_frequency_caps": True,
    }


def failures(report: dict[str, Any]) -> dict[str, int]:
    """Return the referee's non-zero counts and unexpected worker exits (what broke)."""
    broken = (
        "lost_",
        "duplicated_",
        "second_",
        "unexpected_",
        "delayed_released_",
        "worker_exits_unexpected",
        "aiokafka_disagreements",
    )
    return {key: value for key, value in report.items() if key.startswith(broken) and value}
