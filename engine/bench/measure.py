"""Measurements of a running worker: its counters, memory, state size, and the floor child."""

from __future__ import annotations

import math
import os
import select
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from engine.bench.faust_floor import RESULT_MARKER
from engine.bench.kafka_io import BenchError
from engine.worker_process import WorkerProcess

POLL_SECONDS = 0.2


def events_read(worker: WorkerProcess) -> dict[str, float] | None:
    """Return the input records the worker committed, by input topic; None if it did not answer.

    Read from /health, which is cheap: rendering /metrics, with its series per engagement,
    would cost the worker tens of milliseconds per poll. A worker busy with a large batch
    may answer late: that sample is skipped, not fatal.
    """
    try:
        with urllib.request.urlopen(f"{worker.base_url}/health", timeout=10) as response:
            body = orjson.loads(response.read())
    except (OSError, ValueError):
        return None
    committed = body.get("records_committed") if isinstance(body, dict) else None
    if not isinstance(committed, dict):
        return None
    return {str(topic): float(count) for topic, count in committed.items()}


def events_read_by(workers: Sequence[WorkerProcess]) -> dict[str, float] | None:
    """Return the sum of `events_read` over workers; None if one of them did not answer."""
    total: dict[str, float] = {}
    for worker in workers:
        counts = events_read(worker)
        if counts is None:
            return None
        for topic, count in counts.items():
            total[topic] = total.get(topic, 0.0) + count
    return total


def serving(worker: WorkerProcess) -> bool:
    """Return whether /health answers 200 with every partition assigned to the worker running.

    A partition still recovering its state from the changelog is assigned but not running.
    """
    try:
        status, body = worker.health_status()
    except (OSError, ValueError):
        return False
    states = body.get("partition_states")
    everything = {str(number) for number in range(worker.settings.partitions)}
    return (
        status == 200
        and isinstance(states, dict)
        and set(states) == everything
        and set(states.values()) == {"running"}
    )


def metric_total(metrics_text: str, name: str) -> float:
    """Return the sum of a metric's samples (every label set) in a /metrics page; 0 if absent."""
    total = 0.0
    for line in metrics_text.splitlines():
        sample, _, value = line.rpartition(" ")
        if sample == name or sample.startswith(name + "{"):
            total += float(value)
    return total


def stall_buckets(workers: Sequence[WorkerProcess]) -> dict[float, float]:
    """Return the workers' loop stalls so far, as cumulative counts by bucket bound."""
    counts: dict[float, float] = {}
    for worker in workers:
        for bound, count in stall_buckets_in(worker.metrics_text()).items():
            counts[bound] = counts.get(bound, 0.0) + count
    return counts


def stall_buckets_in(metrics_text: str) -> dict[float, float]:
    """Return the loop-stall histogram of a /metrics page, summed over its processes (a
    worker of several processes labels each one's series)."""
    counts: dict[float, float] = {}
    for line in metrics_text.splitlines():
        if line.startswith("declic_loop_stall_seconds_bucket{"):
            sample, _, value = line.rpartition(" ")
            bound = float(sample.partition('le="')[2].partition('"')[0])
            counts[bound] = counts.get(bound, 0.0) + float(value)
    return counts


def stalls_between(before: dict[float, float], after: dict[float, float]) -> dict[str, Any]:
    """Return the loop stalls observed between two `stall_buckets` readings: how many
    lasted over 100 ms, and the bucket bound the longest fits under."""
    grown = {bound: after[bound] - before.get(bound, 0.0) for bound in sorted(after)}
    total = grown.get(math.inf, 0.0)
    longest = next((bound for bound, count in grown.items() if count >= total), math.inf)
    return {
        "over_100ms": total - grown.get(0.1, 0.0),
        "longest_under_seconds": longest,
    }


