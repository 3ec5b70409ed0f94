"""`declic bench`: the engine's throughput, latency and footprint, with two references."""

from __future__ import annotations

import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from aiokafka.errors import KafkaError

from engine.admin.engagements import apply_engagements
from engine.app import faust_broker_url
from engine.bench import cpu, kafka_io, measure
from engine.bench.report import mark_rebuild_target
from engine.bench.scaling import scaling_phase
from engine.bench.workload import EVENT_TOPICS, EventSource, engagements, profiles
from engine.child_process import free_port
from engine.settings import Settings
from engine.stream.topics import ensure_topics
from engine.worker_process import WorkerProcess, settings_environment

BATCH_SECONDS = 0.01
BROKER_TIMESTAMPS = {"message.timestamp.type": "LogAppendTime"}


@dataclass(frozen=True, slots=True)
class BenchOptions:
    """What `declic bench` measures."""

    users: int = 100_000
    engagements: int = 1_000
    # Engagements that can deliver; None: all of them (see workload.engagements).
    live_engagements: int | None = None
    events: int = 200_000
    partitions: int = 4
    seed: int = 1
    rate: float | None = None
    duration: float = 30.0
    floor_events: int = 20_000
    timeout: float = 1800.0
    keep_topics: bool = False
    workers: int = 1
    diagnose_clients: int = 0
    rebuild: bool = True


def _note(text: str) -> None:
    print(f"  {text}", file=sys.stderr, flush=True)


async def _prepare(settings: Settings, options: BenchOptions, now_ms: int) -> None:
    # Deliveries get the broker's append time as timestamp: latency is measured against it.
    await kafka_io.create_topic(
        settings, settings.topic("deliveries"), options.partitions, BROKER_TIMESTAMPS
    )
    await ensure_topics(settings)
    documents = engagements(options.engagements, options.seed, options.live_engagements)
    await apply_engagements(settings, documents, now_ms)
    live = options.live_engagements
    _note(
        f"applied {options.engagements} engagements"
        + (f", {live} of which can deliver" if live and live < options.engagements else "")
    )
    # Generated as they are sent: memory stays bounded whatever the number of users.
    await kafka_io.publish(settings, profiles(options.users, now_ms, options.seed))
    source = EventSource(options.users, options.seed)
    await kafka_io.publish(settings, source.stream(options.events, now_ms))
    _note(f"published {options.users} profiles and {options.events} events")


async def _publish_at_rate(
    settings: Settings, options: BenchOptions, seed: int
) -> tuple[int, float]:
    """Publish at `rate` events/s in batches every 10 ms for `duration`; return count, start."""
    assert options.rate is not None
    source = EventSource(options.users, seed)
    producer = kafka_io.bulk_producer(settings, kafka_io.PROMPT_LINGER_MS)
    await producer.start()
    sent = 0
    started = time.time()
    try:
        begin = time.monotonic()
        while (elapsed := time.monotonic() - begin) < options.duration:
            due = int(options.rate * elapsed) - sent
            if due > 0:
                messages = source.batch(due, int(time.time() * 1000))
                for message in messages:
                    await producer.send(
                        settings.topic(message.kind), message.value, key=message.key
                    )
                sent += due
            await asyncio.sleep(BATCH_SECONDS)
        await producer.flush()
    finally:
        await producer.stop()
    return sent, started


def _wait_for_events(
    workers: list[WorkerProcess], expected: float, profiles_expected: float, timeout: float
) -> list[tuple[float, dict[str, float]]]:
    """Poll the workers' counters every 0.2 s until they read the events; return the series
    of their sums."""
    series: list[tuple[float, dict[str, float]]] = []
    deadline = time.monotonic() + timeout
    counts: dict[str, float] | None = None
    while True:
        for worker in workers:
            if not measure.alive(worker.pid):
                raise kafka_io.BenchError(f"a worker exited; see {worker.log_path}")
        counts = measure.events_read_by(workers)
        if counts is not None:
            series.append((time.monotonic(), counts))
            read = sum(counts.get(topic, 0.0) for topic in EVENT_TOPICS)
            if read >= expected and counts.get("profiles", 0.0) >= profiles_expected:
                return series
        if time.monotonic() > deadline:
            logs = ", ".join(str(worker.log_path) for worker in workers)
            raise kafka_io.BenchError(
                f"the workers read {counts} within {timeout:.0f}s; see {logs}"
            )
        time.sleep(measure.POLL_SECONDS)


