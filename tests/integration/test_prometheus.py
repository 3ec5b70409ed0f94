"""The SRE kit against a real Prometheus scraping a live worker.

A `prometheus` process scrapes the shared test worker every second with the rules
of deploy/prometheus/rules loaded. After some traffic, its HTTP API must show the
target up, every rule evaluating without error, every recording rule and every
Grafana panel query returning series, and an alert going pending on real labels.
`promtool` checks the configuration and runs the rules' unit tests.

Under CI a missing prometheus or promtool binary fails the tests; elsewhere they
are skipped with the reason (deploy/prometheus/ensure-prometheus.sh installs both).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine.child_process import free_port
from engine.settings import Settings
from engine.worker_process import WorkerProcess
from tests.integration.conftest import Harness

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
KIT = ROOT / "deploy" / "prometheus"
RULE_FILES = sorted((KIT / "rules").glob("*.yml"))
RULE_TESTS = sorted((KIT / "tests").glob("*.yml"))
DASHBOARD = ROOT / "deploy" / "grafana" / "declic-dashboard.json"

# Grafana variables as "All" selects them, and the rate window Grafana would pick.
TEMPLATE_VALUES = {"$instance": ".*", "$engagement": ".*", "$__rate_interval": "1m"}

# Queries asserted only to parse, with the reason they find no series here.
NOT_EXPORTED = "the worker does not export {} yet"
PARSE_ONLY_PANELS = {
    "Pending deliveries": NOT_EXPORTED.format("declic_pending_deliveries"),
    "Conversions": NOT_EXPORTED.format("declic_conversions_total"),
    "Conversion rate (1 h)": NOT_EXPORTED.format("declic_conversions_total"),
    "Element clicks": NOT_EXPORTED.format("declic_element_clicks_total"),
    "Test sends": NOT_EXPORTED.format('the `test` label on declic_deliveries_total (test="true")'),
}
PARSE_ONLY_RECORDS = {
    "declic:conversions:rate5m": NOT_EXPORTED.format("declic_conversions_total"),
    "declic:conversion_ratio:1h": NOT_EXPORTED.format("declic_conversions_total"),
    "declic:element_clicks:rate5m": NOT_EXPORTED.format("declic_element_clicks_total"),
    "declic:test_deliveries:rate5m": NOT_EXPORTED.format("the `test` label (test sends)"),
}

SERIES_WAIT_SECONDS = 20.0


def _fail_or_skip(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def _binary(name: str) -> str:
    variable = f"{name.upper()}_BIN"
    explicit = os.environ.get(variable)
    if explicit:
        if not os.access(explicit, os.X_OK):
            _fail_or_skip(f"{variable}={explicit!r} is not an executable")
        return explicit
    found = shutil.which(name)
    if found is None:
        _fail_or_skip(
            f"no `{name}` binary on PATH (nor ${variable}); "
            "run deploy/prometheus/ensure-prometheus.sh as root to install it"
        )
    return str(found)


@pytest.fixture(scope="module")
def promtool() -> str:
    return _binary("promtool")


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def test_promtool_checks_config_and_rules_and_runs_rule_tests(promtool: str) -> None:
    assert RULE_FILES, "no rule file in deploy/prometheus/rules"
    assert RULE_TESTS, "no rule test in deploy/prometheus/tests"
    for command in (
        [promtool, "check", "config", str(KIT / "prometheus.yml")],
        [promtool, "check", "rules", *map(str, RULE_FILES)],
        [promtool, "test", "rules", *map(str, RULE_TESTS)],
    ):
        result = _run(command)
        assert result.returncode == 0, f"{' '.join(command)}:\n{result.stdout}{result.stderr}"


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    alerts = {rule["alert"] for rule in _rules() if "alert" in rule}
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert alerts - firing == set(), "alerts without a firing test"
    assert alerts - quiet == set(), "alerts without a test where they must stay quiet"


def _rules() -> list[dict[str, Any]]:
    return [
        rule
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]


class Prometheus:
    """A Prometheus server of our own, and a small client for its HTTP API."""

    def __init__(self, binary: str, directory: Path, target: str) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.target = target
        self.log_path = directory / "prometheus.log"
        config = {
            "global": {
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "evaluation_interval": "1s",
            },
            "rule_files": [str(path) for path in RULE_FILES],
            "scrape_configs": [{"job_name": "declic", "static_configs": [{"targets": [target]}]}],
        }
        config_path = directory / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config))
        self._log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            [
                binary,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def stop(self) -> None:
        try:
            if self._process.poll() is None:
                self._process.terminate()
                try:
                    self._process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait(timeout=15)
        finally:
            self._log.close()

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def get(self, path: str, **params: str) -> Any:
        """Return the `data` of an API answer; raise with Prometheus's error otherwise."""
        url = f"{self.base_url}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as reply:
                document = json.loads(reply.read())
        except urllib.error.HTTPError as error:
            document = json.loads(error.read() or b"{}")
            raise AssertionError(f"{path} {params}: {error.code} {document}") from None
        assert document.get("status") == "success", f"{path} {params}: {document}"
        return document["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Run an instant query; a parse or evaluation error fails."""
        data = self.get("/api/v1/query", query=expr)
        assert data["resultType"] == "vector", f"{expr}: {data['resultType']}"
        return list(data["result"])

    def wait(self, what: str, probe: Callable[[], Any], seconds: float = 30.0) -> Any:
        """Poll until probe() returns something truthy."""
        deadline = time.monotonic() + seconds
        while True:
            if self._process.poll() is not None:
                raise AssertionError(f"prometheus exited: {self.log_tail()}")
            try:
                value = probe()
            except (OSError, ValueError):
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; log:\n{self.log_tail()}")
            time.sleep(0.25)

    def wait_rules_evaluated(self) -> None:
        """Wait until every rule group has been evaluated since now (and so on the latest
        scrape): group evaluations run on their own schedule, a little after scrapes."""
        since = time.time()

        def fresh() -> bool:
            groups = self.get("/api/v1/rules")["groups"]
            return all(_epoch_seconds(group["lastEvaluation"]) > since for group in groups)

        self.wait("every rule group to be evaluated again", fresh)

    def wait_series(self, expr: str, seconds: float = SERIES_WAIT_SECONDS) -> list[dict[str, Any]]:
        return list(self.wait(f"a series from {expr}", lambda: self.query(expr), seconds))

    def value(self, expr: str) -> float:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else float("nan")


def _epoch_seconds(rfc3339: str) -> float:
    """Parse Prometheus's RFC 3339 timestamps (nanoseconds, zone Z or offset)."""
    match = re.fullmatch(r"(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", rfc3339)
    assert match is not None, rfc3339
    whole, fraction, zone = match.groups()
    moment = datetime.fromisoformat(whole + ("+00:00" if zone == "Z" else zone))
    return moment.timestamp() + float(f"0.{fraction or 0}")


@pytest.fixture(scope="module")
def prometheus(
    worker: WorkerProcess, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Prometheus]:
    """Start Prometheus scraping the shared worker; stop it whatever happens."""
    binary = _binary("prometheus")
    target = f"{settings.web_host}:{settings.web_port}"
    server = Prometheus(binary, tmp_path_factory.mktemp("prometheus"), target)
    try:
        server.wait("Prometheus to be ready", lambda: _ready(server))
        server.wait("the worker target to be up", lambda: _target_up(server))
        yield server
    finally:
        server.stop()


def _ready(server: Prometheus) -> bool:
    with urllib.request.urlopen(f"{server.base_url}/-/ready", timeout=2) as reply:
        return bool(reply.status == 200)


def _target_up(server: Prometheus) -> dict[str, Any] | None:
    for target in server.get("/api/v1/targets", state="active")["activeTargets"]:
        if target["labels"].get("instance") == server.target and target["health"] == "up":
            return dict(target)
    return None


@dataclass
class Traffic:
    shown: str
    silent: str


def _id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _now_ms() -> int:
    return int(time.time() * 1000)


def _custom(user_id: str, name: str, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": _id("ev"),
        "user_id": user_id,
        "name": name,
        "timestamp": _now_ms(),
        **fields,
    }


def _interaction(delivery: dict[str, Any], kind: str) -> dict[str, Any]:
    return {
        "event_id": _id("ia"),
        "user_id": delivery["user_id"],
        "delivery_id": delivery["delivery_id"],
        "kind": kind,
        "timestamp": _now_ms(),
    }


@pytest.fixture(scope="module")
async def traffic(
    settings: Settings, worker: WorkerProcess, prometheus: Prometheus
) -> AsyncIterator[Traffic]:
    """Drive every kind of input through the worker, in two scraped rounds.

    A counter's first sample shows no increase, so each engagement gets a first round,
    Prometheus scrapes it, then a second round: rates and increases see both.
    """
    harness = Harness(settings, worker)
    run = uuid.uuid4().hex[:8]
    shown, silent = f"prom-shown-{run}", f"prom-silent-{run}"
    shown_event, silent_event = f"Prom Shown {run}", f"Prom Silent {run}"
    try:
        await harness.apply(
            *(
                {
                    "id": engagement_id,
                    "name": f"Prometheus check {engagement_id}",
                    "status": "active",
                    "trigger": {"event": "custom", "name": event},
                    "message": {"title": "Hello", "body": "..."},
                }
                for engagement_id, event in ((shown, shown_event), (silent, silent_event))
            )
        )
        for users in (1, 12):
            await _round(harness, prometheus, users, shown, shown_event, silent_event)
        prometheus.wait_rules_evaluated()
        yield Traffic(shown=shown, silent=silent)
    finally:
        await harness.close()


async def _round(
    harness: Harness,
    prometheus: Prometheus,
    users: int,
    shown: str,
    shown_event: str,
    silent_event: str,
) -> None:
    """Trigger both engagements for `users` users each, with impressions for `shown` only,
    plus a session, a profile update, a stale event and a dead letter; wait for a scrape."""
    read_before = harness.counter("declic_events_read")
    deliveries = await harness.tail("deliveries")
    try:
        shown_users = [_id("user") for _ in range(users)]
        for user in shown_users:
            await harness.send("custom-events", _custom(user, shown_event))
        for _ in range(users):
            await harness.send("custom-events", _custom(_id("user"), silent_event))
        user = _id("user")
        session = {"event_id": _id("ev"), "user_id": user, "type": "session_start"}
        await harness.send("sessions", {**session, "timestamp": _now_ms()})
        await harness.send(
            "profiles", {"user_id": user, "timestamp": _now_ms(), "attributes": {"plan": "x"}}
        )
        # Three days old (the test worker accepts two): read, counted as stale, triggers nothing.
        await harness.send(
            "custom-events", _custom(user, shown_event, timestamp=_now_ms() - 3 * 86_400_000)
        )
        await harness.send("custom-events", b"{not json", key=user)
        records = [
            record
            for record in await deliveries.read(at_least=2 * users, quiet_seconds=0.5)
            if record["engagement_id"] == shown
        ]
    finally:
        await deliveries.stop()
    assert sorted(record["user_id"] for record in records) == sorted(shown_users)
    for record in records:
        await harness.send("interactions", _interaction(record, "impression"))
    await harness.send("interactions", _interaction(records[0], "click"))
    sent = 2 * users + 4 + len(records) + 1
    read = await harness.wait_counter("declic_events_read", read_before + sent)
    # Counters move together at a checkpoint: a scrape with every record read has it all.
    prometheus.wait(
        f"a scrape with {read} records read",
        lambda: prometheus.value("sum(declic_events_read_total)") >= read,
    )


def test_worker_target_is_up(prometheus: Prometheus) -> None:
    target = _target_up(prometheus)
    assert target is not None
    assert target["labels"]["job"] == "declic"
    assert target["lastError"] == ""
    [up] = prometheus.query(f'up{{job="declic", instance="{prometheus.target}"}}')
    assert up["value"][1] == "1"


def test_every_rule_loads_and_evaluates_without_error(
    prometheus: Prometheus, traffic: Traffic
) -> None:
    expected = {rule.get("record") or rule["alert"] for rule in _rules()}

    def evaluated() -> list[dict[str, Any]] | None:
        groups = prometheus.get("/api/v1/rules")["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        return rules if all(rule["health"] != "unknown" for rule in rules) else None

    rules = prometheus.wait("every rule to be evaluated", evaluated)
    assert {rule["name"] for rule in rules} == expected
    failing = {rule["name"]: rule.get("lastError") for rule in rules if rule["health"] != "ok"}
    assert failing == {}


def test_recording_rules_record_series(prometheus: Prometheus, traffic: Traffic) -> None:
    records = sorted(rule["record"] for rule in _rules() if "record" in rule)
    assert set(PARSE_ONLY_RECORDS) <= set(records), "stale entries in PARSE_ONLY_RECORDS"
    for name in records:
        if name in PARSE_ONLY_RECORDS:
            prometheus.query(name)
        else:
            prometheus.wait_series(name)
    [ratio] = prometheus.wait_series(f'declic:impression_ratio:1h{{engagement="{traffic.silent}"}}')
    assert float(ratio["value"][1]) == 0.0
    [ratio] = prometheus.wait_series(f'declic:impression_ratio:1h{{engagement="{traffic.shown}"}}')
    assert float(ratio["value"][1]) > 0.0


def _panel_queries() -> list[tuple[str, str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = [
        inner
        for panel in dashboard["panels"]
        for inner in [panel, *panel.get("panels", [])]
        if panel.get("type") != "row" or inner is not panel
    ]
    queries = []
    for panel in panels:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in TEMPLATE_VALUES.items():
                expr = expr.replace(variable, value)
            assert "$" not in expr, f"unknown template variable in {panel['title']}: {expr}"
            queries.append((panel["title"], target["refId"], expr))
    return queries


def test_dashboard_is_importable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert [entry["name"] for entry in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
    assert dashboard["schemaVersion"] >= 36
    assert dashboard["id"] is None
    variables = {variable["name"] for variable in dashboard["templating"]["list"]}
    assert {"instance", "engagement"} <= variables
    panel_ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(panel_ids) == len(set(panel_ids))
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
    titles = {title for title, _, _ in _panel_queries()}
    assert set(PARSE_ONLY_PANELS) <= titles, "stale entries in PARSE_ONLY_PANELS"


def test_every_dashboard_query_finds_series(prometheus: Prometheus, traffic: Traffic) -> None:
    queries = _panel_queries()
    assert len(queries) >= 20
    empty = []
    for title, ref, expr in queries:
        if title in PARSE_ONLY_PANELS:
            prometheus.query(expr)  # parses and evaluates
            continue
        try:
            prometheus.wait_series(expr, seconds=5)
        except AssertionError:
            empty.append(f"{title} [{ref}]: {expr}")
    assert empty == []


def test_dashboard_variables_list_workers_and_engagements(
    prometheus: Prometheus, traffic: Traffic
) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    values = {}
    for variable in dashboard["templating"]["list"]:
        match = re.fullmatch(r"label_values\((.*), (\w+)\)", variable["definition"])
        assert match is not None, variable["definition"]
        selector = match.group(1)
        for name, value in TEMPLATE_VALUES.items():
            selector = selector.replace(name, value)
        label = match.group(2)
        values[variable["name"]] = set(
            prometheus.get(f"/api/v1/label/{label}/values", **{"match[]": selector})
        )
    assert prometheus.target in values["instance"]
    assert {traffic.shown, traffic.silent} <= values["engagement"]


def test_deliveries_without_impressions_alert_follows_real_labels(
    prometheus: Prometheus, traffic: Traffic
) -> None:
    """With `for` not yet elapsed, the alert is pending for the engagement nobody saw."""

    def pending() -> set[str]:
        alerts = prometheus.get("/api/v1/alerts")["alerts"]
        return {
            alert["labels"]["engagement"]
            for alert in alerts
            if alert["labels"]["alertname"] == "DeclicDeliveriesWithoutImpressions"
        }

    engagements = prometheus.wait("the alert to be pending", lambda: traffic.silent in pending())
    assert engagements
    assert traffic.shown not in pending()
