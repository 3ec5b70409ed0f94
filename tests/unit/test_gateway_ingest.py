"""The Kafka follower's ingestion (``kafka_io.ingest``), fed by hand: a record that does not
decode, or that breaks decoding, is skipped, counted and logged without its value; the
records after it are served."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import orjson
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from engine.gateway import kafka_io
from engine.gateway.kafka_io import ingest
from engine.stream.topics import DELIVERIES, IMPRESSIONS
from tests.unit.gateway_fakes import NOW_MS, Rig, delivery_record, gateway_rig

DEPTH = 600  # orjson reads up to 1024 levels, writes up to 254


@dataclass(frozen=True)
class Record:
    """A consumed record, as far as ``ingest`` reads it."""

    value: bytes | None
    offset: int
    timestamp: int = NOW_MS


def skipped(rig: Rig, topic: str) -> float:
    text = generate_latest(rig.gateway.metrics.registry).decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "declic_gateway_records_skipped_total"
        and sample.labels.get("topic") == topic
    )


def nested(depth: int) -> dict[str, object]:
    value: object = "bottom"
    for _ in range(depth):
        value = {"n": value}
    assert isinstance(value, dict)
    return value


async def messages_of(rig: Rig, user_id: str) -> list[str]:
    response = await rig.client.get(f"/v1/users/{user_id}/messages", headers=rig.auth(user_id))
    assert response.status == 200
    return [message["delivery_id"] for message in (await response.json())["messages"]]


async def test_a_delivery_nested_too_deeply_is_skipped_and_the_next_is_served() -> None:
    async with gateway_rig() as rig:
        deep = delivery_record("u-1", "e-deep", message=nested(DEPTH))
        # orjson writes 254 levels at most: the test writes the record with the stdlib.
        raw = json.dumps(deep).encode()
        assert orjson.loads(raw)["message"]["n"]["n"]  # the gateway reads it
        good = delivery_record("u-1", "e-good")
        hub, metrics = rig.gateway.hub, rig.gateway.metrics
        records = [Record(raw, 41), Record(orjson.dumps(good), 42)]
        ingest(hub, metrics, records, kind=DELIVERIES, topic="t-deliveries", partition=3)
        assert await messages_of(rig, "u-1") == [good["delivery_id"]]
        assert skipped(rig, "deliveries") == 1


@pytest.mark.parametrize("kind", [DELIVERIES, IMPRESSIONS])
async def test_a_record_that_breaks_decoding_is_skipped_and_logged_without_its_value(
    kind: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    secret = b'{"user_id": "u-1", "delivery_id": "private-1234"}'

    def broken(value: bytes | None, *_: object) -> None:
        if value == secret:
            raise ValueError(f"a bug, with the value in its message: {value!r}")

    decoder = "decode_delivery" if kind == DELIVERIES else "decode_shown"
    monkeypatch.setattr(kafka_io, decoder, broken)
    async with gateway_rig() as rig:
        caplog.set_level(logging.WARNING, logger="declic.gateway")
        records = [Record(secret, 7), Record(b"not json", 8)]
        ingest(
            rig.gateway.hub, rig.gateway.metrics, records, kind=kind, topic=f"t-{kind}", partition=1
        )
        assert skipped(rig, kind) == 2  # the bug's, and the one that is no JSON
        [line] = [r.getMessage() for r in caplog.records if r.name == "declic.gateway"]
        assert f"t-{kind}" in line and "partition 1" in line and "offset 7" in line
        assert "ValueError" in line
        assert "private-1234" not in caplog.text and "u-1" not in caplog.text