def _rate_phase(
    settings: Settings,
    options: BenchOptions,
    workers: list[WorkerProcess],
    seed: int,
    load: measure.DiagnoseLoad | None = None,
) -> dict[str, Any]:
    """Publish at a fixed rate while the workers run (and `load` requests /diagnose, until
    they caught up); return the latency figures."""
    assert options.rate is not None
    series = _wait_for_events(workers, 0.0, 0.0, options.timeout)
    already = sum(series[-1][1].get(topic, 0.0) for topic in EVENT_TOPICS)
    stalls = measure.stall_buckets(workers)
    if load is not None:
        load.start()
    try:
        sent, started = asyncio.run(_publish_at_rate(settings, options, seed))
        _wait_for_events(workers, already + sent, 0.0, options.timeout)
    except BaseException:
        if load is not None:
            load.kill()
        raise
    diagnose = load.stop() if load is not None else None
    loop_stalls = measure.stalls_between(stalls, measure.stall_buckets(workers))
    timed = asyncio.run(kafka_io.delivery_latencies(settings, started * 1000))
    latencies = [latency for _, latency in timed]
    summary: dict[str, Any] = {
        "rate": options.rate,
        "duration": options.duration,
        "events": sent,
        "deliveries": len(latencies),
        "loop_stalls": loop_stalls,
        # (seconds since publishing started, latency ms) per delivery, for --plot.
        "latency_series": [
            (round(broker_ms / 1000 - started, 3), latency) for broker_ms, latency in timed
        ],
    }
    if latencies:
        summary["latency_ms_p50"] = measure.percentile(latencies, 0.50)
        summary["latency_ms_p99"] = measure.percentile(latencies, 0.99)
        summary["latency_ms_mean"] = statistics.fmean(latencies)
    if diagnose is not None:
        summary["diagnose"] = diagnose
    return summary


def _diagnose_load(
    options: BenchOptions, workers: list[WorkerProcess], work_dir: Path
) -> measure.DiagnoseLoad:
    """Return the --diagnose-clients load: clients spread over the workers, all asking for
    the workload's first engagement."""
    engagement_id = engagements(1, options.seed)[0]["id"]
    urls = [
        f"{workers[number % len(workers)].base_url}/diagnose/{engagement_id}"
        for number in range(options.diagnose_clients)
    ]
    return measure.DiagnoseLoad(urls, work_dir / "diagnose-clients.log")


