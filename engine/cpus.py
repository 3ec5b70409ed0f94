"""How many CPUs this process may use: the default count of `declic worker --processes`."""

from __future__ import annotations

import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
SELF_CGROUP = Path("/proc/self/cgroup")


def cgroup_cpu_limit(root: Path = CGROUP_ROOT, own: Path = SELF_CGROUP) -> int | None:
    """Return the CPUs the cgroup v2 quotas of this process allow, None without a quota.

    ``cpu.max`` holds "max <period>" or "<quota> <period>": ceil(quota / period), at least 1.
    The tightest quota from the process's cgroup up to the root counts: a pod's CPU limit is
    set on the pod's cgroup, above its containers' (and is the root in the container's own
    cgroup namespace).
    """
    try:
        lines = own.read_text().splitlines()
    except OSError:
        lines = []
    path = next((line[3:] for line in lines if line.startswith("0::")), "/")
    directory = root / path.strip("/")
    limits: list[int] = []
    while True:
        try:
            quota, period = (directory / "cpu.max").read_text().split()[:2]
            if quota != "max" and int(quota) > 0 and int(period) > 0:
                limits.append(max(1, -(-int(quota) // int(period))))
        except (OSError, ValueError):  # no file at this level, or not a quota
            pass
        if directory == root or root not in directory.parents:
            break
        directory = directory.parent
    return min(limits, default=None)


def usable_cpus(root: Path = CGROUP_ROOT, own: Path = SELF_CGROUP) -> int:
    """Return how many CPUs this process may use: its affinity (a container's cpuset), and
    no more than its cgroup's CPU quota (a Kubernetes CPU limit)."""
    try:
        cpus = len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # no sched_getaffinity outside Linux
        cpus = os.cpu_count() or 1
    return min(cpus, cgroup_cpu_limit(root, own) or cpus)
