"""The default count of `declic worker --processes`: the CPUs the worker may use."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.cpus import cgroup_cpu_limit, usable_cpus


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu.max": "150000 100000\n"}, 2),
        ({"cpu.max": "50000 100000\n"}, 1),
        ({"cpu.max": "400000 100000\n", "pod/cpu.max": "max 100000\n"}, 4),
        # A pod's limit sits on the pod's cgroup, above the container's own.
        ({"pod/cpu.max": "200000 100000\n", "pod/c1/cpu.max": "max 100000\n"}, 2),
        ({"cpu.max": "garbage\n"}, None),
        ({}, None),
    ],
)
def test_the_default_process_count_follows_the_cgroup_cpu_quota(
    tmp_path: Path, files: dict[str, str], expected: int | None
) -> None:
    root = tmp_path / "cgroup"
    (root / "pod" / "c1").mkdir(parents=True)
    for name, text in files.items():
        (root / name).write_text(text)
    own = tmp_path / "self-cgroup"
    own.write_text("0::/pod/c1\n")
    assert cgroup_cpu_limit(root, own) == expected
    affinity = len(os.sched_getaffinity(0))
    assert usable_cpus(root, own) == min(affinity, expected or affinity)
