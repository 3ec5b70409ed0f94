"""`declic doctor` against a real broker: a healthy deployment passes; a missing topic
and partition counts that differ fail with a line naming the topics."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from engine.cli import main
from engine.errors import ConfigError
from engine.settings import Settings, load_settings
from engine.stream.topics import TopicNames, ensure_topics

pytestmark = pytest.mark.integration


def _fresh(bootstrap: str) -> tuple[Settings, list[str]]:
    """Return settings with a topic prefix and app id of their own, and the doctor's flags."""
    run = uuid.uuid4().hex[:8]
    prefix, app_id = f"doc-{run}.", f"doc{run}"
    settings = load_settings(
        {"kafka_bootstrap": bootstrap, "topic_prefix": prefix, "app_id": app_id, "partitions": 2}
    )
    flags = ["--bootstrap", bootstrap, "--topic-prefix", prefix, "--app-id", app_id]
    return settings, [*flags, "--partitions", "2", "--timeout", "10"]


def _doctor(flags: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, str]]:
    """Run `declic doctor`; return its status and each check's line by name."""
    status = main(["doctor", *flags])
    lines = capsys.readouterr().out.splitlines()
    return status, {line[6:].split(":", 1)[0]: line for line in lines[:-1]}


async def _admin(settings: Settings) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(**settings.kafka_client_options())
    await admin.start()
    return admin


async def _delete_and_wait(settings: Settings, topic: str) -> None:
    admin = await _admin(settings)
    try:
        await admin.delete_topics([topic])
        deadline = time.monotonic() + 30
        while topic in await admin.list_topics():
            assert time.monotonic() < deadline, f"{topic} still listed after deletion"
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


async def _create(settings: Settings, topic: str, partitions: int) -> None:
    admin = await _admin(settings)
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()


def test_a_healthy_deployment_passes(bootstrap: str, capsys: pytest.CaptureFixture[str]) -> None:
    settings, flags = _fresh(bootstrap)
    asyncio.run(ensure_topics(settings))
    status, lines = _doctor(flags, capsys)
    assert status == 0, lines
    assert not [line for line in lines.values() if line.startswith("FAIL")]
    for name in ("broker", "topics", "partitions", "replication", "configs", "lag", "clock"):
        assert lines[name].startswith("ok "), lines[name]
    # No worker runs under this app id: a warning, which passes.
    assert lines["group"].startswith("WARN") and "no members" in lines["group"]
    # The local broker has no authorizer: nothing to check, which passes too.
    assert lines["acls"].startswith("skip") and "no authorizer" in lines["acls"]
    report = json.loads(_run_json(flags, capsys))
    assert report["passed"] is True
    assert [check["name"] for check in report["checks"]] == list(lines)


def _run_json(flags: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["doctor", *flags, "--json"]) == 0
    return capsys.readouterr().out


def test_a_missing_topic_fails_naming_it(
    bootstrap: str, capsys: pytest.CaptureFixture[str]
) -> None:
    settings, flags = _fresh(bootstrap)
    asyncio.run(ensure_topics(settings))
    profiles = settings.topic("profiles")
    asyncio.run(_delete_and_wait(settings, profiles))
    status, lines = _doctor(flags, capsys)
    assert status == 1
    assert lines["topics"].startswith("FAIL") and f"missing: {profiles} " in lines["topics"]
    assert lines["broker"].startswith("ok")


def test_partition_counts_that_differ_fail_naming_the_topics(
    bootstrap: str, capsys: pytest.CaptureFixture[str]
) -> None:
    settings, flags = _fresh(bootstrap)
    profiles = settings.topic("profiles")
    asyncio.run(_create(settings, profiles, 3))
    # `declic topics` creates the rest with 2 partitions, then refuses the odd one.
    with contextlib.suppress(ConfigError):
        asyncio.run(ensure_topics(settings))
    status, lines = _doctor(flags, capsys)
    assert status == 1
    state = TopicNames.for_settings(settings).state_changelog
    line = lines["partitions"]
    assert line.startswith("FAIL")
    assert f"{profiles} has 3 partitions" in line
    assert "have 2" in line and (settings.topic("sessions") in line or state in line)
    assert lines["topics"].startswith("ok")
