"""`declic worker --processes N` without a broker: the parent's restarts, signals, /health
and /metrics, with stand-in children that serve what a worker serves."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from engine.bench.measure import alive
from engine.child_process import free_port
from engine.settings import Settings, load_settings
from engine.supervisor import RestartPolicy, Supervisor
from engine.supervisor_web import ChildAnswer, combine_health, merge_metrics

# A stand-in for `declic worker`: serves /health (one partition: its index) and /metrics on
# DECLIC_WEB_PORT, dies with its parent like a real child, stops on SIGTERM with status 0,
# notes a SIGUSR1 in its data directory.
FAKE_WORKER = """
import http.server, json, os, signal, sys
from engine.supervisor import follow_supervisor
follow_supervisor()
index = int(os.environ["DECLIC_WORKER_ID"].rsplit("-", 1)[1])
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/health":
            body = json.dumps({"status": "ok", "problems": [], "partitions": [index],
                "partition_states": {str(index): "running"},
                "records_committed": {"sessions": 10}}).encode()
        elif self.path == "/metrics":
            body = (b"# HELP declic_assigned_partitions Partitions\\n"
                    b"# TYPE declic_assigned_partitions gauge\\n"
                    b"declic_assigned_partitions 1.0\\n")
        elif self.path == "/hang":  # a stuck event loop: nothing answers any more
            while True:
                signal.pause()
        else:
            body = json.dumps({"path": self.path, "process": index}).encode()
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
def noted(*_):  # what a real worker does on SIGUSR1 (log its tasks), made visible
    os.makedirs(os.environ["DECLIC_DATA_DIR"], exist_ok=True)
    open(os.path.join(os.environ["DECLIC_DATA_DIR"], "sigusr1"), "w").close()
