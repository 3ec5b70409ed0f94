"""Who used the CPUs during a measured run: the broker, the engine processes, the machine.

Read from /proc (Linux): a process's utime + stime, the machine's busy time. The broker is
found as the local process listening on a bootstrap port (a broker on another machine is
not measured, and the report says so). The figures are cores used on average over the run:
CPU seconds over wall seconds.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]", "0.0.0.0"})
_LISTEN = "0A"


def _local_ports(bootstrap: str) -> list[int]:
    """Return the ports of the bootstrap servers that are on this machine."""
    local = _LOCAL_HOSTS | {socket.gethostname()}
    ports = []
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        if host in local and port.isdigit():
            ports.append(int(port))
    return ports


def _listening_inodes(ports: Iterable[int]) -> set[str]:
    wanted = set(ports)
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            listening = len(fields) > 9 and fields[3] == _LISTEN
            if listening and int(fields[1].rsplit(":", 1)[1], 16) in wanted:
                inodes.add(fields[9])
    return inodes


def broker_pids(bootstrap: str) -> list[int]:
    """Return the pids of the local processes listening on a bootstrap port (ours only:
    another user's file descriptors cannot be read)."""
    inodes = _listening_inodes(_local_ports(bootstrap))
    if not inodes:
        return []
    sockets = {f"socket:[{inode}]" for inode in inodes}
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        if sockets & _links(entry / "fd"):
            found.append(int(entry.name))
    return found


def _links(fds: Path) -> set[str]:
    """Return what a process's file descriptors point to; those closed meanwhile skipped."""
    try:
        entries = list(fds.iterdir())
    except OSError:  # gone, or another user's
        return set()
    links = set()
    for fd in entries:
        try:
            links.add(os.readlink(fd))
        except OSError:
            continue
    return links


def children_of(pid: int) -> list[int]:
    """Return the pids of a process's children."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def cpu_seconds(pids: Iterable[int]) -> float:
    """Return the CPU time (user + system) the processes used so far; 0 for one gone."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / _TICKS
    return total


def machine_seconds() -> tuple[float, float]:
    """Return the machine's (busy, total) CPU seconds since boot, all CPUs together."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    total = sum(values[:8])  # user nice system idle iowait irq softirq steal
    idle = values[3] + values[4]
    return (total - idle) / _TICKS, total / _TICKS


class CpuMeter:
    """CPU used by the broker, the engine processes and the machine from start to stop."""

    def __init__(self, bootstrap: str, engine_pids: Sequence[int]) -> None:
        self.broker = broker_pids(bootstrap)
        self.engine = list(engine_pids)
        self._start = self._sample()

    def _sample(self) -> tuple[float, float, float, float, float]:
        busy, total = machine_seconds()
        return (
            time.monotonic(),
            cpu_seconds(self.broker),
            cpu_seconds(self.engine),
            busy,
            total,
        )

    def stop(self) -> dict[str, Any]:
        """Return cores used on average: by the broker, the engine, the whole machine."""
        end = self._sample()
        wall = max(end[0] - self._start[0], 1e-9)
        total = end[4] - self._start[4]
        cores = os.cpu_count() or 1
        busy_cores = (end[3] - self._start[3]) / total * cores if total > 0 else 0.0
        broker = (end[1] - self._start[1]) / wall
        engine = (end[2] - self._start[2]) / wall
        return {
            "seconds": wall,
            "machine_cores": cores,
            "broker_found": bool(self.broker),
            "broker_cores": broker if self.broker else None,
            "engine_cores": engine,
            "machine_busy_cores": busy_cores,
            # Everything else the machine ran meanwhile: the bench itself, other tenants.
            "other_cores": max(0.0, busy_cores - engine - (broker if self.broker else 0.0)),
        }


def all_processes(pid: int) -> list[int]:
    """Return a worker's processes: itself, and its engine processes if it supervises some."""
    return [pid, *children_of(pid)]


def engine_processes(pid: int) -> list[int]:
    """Return a worker's engine processes: its children if it supervises some, else itself."""
    return children_of(pid) or [pid]


def pids_of(workers: Iterable[Any], expand: Callable[[int], list[int]]) -> list[int]:
    """Return the pids `expand` gives for each running worker (anything with a ``pid``)."""
    return [pid for worker in workers if worker.pid for pid in expand(worker.pid)]


def describe(usage: dict[str, Any]) -> str:
    """Return a usage in words: who used how many of the machine's cores."""
    cores = usage["machine_cores"]
    broker = (
        f"broker {usage['broker_cores']:.2f}"
        if usage["broker_found"]
        else "broker not measured (not a local process of ours)"
    )
    return (
        f"{broker}, engine {usage['engine_cores']:.2f}, other {usage['other_cores']:.2f} "
        f"of {cores} cores ({usage['machine_busy_cores']:.2f} busy)"
    )
