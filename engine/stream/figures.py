"""Committed counts on their way to the metrics and the engagement figures, and the
publication of the figures: the work of the batch loop that is not processing.

Counts reach Prometheus and the figures only once their checkpoint committed, at
most ``FOLD_INTERVAL_SECONDS`` late. Folding costs per distinct engagement and
outcome, so it is done for many checkpoints at once, and one partition at a time:
a pause every delivery under way would otherwise wait for all at once. A
publication scans every delivery of a partition, and committed user changes are applied
to the segment sizes (a recount scans every user): all done in slices of
``STATS_SLICE_SECONDS`` between batches.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from engine.metrics import BatchTally, EngineMetrics
from engine.stats.partition_stats import PartitionStats
from engine.stream.processor import PartitionProcessor

FOLD_INTERVAL_SECONDS = 5.0
# Time given to the engagement figures' scans between batches: a slice at most once per
# period, so that small, frequent batches (a moderate load) still get 80% of the loop.
STATS_SLICE_SECONDS = 0.005
STATS_SLICE_PERIOD_SECONDS = 0.025


class CommittedCounts:
    """Tallies committed but not folded yet, by partition, with when the first came."""

    def __init__(
        self, metrics: EngineMetrics, stats_of: Callable[[int], PartitionStats | None]
    ) -> None:
        self._metrics = metrics
        self._stats_of = stats_of
        self._unfolded: dict[int, tuple[float, BatchTally]] = {}

    def add(self, partition: int, tally: BatchTally) -> None:
        """Keep a committed checkpoint's tally until its fold."""
        if partition in self._unfolded:
            self._unfolded[partition][1].merge(tally)
        else:
            self._unfolded[partition] = (time.monotonic(), tally)

    def fold_all(self) -> None:
        """Fold every committed tally now (a scrape, a publication, a release)."""
        for partition in list(self._unfolded):
            self._fold(partition)

    def fold_oldest_due(self) -> None:
        """Fold the partition whose counts have waited longest, once they are due."""
        if not self._unfolded:
            return
        since, partition = min(
            (since, partition) for partition, (since, _) in self._unfolded.items()
        )
        if time.monotonic() - since >= FOLD_INTERVAL_SECONDS:
            self._fold(partition)

    def _fold(self, partition: int) -> None:
        _, tally = self._unfolded.pop(partition)
        tally.settle()
        self._metrics.record(tally)
        stats = self._stats_of(partition)
        if stats is not None:
            stats.fold(tally, int(time.time() * 1000))


class FigurePublications:
    """Start a publication of the engagement figures when due; advance one under way."""

    def __init__(
        self,
        metrics: EngineMetrics,
        interval_seconds: float,
        unseen_after_ms: int,
        before: Callable[[], None],
    ) -> None:
        self._metrics = metrics
        self._interval = interval_seconds
        self._unseen_after_ms = unseen_after_ms
        self._before = before
        self._last = time.monotonic()
        self._last_slice = 0.0

    def work(self, processors: list[PartitionProcessor], now_ms: int) -> None:
        """Give the work under way (a publication, and a new one when due; segment changes
        to apply, a recount) its slice of time."""
        if (
            time.monotonic() - self._last >= self._interval
            and processors
            and not any(processor.stats.publishing for processor in processors)
        ):
            self._last = time.monotonic()
            self._before()
            for processor in processors:
                processor.begin_stats(now_ms, self._unseen_after_ms)
        publishing = [processor for processor in processors if processor.stats.busy]
        if not publishing or time.monotonic() - self._last_slice < STATS_SLICE_PERIOD_SECONDS:
            return
        self._last_slice = time.monotonic()
        for processor in publishing:
            seconds = processor.advance_stats(STATS_SLICE_SECONDS / len(publishing))
            if seconds is not None:
                self._metrics.stats_publication.observe(seconds)