signal.signal(signal.SIGUSR1, noted)
http.server.HTTPServer(("127.0.0.1", int(os.environ["DECLIC_WEB_PORT"])), Handler).serve_forever()
"""
QUICK = RestartPolicy(first_backoff=0.05, max_backoff=0.2, instant_seconds=30, give_up_after=3)


def _settings(tmp_path: Path, processes: int = 2) -> Settings:
    return load_settings(
        {
            "worker_id": "w",
            "worker_processes": processes,
            "data_dir": tmp_path / "data",
            "web_port": free_port(),
            "kafka_bootstrap": "127.0.0.1:1",
        }
    )


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, bytes(error.read())
    except OSError:
        return 0, b""


async def _poll(url: str, accept: Any, seconds: float = 30) -> dict[str, Any]:
    """Poll a JSON URL until `accept(status, body)`; return the body."""
    deadline = time.monotonic() + seconds
    last: tuple[int, bytes] = (0, b"")
    while time.monotonic() < deadline:
        last = await asyncio.to_thread(_get, url)
        if last[0] and accept(last[0], json.loads(last[1])):
            return dict(json.loads(last[1]))
        await asyncio.sleep(0.05)
    raise AssertionError(f"{url} never as expected; last answer {last}")


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[tuple[Supervisor, asyncio.Task[int], str]]:
    supervisor = Supervisor(
        _settings(tmp_path), command=[sys.executable, "-c", FAKE_WORKER], policy=QUICK
    )
    task = asyncio.create_task(supervisor.run())
    try:
        yield supervisor, task, f"http://127.0.0.1:{supervisor.settings.web_port}"
    finally:
        supervisor.stop()
        await asyncio.wait_for(task, 60)


async def test_health_and_metrics_cover_every_process(
    running: tuple[Supervisor, asyncio.Task[int], str],
) -> None:
    _, _, url = running
    health = await _poll(f"{url}/health", lambda status, _: status == 200)
    assert health["partitions"] == [0, 1]
    assert [child["worker_id"] for child in health["children"]] == ["w-0", "w-1"]
    assert [child["partitions"] for child in health["children"]] == [[0], [1]]
    assert health["records_committed"] == {"sessions": 20}

    status, page = await asyncio.to_thread(_get, f"{url}/metrics")
    assert status == 200
    families = {f.name: f for f in text_string_to_metric_families(page.decode())}
    assigned = families["declic_assigned_partitions"].samples
    assert sorted(s.labels["process"] for s in assigned) == ["0", "1"]
    assert families["declic_worker_processes_running"].samples[0].value == 2

    status, body = await asyncio.to_thread(_get, f"{url}/diagnose/welcome?since=7d")
    assert status == 200 and json.loads(body)["path"] == "/diagnose/welcome?since=7d"


async def test_a_killed_process_is_restarted_and_counted(
    running: tuple[Supervisor, asyncio.Task[int], str],
) -> None:
    _, _, url = running
    health = await _poll(f"{url}/health", lambda status, _: status == 200)
    killed = health["children"][1]["pid"]
    os.kill(killed, signal.SIGKILL)
    health = await _poll(
        f"{url}/health",
        lambda status, body: status == 200 and body["children"][1]["pid"] not in (None, killed),
    )
    assert health["children"][1]["restarts"] == 1
    assert health["children"][0]["restarts"] == 0
    _, page = await asyncio.to_thread(_get, f"{url}/metrics")
    restarts = {
        s.labels["process"]: s.value
        for f in text_string_to_metric_families(page.decode())
        for s in f.samples
        if s.name == "declic_worker_process_restarts_total"
    }
    assert restarts == {"0": 0, "1": 1}


async def test_stop_ends_every_child(running: tuple[Supervisor, asyncio.Task[int], str]) -> None:
    supervisor, task, url = running
    health = await _poll(f"{url}/health", lambda status, _: status == 200)
    pids = [child["pid"] for child in health["children"]]
    supervisor.stop()
    assert await asyncio.wait_for(task, 60) == 0
    assert not any(alive(pid) for pid in pids)


async def test_repeated_instant_crashes_give_up_with_status_1(tmp_path: Path) -> None:
    command = [sys.executable, "-c", "raise SystemExit(1)"]
    supervisor = Supervisor(_settings(tmp_path), command=command, policy=QUICK)
    assert await asyncio.wait_for(supervisor.run(), 60) == 1
    assert max(child.restarts for child in supervisor.children) == QUICK.give_up_after - 1


async def test_invalid_settings_in_a_child_stop_the_worker_with_status_2(tmp_path: Path) -> None:
    command = [sys.executable, "-c", "raise SystemExit(2)"]
    supervisor = Supervisor(_settings(tmp_path), command=command, policy=QUICK)
    assert await asyncio.wait_for(supervisor.run(), 60) == 2
    assert all(child.restarts == 0 for child in supervisor.children)


def _parent(settings: Settings) -> subprocess.Popen[bytes]:
    """Start a supervisor of stand-in children in a process of its own (signals reach it)."""
    script = (
        "import asyncio, sys\n"
        "from engine.settings import load_settings\n"
        "from engine.supervisor import Supervisor\n"
        f"settings = load_settings({settings.model_dump(mode='json', include={'worker_id', 'worker_processes', 'data_dir', 'web_port', 'kafka_bootstrap'})!r})\n"  # noqa: E501
        f"asyncio.run(Supervisor(settings, command=[sys.executable, '-c', {FAKE_WORKER!r}]).run())\n"  # noqa: E501
    )
    return subprocess.Popen([sys.executable, "-c", script])


def test_children_die_with_a_killed_parent(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    parent = _parent(settings)
    try:
        url = f"http://127.0.0.1:{settings.web_port}/health"
        health = asyncio.run(_poll(url, lambda status, _: status == 200))
        pids = [child["pid"] for child in health["children"]]
        parent.kill()
        parent.wait(30)
        deadline = time.monotonic() + 30
        while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(alive(pid) for pid in pids), "children outlived their killed parent"
    finally:
        parent.kill()
        parent.wait(30)


def test_metrics_pages_merge_with_a_process_label_and_one_header_per_family() -> None:
    pages = []
    for index in range(2):
        registry = CollectorRegistry()
        Counter("declic_events_read", "Records", ["topic"], registry=registry).labels(
            "sessions"
        ).inc(index + 1)
        Gauge("declic_assigned_partitions", "Partitions", registry=registry).set(2)
        pages.append((index, generate_latest(registry).decode()))
    merged = merge_metrics("", pages)
    assert merged.count("# TYPE declic_events_read_total counter") == 1
    families = {f.name: f for f in text_string_to_metric_families(merged)}
    read = {
        s.labels["process"]: s.value
        for s in families["declic_events_read"].samples
        if s.name == "declic_events_read_total"
    }
    assert read == {"0": 1.0, "1": 2.0}
    assigned = families["declic_assigned_partitions"].samples
    assert [(s.labels, s.value) for s in assigned] == [({"process": "0"}, 2), ({"process": "1"}, 2)]


def test_health_is_unavailable_while_one_process_is() -> None:
    children = [
        {"process": k, "pid": 100 + k, "worker_id": f"w-{k}", "restarts": 0} for k in (0, 1)
    ]
    good = json.dumps({"partitions": [0, 1], "partition_states": {"0": "running", "1": "running"}})
    bad = json.dumps({"problems": ["waiting for Kafka"], "partitions": []})
    answers = [
        ChildAnswer(0, 200, good.encode(), "application/json"),
        ChildAnswer(1, 503, bad.encode(), "application/json"),
    ]
    ready, body = combine_health(children, answers)
    assert not ready and body["status"] == "unavailable"
    assert body["problems"] == ["process 1: waiting for Kafka"]
    assert body["partitions"] == [0, 1]

    silent = [answers[0], ChildAnswer(1, None, b"", "", "connection refused")]
    ready, body = combine_health(children, silent)
    assert not ready and body["problems"] == ["process 1: no answer (connection refused)"]


def test_restart_waits_double_with_each_instant_crash_up_to_the_cap() -> None:
    policy = RestartPolicy(first_backoff=0.5, max_backoff=4.0)
    assert [policy.backoff(n) for n in range(6)] == [0.5, 0.5, 1.0, 2.0, 4.0, 4.0]


def test_too_many_processes_or_none_are_refused() -> None:
    from engine.errors import ConfigError

    for value in (0, 257):
        with pytest.raises(ConfigError) as error:
            load_settings({"worker_processes": value})
        assert error.value.problems[0][0] == "worker_processes"


def test_sigusr1_to_the_parent_reaches_every_process_and_stops_none(tmp_path: Path) -> None:
    """README: SIGUSR1 logs every asyncio task's await chain; the parent passes it on."""
    settings = _settings(tmp_path)
    parent = _parent(settings)
    try:
        url = f"http://127.0.0.1:{settings.web_port}/health"
        asyncio.run(_poll(url, lambda status, _: status == 200))
        parent.send_signal(signal.SIGUSR1)
        notes = [settings.data_dir / str(k) / "sigusr1" for k in range(2)]
        deadline = time.monotonic() + 30
        while not all(n.exists() for n in notes) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert parent.poll() is None, f"SIGUSR1 ended the worker ({parent.returncode})"
        assert all(n.exists() for n in notes)
        health = asyncio.run(_poll(url, lambda status, _: status == 200))
        assert [child["restarts"] for child in health["children"]] == [0, 0]
    finally:
        parent.terminate()
        parent.wait(60)


