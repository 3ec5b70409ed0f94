"""Loop-stall monitor: how long the worker's event loop ran without yielding.

A worker runs one asyncio loop: while a figure scan, a fold or a GC pause holds it, no
record is fetched, no checkpoint commits and no scrape is answered, so stalls make the
latency tail. A task sleeps a fixed tick and observes how late it woke. A stall that
starts during a tick shows as lateness between ``stall - tick`` and ``stall``: the tick
bounds the error, and stays long enough that the observations cost nothing noticeable.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from prometheus_client import Gauge, Histogram

# 20 wake-ups a second: finer than the 50 ms bucket, far coarser than a histogram observe.
TICK_SECONDS = 0.05


class LoopStallMonitor:
    """Observe the running loop's lateness each tick into ``stalls``, the worst in ``longest``.

    ``clock`` and ``sleep`` are injectable so a test drives ticks without waiting.
    """

    def __init__(
        self,
        stalls: Histogram,
        longest: Gauge,
        *,
        tick: float = TICK_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._stalls = stalls
        self._longest = longest
        self._tick = tick
        self._clock = clock
        self._sleep = sleep
        self._worst = 0.0
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        """Whether the monitor's task is started and not finished."""
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start observing on the running loop (a no-op if already started)."""
        if not self.running:
            self._task = asyncio.create_task(self.run(), name="declic-loop-stall")

    async def stop(self) -> None:
        """Stop observing and wait for the task to end."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def run(self) -> None:
        """Sleep a tick, observe how late the wake-up was, until cancelled."""
        while True:
            expected = self._clock() + self._tick
            await self._sleep(self._tick)
            # A timer may fire a hair early (the loop's clock resolution): that is no stall.
            lateness = max(0.0, self._clock() - expected)
            self._stalls.observe(lateness)
            if lateness > self._worst:
                self._worst = lateness
                self._longest.set(lateness)
