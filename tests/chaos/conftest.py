"""Chaos fixtures: a real three-node Kafka cluster on this machine, started for the session.

`deploy/local/kafka.sh cluster-start` runs it (KRaft, replication factor 3,
min.insync.replicas 2) on ports 39092-39113 and in `.run/chaos-cluster`, apart from
a cluster a developer may run; it is stopped and its data deleted at the end. Under CI a
cluster that cannot start fails the tests; elsewhere they are skipped with the reason.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KAFKA_SH = ROOT / "deploy" / "local" / "kafka.sh"
NODES = 3
CONSUME_IDLE_MS = 20_000
# A cluster of the tests' own, apart from one a developer may run with kafka.sh.
CLUSTER_ENV = {
    "DECLIC_KAFKA_CLUSTER_RUN_DIR": str(ROOT / ".run" / "chaos-cluster"),
    "DECLIC_KAFKA_CLUSTER_PORT": "39092",
}


def _kafka_sh(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(KAFKA_SH), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **CLUSTER_ENV},
    )


pytestmark = pytest.mark.chaos


class Cluster:
    """The running cluster: its bootstrap list, and its nodes to stop and start."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap

    def run(self, *args: str, timeout: float = 180) -> str:
        result = _kafka_sh(*args, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"kafka.sh {' '.join(args)} failed: {result.stderr[-2000:]}")
        return result.stdout.strip()

    def kill_node(self, node: int) -> None:
        self.run("node-kill", str(node))

    def start_node(self, node: int) -> None:
        self.run("node-start", str(node))

    def consume(self, topic: str) -> list[bytes]:
        """Return every committed value of ``topic``, read by Kafka's Java console consumer."""
        output = self.run(
            "cluster-consume",
            "--topic",
            topic,
            "--from-beginning",
            "--isolation-level",
            "read_committed",
            # Everything is committed by now: the end is when nothing came for this long.
            "--timeout-ms",
            str(CONSUME_IDLE_MS),
            timeout=600,
        )
        return [line.encode() for line in output.split("\n") if line]  # not splitlines: U+2028

    def wait_healthy(self) -> None:
        self.run("cluster-wait", "180", timeout=240)


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    """Start a fresh three-node cluster for the session; stop and delete it after."""
    on_ci = os.environ.get("CI", "").lower() == "true"
    setup = _kafka_sh("cluster-reset")
    started = _kafka_sh("cluster-start", str(NODES))
    if setup.returncode != 0 or started.returncode != 0:
        reason = f"no three-node cluster: {(setup.stderr + started.stderr)[-2000:]}"
        _kafka_sh("cluster-stop")
        if on_ci:
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield Cluster(started.stdout.strip().splitlines()[-1])
    finally:
        _kafka_sh("cluster-reset")
