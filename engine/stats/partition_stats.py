"""One partition's engagement figures: folded from committed tallies, published periodically."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import orjson

from engine.core.bucketing import LEGACY_HASH_VERSION, user_hash
from engine.core.catalog import Catalog
from engine.core.delivery_state import DeliveryState
from engine.core.engagements import Engagement, sample_position
from engine.core.state import UserState
from engine.core.variants import CONTROL
from engine.metrics import BatchTally
from engine.state.keys import DELIVERY_PREFIX, STATS_PREFIX, USER_PREFIX
from engine.state.store import PartitionStore
from engine.stats.counts import HOUR_MS, EngagementCounts

# Audience checks per publication: past this, the segment is measured on a sample of users.
SEGMENT_CHECK_BUDGET = 2_000_000
# Work (entries read, plus one per audience check) between two checks of the time slice.
SCAN_SLICE = 2_000
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
        self._known_users: int | None = None
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
        """Start measuring segments and unseen deliveries; ``advance`` does the work."""
        self._scan = self._measure(catalog, now_ms, unseen_after_ms)
        self._scan_seconds = 0.0

    @property
    def publishing(self) -> bool:
        """Return whether a publication is under way."""
        return self._scan is not None

    def advance(self, seconds: float) -> Publication | None:
        """Work on the publication for about ``seconds``; return it once complete.

        The scans read every user and delivery of the partition, seconds of work at 100,000
        users: done in slices between batches, they never hold the batch loop that long.
        """
        if self._scan is None:
            return None
        started = time.perf_counter()
        deadline = started + seconds
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
        segments = yield from self._segments(engagements, now_ms)
        unseen = yield from self._unseen_deliveries(now_ms - unseen_after_ms)
        changed: list[tuple[str, dict[str, Any], bytes]] = []
        # A snapshot: counts folded in between slices may add engagements meanwhile.
        for index, (engagement_id, counts) in enumerate(list(self._counts.items())):
            if index % ENGAGEMENTS_PER_SLICE == 0:
                yield
            counts.prune(now_ms)
            counts.segment = segments.get(engagement_id)
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

    def forget_published(self) -> None:
        """Publish every engagement's figures next time (the last publication was aborted)."""
        self._published.clear()

    def _segments(
        self, engagements: list[Engagement], now_ms: int
    ) -> Generator[None, None, dict[str, dict[str, int]]]:
        known = 0
        checked = 0
        audience: Counter[str] = Counter()
        kept: Counter[str] = Counter()
        # Users counted by the last scan (an estimate the first time) size the sample.
        users = self._known_users if self._known_users is not None else self._store.estimate_keys()
        sample_every = max(1, -(-len(engagements) * users // SEGMENT_CHECK_BUDGET))
        hashes_users = any(e.hash_version != LEGACY_HASH_VERSION for e in engagements)
        work = 0
        unreadable = 0
        for index, (key, value) in enumerate(self._store.items(USER_PREFIX)):
            known += 1
            work += 1
            if work >= SCAN_SLICE:
                work = 0
                yield
            if index % sample_every:
                continue
            try:
                attributes = UserState.from_json_dict(orjson.loads(value)).attributes
            except Exception:  # one unreadable user must not stop the figures
                unreadable += 1
                continue
            checked += 1
            work += len(engagements)
            user_key = key[len(USER_PREFIX) :]  # the user id, UTF-8: what sampling hashes
            # Once per user, and only when some engagement draws with hash version 2.
            hashed = user_hash(user_key) if hashes_users else 0
            for engagement in engagements:
                if engagement.audience(attributes):
                    audience[engagement.id] += 1
                    # The matcher's sampling decision, made the same way.
                    if (
                        engagement.percent >= 100
                        or sample_position(engagement, user_key, hashed)
                        < engagement.sample_threshold
                    ):
                        kept[engagement.id] += 1
        if unreadable:
            log.error(
                "partition %d: %d stored users cannot be read; segments leave them out",
                self._partition,
                unreadable,
            )
        self._known_users = known
        scale = known / checked if checked else 0.0
        return {
            engagement.id: {
                "known_users": known,
                "audience_users": round(audience[engagement.id] * scale),
                "kept_users": round(kept[engagement.id] * scale),
                "sampled_users": checked,
                "computed_at_ms": now_ms,
            }
            for engagement in engagements
        }

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