def test_a_child_series_with_its_own_process_label_keeps_it_as_exported_process() -> None:
    page = (
        "# HELP declic_x Something\n# TYPE declic_x gauge\n"
        'declic_x{process="faust",topic="a"} 1.0\n'
    )
    merged = merge_metrics("", [(0, page)])
    (family,) = text_string_to_metric_families(merged)
    assert [s.labels for s in family.samples] == [
        {"process": "0", "exported_process": "faust", "topic": "a"}
    ]
    # Prometheus refuses a series naming one label twice: each sample names each once.
    for line in merged.splitlines():
        if not line.startswith("#"):
            names = re.findall(r'([a-zA-Z_]\w*)="', line)
            assert len(names) == len(set(names)), line


async def test_a_process_that_stops_answering_is_killed_and_restarted(tmp_path: Path) -> None:
    """The pod's liveness probe asks only the parent: the parent watches each process."""
    policy = RestartPolicy(
        first_backoff=0.05, instant_seconds=0.5, hang_seconds=4.0, probe_seconds=0.1
    )
    supervisor = Supervisor(
        _settings(tmp_path), command=[sys.executable, "-c", FAKE_WORKER], policy=policy
    )
    task = asyncio.create_task(supervisor.run())
    try:
        url = f"http://127.0.0.1:{supervisor.settings.web_port}/health"
        health = await _poll(url, lambda status, _: status == 200)
        stuck = health["children"][1]["pid"]
        hang = asyncio.create_task(
            asyncio.to_thread(_get, supervisor.children[1].base_url + "/hang")
        )
        # Meanwhile the parent answers (within _get's 5 s) for the processes that can.
        health = await _poll(
            url, lambda status, body: status == 503 and body["problems"][0].startswith("process 1:")
        )
        assert health["children"][0]["status"] == "ok"
        health = await _poll(
            url,
            lambda status, body: status == 200 and body["children"][1]["pid"] not in (None, stuck),
        )
        assert [child["restarts"] for child in health["children"]] == [0, 1]
        assert not alive(stuck)
        await hang
    finally:
        supervisor.stop()
        assert await asyncio.wait_for(task, 60) == 0


async def test_a_process_that_never_answers_is_killed_after_the_start_allowance(
    tmp_path: Path,
) -> None:
    never = [sys.executable, "-c", "import signal\nwhile True: signal.pause()"]
    policy = RestartPolicy(
        first_backoff=0.05, instant_seconds=30, give_up_after=2, start_seconds=0.5
    )
    supervisor = Supervisor(_settings(tmp_path, processes=1), command=never, policy=policy)
    assert await asyncio.wait_for(supervisor.run(), 60) == 1
    assert supervisor.children[0].restarts == 1


async def test_a_stop_during_a_restart_wait_starts_nothing_more(tmp_path: Path) -> None:
    slow = RestartPolicy(first_backoff=600.0, max_backoff=600.0)
    supervisor = Supervisor(
        _settings(tmp_path), command=[sys.executable, "-c", FAKE_WORKER], policy=slow
    )
    task = asyncio.create_task(supervisor.run())
    url = f"http://127.0.0.1:{supervisor.settings.web_port}/health"
    health = await _poll(url, lambda status, _: status == 200)
    os.kill(health["children"][1]["pid"], signal.SIGKILL)
    health = await _poll(url, lambda _, body: body["children"][1]["pid"] is None)
    assert health["problems"] == ["process 1: not running (restarting)"]
    supervisor.stop()
    assert await asyncio.wait_for(task, 60) == 0
    assert [child.pid for child in supervisor.children] == [None, None]
    assert supervisor.children[1].restarts == 0
