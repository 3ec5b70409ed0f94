"""`declic bench --diagnose-clients`: the option, the client child and the report, no broker."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from engine.bench.measure import DiagnoseLoad
from engine.bench.report import combine_runs, render_table
from engine.cli import main


class _Handler(BaseHTTPRequestHandler):
    served = 0
    many_served = threading.Event()  # set once the clients got several answers

    def do_GET(self) -> None:
        status = 200 if self.path.startswith("/diagnose/") else 404
        body = b'{"engagement_id": "x"}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        if status == 200:
            type(self).served += 1
            if type(self).served >= 6:
                type(self).many_served.set()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_diagnose_clients_need_rate(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--diagnose-clients", "5"]) == 2
    assert "--diagnose-clients" in capsys.readouterr().err


def test_the_clients_request_in_a_loop_until_stopped(server: str, tmp_path: Path) -> None:
    load = DiagnoseLoad(
        [f"{server}/diagnose/x", f"{server}/diagnose/x", f"{server}/missing"],
        tmp_path / "clients.log",
    )
    load.start()
    assert _Handler.many_served.wait(60), "the clients sent no requests"
    summary = load.stop()
    assert summary["clients"] == 3
    assert summary["requests"] > 2
    assert 0 <= summary["request_ms_p50"] <= summary["request_ms_p99"]
    assert set(summary["errors"]) == {"http 404"}


def _results(p50: float, requests: int) -> dict[str, Any]:
    fixed = {"rate": 100.0, "deliveries": 10, "latency_ms_p50": 5.0, "latency_ms_p99": 9.0}
    return {
        "started_at": "now",
        "options": {"users": 1, "engagements": 1, "events": 1, "partitions": 1},
        "engine": {
            "events_per_second": 1.0,
            "peak_rss_bytes": 1,
            "state_bytes": 1,
            "fixed_rate": fixed,
            "fixed_rate_diagnose": {
                **fixed,
                "latency_ms_p50": p50,
                "latency_ms_p99": 2 * p50,
                "diagnose": {
                    "clients": 20,
                    "requests": requests,
                    "errors": {"http 503": 2},
                    "request_ms_p50": 12.0,
                    "request_ms_p99": 40.0,
                },
            },
        },
        "ceiling": {"events_per_second": 1.0},
        "floor": {"events_per_second": 1.0},
        "engine_over_floor": 1.0,
        "engine_over_ceiling": 1.0,
    }


def test_the_table_shows_both_latencies_side_by_side() -> None:
    table = render_table(_results(7.0, 1234)).splitlines()
    assert any(line.startswith("latency p50 / p99 ms at 100/s ") for line in table)
    [loaded] = [line for line in table if "20 /diagnose clients" in line]
    assert "7 / 14 (10 deliveries; 1,234 diagnose requests served, each 12 / 40 ms" in loaded
    assert "2 failed" in loaded


def test_runs_report_the_median_under_diagnose_load() -> None:
    combined = combine_runs([_results(7.0, 100), _results(9.0, 300), _results(30.0, 200)])
    loaded = combined["engine"]["fixed_rate_diagnose"]
    assert loaded["latency_ms_p50"] == 9.0
    assert loaded["diagnose"]["requests"] == 200
    assert combined["runs"][0]["diagnose_load_latency_ms_p50"] == 7.0
