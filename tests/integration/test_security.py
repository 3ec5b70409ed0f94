"""Locked-down brokers: SASL_SSL (SCRAM-SHA-512, client certificates) and ACLs by role.

One broker of the module's own (`secure_broker.SecureBroker`, on free ports) with
StandardAuthorizer and allow.everyone.if.no.acl.found=false. Its users: `admin` (a super
user), `worker` and `operator` with exactly the ACLs of their role
(`secure_broker.role_acls`, what the README lists), and `nobody` without any. Commands run
as `python -m engine.cli` children configured by DECLIC_* variables, as an operator would.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from engine.child_process import free_port
from engine.settings import Settings
from engine.stream.tail import TopicTail
from engine.worker_process import SECURITY, WorkerProcess, settings_environment
from tests.integration.secure_broker import SecureBroker
from tests.integration.test_resilience import KAFKA_SH

pytestmark = pytest.mark.integration

RUN = uuid.uuid4().hex[:6]
PREFIX = f"sec-{RUN}-"
APP_ID = "declic"
ENGAGEMENT = "secure-welcome"
# Failing fast: a refusal is reported within seconds, never retried like an outage.
REFUSAL_SECONDS = 30
PASSED_TO_COMMANDS = (*SECURITY, "kafka_bootstrap", "topic_prefix", "app_id", "partitions")


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    """Start the locked-down broker, give the worker and operator their roles' ACLs."""
    fetched = subprocess.run(
        ["bash", str(KAFKA_SH), "fetch"], capture_output=True, text=True, check=False
    )
    if fetched.returncode != 0 or not (shutil.which("java") or os.environ.get("JAVA_HOME")):
        reason = f"kafka.sh cannot run a broker here: {fetched.stderr[-2000:] or 'no java'}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    secure = SecureBroker(tmp_path_factory.mktemp("secure-broker"))
    secure.kafka_sh("start")
    try:
        for role in ("worker", "operator"):
            secure.allow(role, role, PREFIX, APP_ID)
        # The operator creates the topics, with its ACLs only.
        created = declic(_settings(secure, "operator", secure.run_dir), "topics")
        assert f"created 15 topics: {PREFIX}sessions" in _ok(created)
        _no_secret(secure, created.stdout + created.stderr)
        yield secure
    finally:
        secure.kafka_sh("stop")


def _settings(
    broker: SecureBroker, user: str, tmp_path: Path, password: str | None = None, **overrides: Any
) -> Settings:
    return broker.settings(
        user,
        password,
        topic_prefix=PREFIX,
        app_id=APP_ID,
        partitions=2,
        data_dir=tmp_path / f"data-{user}",
        web_port=free_port(),
        worker_id=f"{PREFIX}{user}",
        checkpoint_interval_seconds=0.1,
        stats_interval_seconds=1,
        author="security-tests",
        **overrides,
    )


def declic(settings: Settings, *argv: str) -> subprocess.CompletedProcess[str]:
    """Run a `declic` command configured by DECLIC_* variables only (secrets included)."""
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *argv],
        env=settings_environment(settings, PASSED_TO_COMMANDS),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"{result.args[3:]}: {result.returncode}\n{result.stderr}"
    return result.stdout + result.stderr


def _no_secret(broker: SecureBroker, *texts: str) -> None:
    """Assert that no password, key password or key material appears in the texts."""
    for text in texts:
        for secret in broker.secrets():
            assert secret not in text, f"a secret ({secret[:6]}...) was printed:\n{text[-3000:]}"


