"""`declic bench` end to end on a tiny workload: it completes and reports sane figures."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from engine.cli import main
from engine.settings import Settings

pytestmark = pytest.mark.integration


async def _topics_named(settings: Settings, prefix: str) -> list[str]:
    admin = AIOKafkaAdminClient(**settings.kafka_client_options())
    await admin.start()
    try:
        return [name for name in await admin.list_topics() if name.startswith(prefix)]
    finally:
        await admin.close()


async def test_bench_smoke(
    bootstrap: str, settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "bench.json"
    plot = tmp_path / "bench.png"
    status = await asyncio.to_thread(
        main,
        [
            "bench",
            "--bootstrap",
            bootstrap,
            "--users",
            "500",
            "--engagements",
            "20",
            "--events",
            "3000",
            "--partitions",
            "2",
            "--floor-events",
            "500",
            "--rate",
            "500",
            "--duration",
            "3",
            "--timeout",
            "120",
            "--workers",
            "2",
            "--output",
            str(output),
            "--plot",
            str(plot),
        ],
    )
    assert status == 0
    printed = capsys.readouterr().out
    assert "engine events/s" in printed and str(output) in printed

    assert plot.read_bytes().startswith(b"\x89PNG")

    results = orjson.loads(output.read_bytes())
    for part in ("engine", "ceiling", "floor"):
        assert results[part]["events_per_second"] > 0, part
    engine = results["engine"]
    assert engine["workers"] == 2
    assert 0 < engine["peak_rss_bytes"] < engine["peak_rss_bytes_all_workers"]
    assert engine["state_bytes"] > 0
    assert engine["series"] and engine["series"][-1]["profiles"] == 500
    fixed = engine["fixed_rate"]
    assert fixed["events"] > 0
    assert fixed["deliveries"] > 0
    assert 0 <= fixed["latency_ms_p50"] <= fixed["latency_ms_p99"]
    assert len(fixed["latency_series"]) == fixed["deliveries"]
    assert results["engine_over_floor"] > 0 and results["engine_over_ceiling"] > 0
    # One worker restarted on an empty disk rebuilt every user's state from the changelog.
    assert "rebuild s (empty disk to serving)" in printed
    rebuild = results["rebuild"]
    assert rebuild["seconds"] > 0
    assert rebuild["peak_rss_bytes"] > 0
    assert rebuild["changelog_records"] >= 500  # at least a profile per user
    assert rebuild["target_met"] is (rebuild["seconds"] < 30)
    # Its topics are gone.
    assert await _topics_named(settings, results["topic_prefix"]) == []


def test_bench_refuses_more_workers_than_partitions(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--workers", "3", "--partitions", "2"]) == 2
    assert "more workers than partitions" in capsys.readouterr().err
