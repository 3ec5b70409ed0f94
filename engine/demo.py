"""`declic demo`: the example engagements, a worker, a sample stream, and what came out."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
from prometheus_client.parser import text_string_to_metric_families

from engine.admin.diagnose import diagnose
from engine.admin.engagements import apply_engagements, load_and_validate
from engine.diagnose.render import render_text
from engine.publish import Line, publish_lines
from engine.settings import Settings
from engine.stream.tail import TopicTail
from engine.stream.topics import ensure_topics
from engine.worker_process import WorkerProcess

COUNTRIES = ("FR", "BE", "DE", "US")
DEMO_STATS_SECONDS = 2
# The example the demo ends by diagnosing: half its audience is sampled out by design.
DIAGNOSED = "premium-upsell"
PLANS = ("free", "free", "premium")
CUSTOM_EVENTS = ("Added to Favorites", "Viewed Pricing", "Searched")


def sample_stream(run_id: str, users: int, now_ms: int, seed: int = 7) -> dict[str, list[Line]]:
    """Return profiles, sessions and custom events for `users` new users, by topic."""
    rng = random.Random(seed)
    stream: dict[str, list[Line]] = {"profiles": [], "sessions": [], "custom-events": []}
    for index in range(users):
        user_id = f"{run_id}-user-{index}"
        key = user_id.encode()
        moment = now_ms - rng.randint(0, 60_000)
        profile = {
            "user_id": user_id,
            "timestamp": moment - 1000,
            "attributes": {"country": rng.choice(COUNTRIES), "plan": rng.choice(PLANS)},
        }
        stream["profiles"].append(Line(index, key, orjson.dumps(profile)))
        session = {
            "event_id": f"{user_id}-s1",
            "user_id": user_id,
            "type": "session_start",
            "timestamp": moment,
            "session_id": f"{user_id}-session",
            "device": {
                "platform": "ios",
                "app_version": "5.2.0",
                "locale": "fr_FR",
                "timezone": "Europe/Paris",
            },
        }
        stream["sessions"].append(Line(index, key, orjson.dumps(session)))
        for number in range(rng.randint(1, 4)):
            name = rng.choice(CUSTOM_EVENTS)
            event = {
                "event_id": f"{user_id}-c{number}",
                "user_id": user_id,
                "name": name,
                "timestamp": moment + 1000 * (number + 1),
                "properties": {"price": rng.choice((20, 80, 150, 400)), "currency": "EUR"},
            }
            stream["custom-events"].append(Line(index, key, orjson.dumps(event)))
    return stream


def interactions_for(deliveries: list[dict[str, Any]], now_ms: int, seed: int = 11) -> list[Line]:
    """Return what an app would report: most deliveries seen, some clicked."""
    rng = random.Random(seed)
    lines: list[Line] = []
    for index, delivery in enumerate(deliveries):
        if rng.random() >= 0.8:
            continue
        kinds = ["impression"] + (["click"] if rng.random() < 0.3 else [])
        for kind in kinds:
            record = {
                "event_id": f"{delivery['delivery_id']}-{kind}",
                "user_id": delivery["user_id"],
                "delivery_id": delivery["delivery_id"],
                "kind": kind,
                "element": "cta" if kind == "click" else None,
                "timestamp": now_ms,
            }
            if record["element"] is None:
                del record["element"]
            lines.append(Line(index, delivery["user_id"].encode(), orjson.dumps(record)))
    return lines


def _example_files(examples: Path) -> list[Path]:
    return sorted(examples.glob("*.y*ml")) + sorted(examples.glob("*.json"))


async def _apply_examples(settings: Settings, documents: list[dict[str, Any]]) -> None:
    await ensure_topics(settings)
    changes = await apply_engagements(settings, documents, int(time.time() * 1000))
    for change in changes:
        print(f"  engagement {change.engagement_id}: {change.action} (version {change.version})")


async def _scenario(settings: Settings, users: int) -> dict[str, Any]:
    deliveries_tail = TopicTail(settings, settings.topic("deliveries"))
    impressions_tail = TopicTail(settings, settings.topic("impressions"))
    try:
        await deliveries_tail.start()
        await impressions_tail.start()
        now_ms = int(time.time() * 1000)
        stream = sample_stream(f"demo{now_ms}", users, now_ms)
        sent = {}
        for topic in ("profiles", "sessions", "custom-events"):
            sent[topic] = await publish_lines(settings, topic, stream[topic])
        print("  published " + ", ".join(f"{count} {topic}" for topic, count in sent.items()))
        deliveries = await deliveries_tail.read(at_least=1, quiet_seconds=3.0, max_seconds=90)
        interactions = interactions_for(deliveries, int(time.time() * 1000))
        sent["interactions"] = await publish_lines(settings, "interactions", interactions)
        print(f"  published {sent['interactions']} interactions for {len(deliveries)} deliveries")
        impressions = await impressions_tail.read(
            at_least=len(interactions), quiet_seconds=2.0, max_seconds=90
        )
    finally:
        await deliveries_tail.stop()
        await impressions_tail.stop()
    return {"sent": sent, "deliveries": deliveries, "impressions": impressions}


def _report(result: dict[str, Any], metrics_text: str, metrics_url: str) -> None:
    deliveries = Counter(record["engagement_id"] for record in result["deliveries"])
    impressions = Counter(
        (record["engagement_id"], record["kind"]) for record in result["impressions"]
    )
    samples = _counter_samples(metrics_text)
    events_read = {
        labels["topic"]: value for labels, value in samples.get("declic_events_read_total", [])
    }
    print(
        f"\nEvents read by the worker: {sum(events_read.values()):.0f} "
        f"({', '.join(f'{n:.0f} {topic}' for topic, n in sorted(events_read.items()))})"
    )
    print(f"\n{'ENGAGEMENT':<22} {'DELIVERIES':>10} {'IMPRESSIONS':>11} {'CLICKS':>7}")
    for engagement_id in sorted({*deliveries, *(key[0] for key in impressions)}):
        print(
            f"{engagement_id:<22} {deliveries[engagement_id]:>10} "
            f"{impressions[(engagement_id, 'impression')]:>11} "
            f"{impressions[(engagement_id, 'click')]:>7}"
        )
    total_impressions = sum(n for (_, kind), n in impressions.items() if kind == "impression")
    total_clicks = sum(n for (_, kind), n in impressions.items() if kind == "click")
    print(f"{'total':<22} {sum(deliveries.values()):>10} {total_impressions:>11} {total_clicks:>7}")
    evaluations = samples.get("declic_evaluations_total", [])
    if evaluations:
        print("\nEvaluations by outcome:")
        for labels, count in sorted(evaluations, key=lambda item: sorted(item[0].items())):
            print(f"  {labels['engagement']:<22} {labels['outcome']:<18} {count:>6.0f}")
    print(f"\nMetrics endpoint (served while a worker runs): {metrics_url}")


def _counter_samples(metrics_text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return samples


def run_demo(settings: Settings, examples: Path, users: int = 200) -> int:
    """Run the demo; return the exit status."""
    print(f"Declic demo on Kafka at {settings.kafka_bootstrap}")
    # Engagements first: a starting worker reads the whole catalog before any event.
    asyncio.run(_apply_examples(settings, load_and_validate(_example_files(examples))))
    # Figures published often enough for `declic diagnose` to see the demo's traffic.
    worker_settings = settings.model_copy(
        update={"stats_interval_seconds": min(settings.stats_interval_seconds, DEMO_STATS_SECONDS)}
    )
    worker = WorkerProcess(worker_settings, settings.data_dir.parent / "demo-worker.log")
    worker.start()
    try:
        print(f"  worker starting (log: {worker.log_path})")
        worker.wait_ready()
        result = asyncio.run(_scenario(settings, users))
        metrics_text = worker.metrics_text()
        time.sleep(DEMO_STATS_SECONDS + 1)  # one more publication, after the impressions
        diagnosis = asyncio.run(diagnose(settings, DIAGNOSED, int(time.time() * 1000)))
    finally:
        worker.stop()
    _report(result, metrics_text, f"{worker.base_url}/metrics")
    print(f"\n$ declic diagnose {DIAGNOSED}\n{render_text(diagnosis)}")
    if not result["deliveries"] or not result["impressions"]:
        print("\nThe demo produced no deliveries or no impressions: see the worker log.")
        return 1
    return 0
