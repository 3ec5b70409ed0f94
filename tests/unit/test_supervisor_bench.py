"""`declic bench --workers`: who used the cores (read from /proc), and the scaling rows."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from engine.bench import cpu
from engine.bench.report import render_table
from engine.child_process import free_port

LISTEN_AND_SPIN = """
import socket, sys, time
server = socket.socket()
server.bind(("127.0.0.1", int(sys.argv[1])))
server.listen()
print("listening", flush=True)
end = time.monotonic() + 60
while time.monotonic() < end:
    pass
"""


def test_the_broker_is_the_local_process_on_the_bootstrap_port_and_its_cpu_is_counted() -> None:
    port = free_port()
    spinner = subprocess.Popen(
        [sys.executable, "-c", LISTEN_AND_SPIN, str(port)], stdout=subprocess.PIPE
    )
    try:
        assert spinner.stdout is not None and spinner.stdout.readline() == b"listening\n"
        assert cpu.broker_pids(f"127.0.0.1:{port}") == [spinner.pid]
        assert cpu.broker_pids(f"kafka.example:{port}") == []  # not this machine: unmeasured
        assert spinner.pid in cpu.children_of(os.getpid())
        meter = cpu.CpuMeter(f"127.0.0.1:{port}", [os.getpid()])
        before = cpu.cpu_seconds([spinner.pid])
        deadline = time.monotonic() + 30
        while cpu.cpu_seconds([spinner.pid]) < before + 0.2 and time.monotonic() < deadline:
            time.sleep(0.05)
        usage = meter.stop()
    finally:
        spinner.kill()
        spinner.wait(30)
    assert usage["broker_found"] is True
    assert 0 < usage["broker_cores"] <= usage["machine_cores"]
    assert usage["machine_busy_cores"] >= usage["broker_cores"] * 0.5


def test_the_table_shows_the_scaling_and_the_cores_each_used() -> None:
    usage = {
        "seconds": 10.0,
        "machine_cores": 2,
        "broker_found": True,
        "broker_cores": 0.5,
        "engine_cores": 1.25,
        "machine_busy_cores": 1.9,
        "other_cores": 0.15,
    }
    unmeasured = {**usage, "broker_found": False, "broker_cores": None, "other_cores": 0.65}
    results = {
        "options": {"users": 10, "engagements": 1, "events": 100, "partitions": 4},
        "engine": {
            "events_per_second": 2000.0,
            "workers": 2,
            "peak_rss_bytes": 1,
            "state_bytes": 1,
            "cpu": usage,
        },
        "ceiling": {"events_per_second": 4000.0},
        "floor": {"events_per_second": 500.0},
        "engine_over_floor": 4.0,
        "engine_over_ceiling": 0.5,
        "scaling": {
            "processes": 2,
            "one_process_input_records_per_second": 1000.0,
            "input_records_per_second": 1500.0,
            "ratio": 1.5,
            "cpu_one_process": unmeasured,
            "cpu": usage,
        },
    }
    rows = {
        label.strip(): value
        for label, value in (line.split("  ", 1) for line in render_table(results).splitlines())
    }
    assert rows["input records/s, 1 -> 2 processes"].strip() == "1,000 -> 1,500 (1.50x)"
    assert rows["cores used, 2 process(es)"].strip() == (
        "broker 0.50, engine 1.25, other 0.15 of 2 cores (1.90 busy)"
    )
    assert rows["cores used, 1 process"].strip().startswith("broker not measured")