def run_bench(base: Settings, options: BenchOptions) -> dict[str, Any]:
    """Run the benchmark; return the results (see `render_table`)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    prefix = f"{base.topic_prefix}bench-{stamp}-{int(time.time() * 1000) % 1000:03d}-"
    work_dir = Path(tempfile.mkdtemp(prefix="declic-bench-"))
    settings = base.model_copy(
        update={
            "topic_prefix": prefix,
            "partitions": options.partitions,
            "data_dir": work_dir / "data",
            "web_port": free_port(),
            "worker_id": f"{prefix}worker",
        }
    )
    _note(f"topics {prefix}*, work dir {work_dir}, Kafka at {settings.kafka_bootstrap}")
    results: dict[str, Any] = {
        "started_at": stamp,
        "topic_prefix": prefix,
        "kafka_bootstrap": settings.kafka_bootstrap,
        "options": asdict(options),
    }
    now_ms = int(time.time() * 1000)
    ok = prepared = False
    try:
        asyncio.run(_prepare(settings, options, now_ms))
        prepared = True
        results["engine"] = _engine_phase(settings, options, work_dir)
        if options.workers > 1:
            results["scaling"] = scaling_phase(
                settings, options, work_dir, results["engine"], _wait_for_events
            )
        if options.rebuild:
            results["rebuild"] = _rebuild_phase(settings, options, work_dir)
        results["ceiling"] = _ceiling(settings, options)
        results["floor"] = _floor(settings, options, work_dir)
        ok = True
    finally:
        if not options.keep_topics:
            try:
                deleted = asyncio.run(kafka_io.delete_topics_with_prefix(settings, prefix))
                _note(f"deleted {len(deleted)} topics")
            except KafkaError as error:
                if prepared:  # else the error that stopped the preparation says it all
                    _note(f"could not delete topics {prefix}*: {error}")
        if ok or not any(work_dir.glob("*.log")):
            shutil.rmtree(work_dir, ignore_errors=True)
        else:
            _note(f"logs kept in {work_dir}")
    engine_rate = results["engine"]["events_per_second"]
    results["engine_over_floor"] = engine_rate / results["floor"]["events_per_second"]
    results["engine_over_ceiling"] = engine_rate / results["ceiling"]["events_per_second"]
    return results


def _engine_phase(settings: Settings, options: BenchOptions, work_dir: Path) -> dict[str, Any]:
    # N engine processes as a user runs them: one `declic worker --processes N`.
    workers = [WorkerProcess(settings, work_dir / "worker.log", processes=options.workers)]
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.wait_ready()
        _note(f"{options.workers} engine process(es) ready; measuring")
        meter = cpu.CpuMeter(settings.kafka_bootstrap, cpu.pids_of(workers, cpu.all_processes))
        series = _wait_for_events(workers, options.events, options.users, options.timeout)
        usage = meter.stop()
        events = measure.sustained_rate(series, EVENT_TOPICS)
        inputs = measure.sustained_rate(series, (*EVENT_TOPICS, "profiles"))
        # Committed with the events' offsets: all there once the events are read.
        deliveries = asyncio.run(kafka_io.count_records(settings, settings.topic("deliveries")))
        engine: dict[str, Any] = {
            "events": options.events,
            "deliveries": deliveries,
            "deliveries_per_event": deliveries / options.events,
            "workers": options.workers,
            "seconds": events["seconds"],
            "events_per_second": events["records_per_second"],
            "input_records_per_second": inputs["records_per_second"],
            "series": [
                {"t": round(moment - series[0][0], 3), **counts} for moment, counts in series
            ],
        }
        engine["cpu"] = usage
        if options.rate:
            _note(f"fixed rate: {options.rate:g} events/s for {options.duration:g}s")
            engine["fixed_rate"] = _rate_phase(settings, options, workers, options.seed + 1)
        if options.rate and options.diagnose_clients:
            # The same rate and length again, on new events, while clients ask for diagnoses.
            _note(
                f"fixed rate again, with {options.diagnose_clients} clients requesting "
                "/diagnose in a loop"
            )
            load = _diagnose_load(options, workers, work_dir)
            engine["fixed_rate_diagnose"] = _rate_phase(
                settings, options, workers, options.seed + 2, load
            )
        # Of each engine process: a supervisor's children, not the supervisor.
        peaks = [measure.peak_rss_bytes(p) for p in cpu.pids_of(workers, cpu.engine_processes)]
        engine["peak_rss_bytes"] = max(peaks)  # of one worker: what each must be sized for
        engine["peak_rss_bytes_all_workers"] = sum(peaks)
    finally:
        for worker in workers:
            worker.stop()
    engine["state_bytes"] = measure.directory_bytes(settings.data_dir)
    return engine


def _rebuild_phase(settings: Settings, options: BenchOptions, work_dir: Path) -> dict[str, Any]:
    """Start one worker, with the first one's id and settings, on an empty data directory (the
    engine phase stopped every worker); return how long it took to serve, its peak RSS and the
    changelog records it replayed.

    Alone in its group it gets every partition: it rebuilds every user's state, as a single
    worker replacing a lost disk would.
    """
    shutil.rmtree(settings.data_dir, ignore_errors=True)
    worker = WorkerProcess(_worker_settings(settings, 0, options.workers), work_dir / "rebuild.log")
    started = time.monotonic()
    worker.start()
    try:
        while not measure.serving(worker):
            if not worker.running:
                raise kafka_io.BenchError(f"the rebuilding worker exited; see {worker.log_path}")
            if time.monotonic() - started > options.timeout:
                raise kafka_io.BenchError(
                    f"the worker did not serve within {options.timeout:.0f}s after starting on "
                    f"an empty disk; see {worker.log_path}"
                )
            time.sleep(measure.POLL_SECONDS)
        seconds = time.monotonic() - started
        assert worker.pid is not None
        rebuild: dict[str, Any] = {
            "seconds": seconds,
            "peak_rss_bytes": measure.peak_rss_bytes(worker.pid),
            "changelog_records": measure.metric_total(
                worker.metrics_text(), "declic_state_recovery_records_total"
            ),
        }
    finally:
        worker.stop()
    mark_rebuild_target(rebuild)
    _note(f"rebuild: serving after {rebuild['seconds']:.1f}s on an empty disk")
    return rebuild


def _worker_settings(settings: Settings, number: int, count: int) -> Settings:
    if count == 1:
        return settings
    return settings.model_copy(
        update={
            "data_dir": settings.data_dir / f"worker-{number}",
            "web_port": free_port(),
            "worker_id": f"{settings.worker_id}-{number}",
        }
    )


def _ceiling(settings: Settings, options: BenchOptions) -> dict[str, Any]:
    out_topic = settings.topic("ceiling-out")
    topics = [settings.topic(topic) for topic in EVENT_TOPICS]

    async def run() -> dict[str, Any]:
        await kafka_io.create_topic(settings, out_topic, options.partitions)
        return await kafka_io.ceiling(settings, topics, out_topic, options.events, options.timeout)

    result = asyncio.run(run())
    _note(f"ceiling: {result['events_per_second']:.0f} events/s")
    return result


def _floor(settings: Settings, options: BenchOptions, work_dir: Path) -> dict[str, Any]:
    out_topic = settings.topic("floor-out")
    asyncio.run(kafka_io.create_topic(settings, out_topic, options.partitions))
    limit = min(options.floor_events, options.events)
    command = [
        sys.executable,
        "-m",
        "engine.bench.faust_floor",
        "--bootstrap",
        faust_broker_url(settings).replace("kafka://", ""),
        "--app-id",
        f"{settings.topic_prefix}floor",
        "--data-dir",
        str(work_dir / "floor"),
        "--out-topic",
        out_topic,
        "--partitions",
        str(options.partitions),
        "--limit",
        str(limit),
        *(settings.topic(topic) for topic in EVENT_TOPICS),
    ]
    # How to connect (TLS, SASL, secrets) goes by environment variables, never on the command.
    environment = settings_environment(settings)
    result = measure.run_floor(command, work_dir / "floor.log", options.timeout, environment)
    _note(f"floor: {result['events_per_second']:.0f} events/s")
    return result