def percentile(values: list[float], share: float) -> float:
    """Return the value below which ``share`` of ``values`` fall (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def sustained_rate(
    series: list[tuple[float, dict[str, float]]], topics: Sequence[str], baseline: float = 0.0
) -> dict[str, float]:
    """Return records/s from the last sample before any commit to the last commit seen.

    Summed over `topics`. When the first sample already shows commits, count from it.
    """
    totals = [
        (moment, sum(counts.get(topic, 0.0) for topic in topics)) for moment, counts in series
    ]
    moved = [(moment, total) for moment, total in totals if total > baseline]
    if not moved:
        return {"records": 0.0, "seconds": 0.0, "records_per_second": 0.0}
    final = moved[-1][1]
    last_moment = next(moment for moment, total in moved if total >= final)
    idle = [(moment, total) for moment, total in totals if moment < moved[0][0]]
    first_moment, first_total = (idle[-1][0], baseline) if idle else moved[0]
    seconds = last_moment - first_moment
    if seconds <= 0:  # everything committed between two polls: one poll interval at most
        seconds, first_total = POLL_SECONDS, baseline
    records = final - first_total
    return {"records": records, "seconds": seconds, "records_per_second": records / seconds}


def alive(pid: int | None) -> bool:
    """Return whether a child process still runs (neither reaped nor a zombie)."""
    if pid is None:
        return False
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def peak_rss_bytes(pid: int) -> int:
    """Return a process's peak resident set size (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise BenchError(f"no VmHWM in /proc/{pid}/status")


def directory_bytes(path: Path) -> int:
    """Return the total size of the files under a directory."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += (Path(root) / name).stat().st_size
            except OSError:
                continue
    return total


def run_floor(
    command: list[str], log_path: Path, timeout: float, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run the Faust floor child (in ``env``, ours by default) until it prints its JSON
    result; stop it; return the result."""
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, env=env
        )
        assert process.stdout is not None
        try:
            deadline = time.monotonic() + timeout
            buffer = b""
            while (found := _result_line(buffer)) is None:
                if process.poll() is not None:
                    raise BenchError(f"the Faust floor exited early; see {log_path}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise BenchError(f"the Faust floor gave no result in {timeout:.0f}s")
                ready, _, _ = select.select([process.stdout], [], [], min(remaining, 1.0))
                if ready:
                    buffer += os.read(process.stdout.fileno(), 65536)
            result: dict[str, Any] = orjson.loads(found)
            return result
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(30)
            process.stdout.close()


class DiagnoseLoad:
    """The `engine.bench.diagnose_load` child: one client per URL requesting it in a loop."""

    def __init__(self, urls: Sequence[str], log_path: Path) -> None:
        self.urls = list(urls)
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the clients."""
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "engine.bench.diagnose_load", *self.urls],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
            )

    def stop(self, timeout: float = 60.0) -> dict[str, Any]:
        """Stop the clients; return the requests served, their p50 / p99 ms and the errors."""
        process = self._process
        assert process is not None, "start() first"
        self._process = None
        try:
            output, _ = process.communicate(b"", timeout)  # closing stdin stops the clients
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise BenchError(f"the diagnose clients did not stop; see {self.log_path}") from None
        if process.returncode != 0:
            raise BenchError(f"the diagnose clients failed; see {self.log_path}")
        result = orjson.loads(output)
        durations: list[float] = result["durations_ms"]
        summary: dict[str, Any] = {
            "clients": result["clients"],
            "seconds": result["seconds"],
            "requests": len(durations),
            "errors": result["errors"],
        }
        if durations:
            summary["request_ms_p50"] = percentile(durations, 0.50)
            summary["request_ms_p99"] = percentile(durations, 0.99)
        return summary

    def kill(self) -> None:
        """Stop the clients at once, their figures unread (the phase failed)."""
        process = self._process
        self._process = None
        if process is not None and process.poll() is None:
            process.kill()
            process.communicate()


def _result_line(output: bytes) -> bytes | None:
    # Complete lines only; Faust's spinner may write terminal escapes before the marker.
    marker = RESULT_MARKER.encode()
    for line in output.split(b"\n")[:-1]:
        at = line.find(marker)
        if at >= 0:
            return line[at + len(marker) :]
    return None
