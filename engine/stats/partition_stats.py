"""One partition's engagement figures: folded from committed tallies, published periodically.

Segment sizes are kept as users change (``segments``); a publication only scans the
partition's deliveries, in slices, for those still unseen.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import orjson

from engine.core.catalog import Catalog
from engine.core.delivery_state import DeliveryState
from engine.core.variants import CONTROL
from engine.metrics import BatchTally
from engine.state.keys import DELIVERY_PREFIX, STATS_PREFIX
from engine.state.store import PartitionStore
from engine.stats.counts import HOUR_MS, EngagementCounts
from engine.stats.segments import SegmentCounts

# Deliveries read between two checks of the time slice (about 5 µs each: within the slice).
SCAN_SLICE = 500
# Engagements whose figures are serialized and compared per slice (about 50 µs each).
ENGAGEMENTS_PER_SLICE = 100

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Publication:
    """What one partition publishes: (record key, record value) per engagement."""

    records: list[tuple[bytes, bytes]]
    seconds: float


class PartitionStats:
    """Figures of every engagement on one partition."""

    def __init__(self, store: PartitionStore, partition: int) -> None:
        self._store = store
        self._partition = partition
        self._counts: dict[str, EngagementCounts] = {}
        # What was last published per engagement (segment time left out), to publish changes only.
        self._published: dict[str, dict[str, Any]] = {}
        self._scan: Generator[None, None, list[tuple[bytes, bytes]]] | None = None
        self._scan_seconds = 0.0
        self.segments = SegmentCounts(store)
        for key, value in store.items(STATS_PREFIX):
            try:
                counts = EngagementCounts.from_json_dict(orjson.loads(value))
            except Exception as error:  # counted again from zero, never a stopped partition
                log.error("stored figures %r cannot be read, restarted: %r", key, error)
                continue
            self._counts[counts.engagement_id] = counts
            self._published[counts.engagement_id] = _without_time(counts.to_json_dict())

    def _of(self, engagement_id: str, now_ms: int) -> EngagementCounts:
        counts = self._counts.get(engagement_id)
        if counts is None:
            counts = self._counts[engagement_id] = EngagementCounts(engagement_id, now_ms)
        return counts

    def fold(self, tally: BatchTally, now_ms: int) -> None:
        """Add a committed checkpoint's counts."""
        for (engagement_id, outcome), count in tally.evaluations.items():
            self._of(engagement_id, now_ms).outcomes[outcome] += count
        for (engagement_id, hour), count in tally.trigger_hours.items():
            counts = self._of(engagement_id, now_ms)
            counts.trigger_hours[hour] += count
            # Figures are by event time: they cover from the earliest hour counted.
            counts.since_ms = min(counts.since_ms, hour * HOUR_MS)
        for (engagement_id, variant, test), count in tally.deliveries.items():
            if test == "false":
                counts = self._of(engagement_id, now_ms)
                counts.variant(variant)["deliveries"] += count
                counts.count_activity(now_ms, "deliveries", count)
        for (engagement_id, variant, kind, first, test), count in tally.impressions.items():
            if first == "true" and test == "false" and kind in ("impression", "click"):
                field = "impressions" if kind == "impression" else "clicks"
                counts = self._of(engagement_id, now_ms)
                counts.variant(variant)[field] += count
                counts.count_activity(now_ms, field, count)
        for (engagement_id, variant), count in tally.conversions.items():
            counts = self._of(engagement_id, now_ms)
            if variant == CONTROL:
                counts.control_conversions += count
            else:
                counts.variant(variant)["conversions"] += count
                counts.count_activity(now_ms, "conversions", count)

    def begin_publication(self, catalog: Catalog, now_ms: int, unseen_after_ms: int) -> None:
        """Start measuring unseen deliveries; ``advance`` does the work."""
        self.segments.follow(catalog)
        self._scan = self._measure(catalog, now_ms, unseen_after_ms)
        self._scan_seconds = 0.0

    @property
    def publishing(self) -> bool:
        """Return whether a publication is under way."""
        return self._scan is not None

    @property
    def busy(self) -> bool:
        """Return whether work waits for ``advance``: a publication, segment changes to
        apply or a recount."""
        return self._scan is not None or self.segments.busy

    def advance(self, seconds: float) -> Publication | None:
        """Work on the publication for about ``seconds``; return it once complete.

        Committed changes of users are applied to the segments first. The scan of unseen
        deliveries, and a recount of segments (at start, or for an engagement whose
        audience changed), read every delivery or user of the partition: done in slices
        between batches, they never hold the batch loop long.
        """
        deadline = time.perf_counter() + seconds
        self.segments.advance(deadline)
        if self._scan is None:
            return None
        started = time.perf_counter()  # the publication's own time, segments' left out
        try:
            next(self._scan)  # at least one slice per call, however short the time given
            while time.perf_counter() < deadline:
                next(self._scan)
        except StopIteration as done:
            self._scan = None
            records: list[tuple[bytes, bytes]] = done.value
            self._scan_seconds += time.perf_counter() - started
            return Publication(records, self._scan_seconds)
        self._scan_seconds += time.perf_counter() - started
        return None

    def publish(self, catalog: Catalog, now_ms: int, unseen_after_ms: int) -> Publication:
        """Measure and stage at once; return the figures that changed."""
        self.begin_publication(catalog, now_ms, unseen_after_ms)
        while (publication := self.advance(3600.0)) is None:
            pass
        return publication

    def _measure(
        self, catalog: Catalog, now_ms: int, unseen_after_ms: int
    ) -> Generator[None, None, list[tuple[bytes, bytes]]]:
        engagements = [engagement for engagement in catalog if engagement.status != "archived"]
        for engagement in engagements:
            self._of(engagement.id, now_ms)
        active = {engagement.id for engagement in engagements}
        unseen = yield from self._unseen_deliveries(now_ms - unseen_after_ms)
        # A slice in which ``advance`` applies the user changes committed during the scan,
        # then as many as a recount under way takes (at start, or after an audience changed).
        yield
        while self.segments.recounting:
            yield
        # Exact as of the last commit: no scan of the users, only their committed changes.
        segments = {
            engagement_id: {
                "known_users": segment.known_users,
                "audience_users": segment.audience_users,
                "kept_users": segment.kept_users,
                "sampled_users": segment.sampled_users,
                "computed_at_ms": now_ms,
            }
            for engagement_id, segment in self.segments.segments().items()
        }
        changed: list[tuple[str, dict[str, Any], bytes]] = []
        # A snapshot: counts folded in between slices may add engagements meanwhile.
        for index, (engagement_id, counts) in enumerate(list(self._counts.items())):
            if index % ENGAGEMENTS_PER_SLICE == 0:
                yield
            counts.prune(now_ms)
            if engagement_id not in active:
                counts.segment = None
            elif engagement_id in segments:
                counts.segment = segments[engagement_id]
            # else being recounted: the last segment measured stands, with its time
            counts.unseen_deliveries = unseen[engagement_id]
            figures = counts.to_json_dict()
            if self._published.get(engagement_id) == _without_time(figures):
                continue  # unchanged: the compacted topic and the store already hold it
            changed.append((engagement_id, _without_time(figures), orjson.dumps(figures)))
        # In one step, with no slice between: the store and the records published from
        # it must reach the same checkpoint.
        records = []
        for engagement_id, published, value in changed:
            self._published[engagement_id] = published
            self._store.put(STATS_PREFIX + engagement_id.encode(), value)
            records.append((f"{engagement_id}:{self._partition}".encode(), value))
        return records

    def close(self) -> None:
        """Abandon a publication under way: its scan holds a store iterator, which keeps
        the database (and its lock) open after the store is closed."""
        if self._scan is not None:
            self._scan.close()
            self._scan = None
        self.segments.close()

    def forget_published(self) -> None:
        """Publish every engagement's figures next time (the last publication was aborted)."""
        self._published.clear()

    def _unseen_deliveries(self, created_before_ms: int) -> Generator[None, None, Counter[str]]:
        unseen: Counter[str] = Counter()
        for index, (_, value) in enumerate(self._store.items(DELIVERY_PREFIX)):
            if index % SCAN_SLICE == 0:
                yield
            try:
                delivery = DeliveryState.from_json_dict(orjson.loads(value))
            except Exception:  # counted in no engagement's figures
                continue
            if (
                not delivery.test
                and delivery.created_at_ms < created_before_ms
                and "impression" not in delivery.first_event_ids
            ):
                unseen[delivery.engagement_id] += 1
        return unseen


def _without_time(figures: dict[str, Any]) -> dict[str, Any]:
    segment = figures.get("segment")
    if segment is None:
        return figures
    return {**figures, "segment": {k: v for k, v in segment.items() if k != "computed_at_ms"}}