def _get(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return str(response.read().decode())
    except urllib.error.HTTPError as error:
        return str(error.read().decode())


def _event_file(tmp_path: Path, user: str) -> Path:
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    event = {"event_id": uuid.uuid4().hex, "user_id": user, "type": "session_start"}
    path = tmp_path / f"sessions-{user}.ndjson"
    path.write_bytes(orjson.dumps({**event, "timestamp": now}) + b"\n")
    return path


def _engagement_file(tmp_path: Path, engagement_id: str = ENGAGEMENT) -> Path:
    path = tmp_path / f"{engagement_id}.json"
    path.write_text(
        json.dumps(
            {
                "id": engagement_id,
                "name": f"Secure {engagement_id}",
                "status": "active",
                "trigger": {"event": "session_start"},
                "message": {"title": "Welcome, over TLS"},
                "reeligibility": {"after_seconds": 1},
            }
        )
    )
    return path


def _worker_log(worker: WorkerProcess) -> str:
    return worker.log_path.read_text(errors="replace") if worker.log_path.exists() else ""


# -- (a) each role does its job with exactly its ACLs ------------------------------------


async def test_an_operator_and_a_worker_do_their_jobs_with_exactly_their_acls(
    broker: SecureBroker, tmp_path: Path
) -> None:
    operator = _settings(broker, "operator", tmp_path)
    printed = [_ok(declic(operator, "engagements", "apply", str(_engagement_file(tmp_path))))]
    assert f"{ENGAGEMENT}: create (version 1)" in printed[-1]

    worker = WorkerProcess(_settings(broker, "worker", tmp_path), tmp_path / "worker.log")
    worker.start()
    deliveries = TopicTail(operator, operator.topic("deliveries"))
    try:
        health = worker.wait_ready(180)
        assert health["engagements"] == 1 and health["catalog_following"] is True
        await deliveries.start()
        printed.append(
            _ok(declic(operator, "publish", "sessions", str(_event_file(tmp_path, "u-1"))))
        )
        assert f"published 1 records to {PREFIX}sessions" in printed[-1]
        # Read back over SASL_SSL, as the operator: produced by the worker, end to end.
        delivered = await deliveries.read(at_least=1, quiet_seconds=0.5, max_seconds=60)
        assert [(d["user_id"], d["engagement_id"]) for d in delivered] == [("u-1", ENGAGEMENT)]

        printed.append(_ok(declic(operator, "engagements", "list")))
        assert ENGAGEMENT in printed[-1]
        sent = _ok(declic(operator, "engagements", "test-send", ENGAGEMENT, "--user", "u-2"))
        assert '"test": true' in sent
        printed.append(sent)
        await asyncio.sleep(1.5)  # the worker publishes its figures every second
        printed.append(_ok(declic(operator, "diagnose", ENGAGEMENT)))
        assert "delivered" in printed[-1]
        printed += [_get(f"{worker.base_url}/{page}") for page in ("health", "metrics")]
        printed.append(_get(f"{worker.base_url}/diagnose/{ENGAGEMENT}"))
        assert '"exists":true' in printed[-1]
    finally:
        await deliveries.stop()
        status = worker.stop()
    assert status == 0, _worker_log(worker)[-3000:]
    log = _worker_log(worker)
    assert "kafka_sasl_password=********" in log  # the settings are logged, masked
    _no_secret(broker, log, *printed)


# -- (b) a principal without the ACLs: a clear refusal, exit 3, never a hang ------------


async def test_a_principal_without_acls_is_refused_at_once_with_what_it_lacks(
    broker: SecureBroker, tmp_path: Path
) -> None:
    nobody = _settings(broker, "nobody", tmp_path)
    worker = WorkerProcess(nobody, tmp_path / "nobody.log")
    started = time.monotonic()
    worker.start()
    try:
        topics = declic(nobody, "topics")
        events = str(_event_file(tmp_path, "u-3"))
        publish = declic(nobody, "publish", "sessions", events)
        # The worker's role lacks what `engagements apply` needs (Write on the admin's
        # transactional ids and on the engagements topic): refused, not silently done.
        worker_role = _settings(broker, "worker", tmp_path)
        by_a_worker = str(_engagement_file(tmp_path, "by-a-worker"))
        as_worker = declic(worker_role, "engagements", "apply", by_a_worker)
        worker_publish = declic(worker_role, "publish", "sessions", events)
        status = worker.wait_exit(REFUSAL_SECONDS)
    finally:
        worker.stop()
    assert status == 3, _worker_log(worker)[-3000:]
    assert time.monotonic() - started < REFUSAL_SECONDS
    prefix = f"declic: error: Kafka at {broker.bootstrap} (user 'nobody'): "
    assert (topics.returncode, publish.returncode, as_worker.returncode) == (3, 3, 3)
    assert f"{prefix}not authorized to create topic '{PREFIX}" in topics.stderr
    assert "(TOPIC_AUTHORIZATION_FAILED: no ACL allows Create on it)" in topics.stderr
    assert f"{prefix}not authorized by the cluster (CLUSTER_AUTHORIZATION_FAILED)" in (
        publish.stderr
    )
    assert f"not authorized to use transactional id '{PREFIX}{APP_ID}-admin-" in as_worker.stderr, (
        as_worker.stderr
    )
    assert worker_publish.returncode == 3
    assert (
        f"(user 'worker'): not authorized to write to topic '{PREFIX}sessions' "
        "(TOPIC_AUTHORIZATION_FAILED: no ACL allows Write on it)"
    ) in worker_publish.stderr, worker_publish.stderr
    log = _worker_log(worker)
    assert (
        f"engine stopped: Kafka at {broker.bootstrap} refused this worker (user 'nobody'): "
        f"not authorized to create topic '{PREFIX}"
    ) in log
    assert "waiting for Kafka" not in log  # refused, not retried
    _no_secret(broker, log, topics.stderr, publish.stderr, as_worker.stderr, worker_publish.stderr)


# -- (c) a wrong password: told within seconds, for a command and a worker --------------


async def test_a_wrong_password_is_reported_as_such_within_seconds(
    broker: SecureBroker, tmp_path: Path
) -> None:
    wrong = _settings(broker, "operator", tmp_path, password="not-the-password")
    worker = WorkerProcess(wrong, tmp_path / "wrong.log")
    started = time.monotonic()
    worker.start()
    try:
        listing = declic(wrong, "engagements", "list")
        status = worker.wait_exit(REFUSAL_SECONDS)
    finally:
        worker.stop()
    assert status == 3, _worker_log(worker)[-3000:]
    assert time.monotonic() - started < REFUSAL_SECONDS
    told = (
        "authentication failed: Authentication failed during authentication due to invalid "
        "credentials with SASL mechanism SCRAM-SHA-512 (check DECLIC_KAFKA_SASL_USERNAME, "
        "DECLIC_KAFKA_SASL_PASSWORD and DECLIC_KAFKA_SASL_MECHANISM)"
    )
    assert listing.returncode == 3
    assert f"declic: error: Kafka at {broker.bootstrap} (user 'operator'): {told}" in (
        listing.stderr
    )
    log = _worker_log(worker)
    assert f"refused this worker (user 'operator'): {told}" in log
    assert "waiting for Kafka" not in log  # no outage: it does not wait for ever
    _no_secret(broker, log, listing.stderr)


# -- (d) no secret in help ---------------------------------------------------------------


def test_help_shows_no_secret_even_with_every_secret_set(
    broker: SecureBroker, tmp_path: Path
) -> None:
    settings = _settings(broker, "operator", tmp_path)
    helps = [_ok(declic(settings, *words, "--help")) for words in ([], ["worker"], ["bench"])]
    assert "DECLIC_KAFKA_SASL_PASSWORD only" in helps[1]
    _no_secret(broker, *helps)


# -- (e) the benchmark on a locked-down broker --------------------------------------------


def test_bench_measures_the_engine_the_ceiling_and_the_floor_over_sasl_ssl(
    broker: SecureBroker, tmp_path: Path
) -> None:
    broker.allow("operator", "bench", PREFIX, APP_ID)
    output = tmp_path / "bench.json"
    workload = "--users 2000 --engagements 10 --events 5000 --floor-events 2000 --timeout 300"
    operator = _settings(broker, "operator", tmp_path)
    result = declic(operator, "bench", *workload.split(), "--output", str(output))
    printed = _ok(result)
    figures = json.loads(output.read_text())
    for part in ("engine", "ceiling", "floor"):
        assert figures[part]["events_per_second"] > 0, figures[part]
    assert "floor events/s (plain Faust agent)" in printed
    _no_secret(broker, printed, output.read_text())
