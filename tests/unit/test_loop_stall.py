"""The loop-stall monitor, driven by a fake clock: no real time passes."""

from __future__ import annotations

import asyncio
from collections import deque

from prometheus_client import CollectorRegistry

from engine.loop_stall import TICK_SECONDS, LoopStallMonitor
from engine.metrics import EngineMetrics


class FakeTime:
    """A clock that each sleep advances by the tick plus the next scripted lateness.

    Once the script is spent, sleeping parks until the monitor is cancelled.
    """

    def __init__(self, lateness: list[float]) -> None:
        self.now = 1000.0
        self.slept: list[float] = []
        self._lateness = deque(lateness)
        self.spent = asyncio.Event()

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        if not self._lateness:
            self.spent.set()
            await asyncio.Event().wait()
        self.now += seconds + self._lateness.popleft()
        await asyncio.sleep(0)


def _monitor(fake: FakeTime) -> tuple[LoopStallMonitor, CollectorRegistry]:
    metrics = EngineMetrics(CollectorRegistry())
    monitor = LoopStallMonitor(
        metrics.loop_stall, metrics.loop_stall_max, clock=fake.clock, sleep=fake.sleep
    )
    return monitor, metrics.registry


def _sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    assert value is not None, f"no sample {name} {labels}"
    return value


async def _observe(lateness: list[float]) -> CollectorRegistry:
    fake = FakeTime(lateness)
    monitor, registry = _monitor(fake)
    monitor.start()
    await fake.spent.wait()
    await monitor.stop()
    return registry


async def test_a_stall_lands_in_its_bucket_and_sets_the_longest() -> None:
    registry = await _observe([0.0, 0.0, 0.3, 0.0])

    assert _sample(registry, "declic_loop_stall_seconds_count") == 4
    assert _sample(registry, "declic_loop_stall_seconds_bucket", le="0.25") == 3
    assert _sample(registry, "declic_loop_stall_seconds_bucket", le="0.5") == 4
    assert abs(_sample(registry, "declic_loop_stall_seconds_sum") - 0.3) < 1e-9
    assert abs(_sample(registry, "declic_loop_stall_max_seconds") - 0.3) < 1e-9


async def test_ticks_on_time_observe_no_stall() -> None:
    # A timer firing a hair early (negative lateness) is no stall either.
    registry = await _observe([0.0, 0.0, -0.001])

    assert _sample(registry, "declic_loop_stall_seconds_count") == 3
    assert _sample(registry, "declic_loop_stall_seconds_bucket", le="0.005") == 3
    assert _sample(registry, "declic_loop_stall_seconds_sum") == 0
    assert _sample(registry, "declic_loop_stall_max_seconds") == 0


async def test_the_longest_stall_is_kept_when_shorter_ones_follow() -> None:
    registry = await _observe([1.5, 0.2, 0.0])

    assert abs(_sample(registry, "declic_loop_stall_max_seconds") - 1.5) < 1e-9
    assert _sample(registry, "declic_loop_stall_seconds_bucket", le="1.0") == 2


async def test_the_monitor_stops_when_asked() -> None:
    fake = FakeTime([])
    monitor, registry = _monitor(fake)
    await monitor.stop()  # before start: nothing to stop
    monitor.start()
    monitor.start()  # already running: still one task
    await fake.spent.wait()
    assert monitor.running

    await monitor.stop()

    assert not monitor.running
    assert fake.slept == [TICK_SECONDS]
    assert _sample(registry, "declic_loop_stall_seconds_count") == 0
