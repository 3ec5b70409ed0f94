"""Prometheus metrics: every metric Declic exports is built here, on an injectable registry.

The hot path never touches a Prometheus object per event: it counts into a
`BatchTally` (plain dicts and bit-sliced counters). Committed tallies are merged
and folded into the metrics every few seconds or on a scrape, not per checkpoint:
folding costs work per distinct engagement and outcome, which short checkpoint
intervals would otherwise pay many times over.

No label value comes from an input record unchecked, so the series are bounded whatever
the input: ``event`` is a session type or a custom event name some engagement uses (any
other folds into ``other``, see ``Catalog.label_for_event_name``); ``engagement``,
``variant`` and ``metric`` come from the catalog (at most ``variants.MAX_VARIANTS``
variants and ``engagements.MAX_ELEMENTS`` element metrics per engagement); ``kind``,
``outcome``, ``reason``, ``topic``, ``first``, ``test`` and ``result`` are fixed sets; and
``partition`` is one of the topics' partitions. Series of engagements deleted while a
worker runs stay until it restarts. ``tests/unit/test_bounded_series.py`` checks it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry, Gauge, Histogram
from prometheus_client import Counter as PromCounter
from prometheus_client.core import CounterMetricFamily

from engine.core.matcher import OutcomeBits
from engine.core.outcomes import Evaluation, Outcome
from engine.core.plan import BitCounts, TriggerPlan

# Event-to-delivery latency buckets, in seconds: from 5 ms to 10 minutes (delayed messages).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 600)
# Event-loop stall buckets, in seconds: from timer jitter (5 ms) to a worker frozen for 10 s.
STALL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
# Outcomes of events that are not trigger events passing the trigger's filters.
NOT_A_TRIGGER = frozenset({Outcome.FILTER_MISS, Outcome.STALE, Outcome.CANCELLED, Outcome.EXPIRED})


@dataclass(slots=True)
class BatchTally:
    """Counts gathered while processing records, folded into metrics once committed.

    Candidates' outcomes are counted per event as sets of candidates
    (``count_outcome_bits``), other evaluations one by one (``count_evaluations``); both
    become ``evaluations`` and ``trigger_hours`` in ``settle``, once per fold.
    """

    events_read: Counter[str] = field(default_factory=Counter)
    trigger_events: Counter[tuple[str, str]] = field(default_factory=Counter)
    # Epoch hour of the trigger event (None for releases of delayed deliveries) -> counts.
    raw_evaluations: dict[int | None, Counter[Evaluation]] = field(default_factory=dict)
    # (epoch hour of the trigger event, plan, outcome) -> how often each candidate had it.
    raw_outcome_bits: dict[tuple[int, TriggerPlan, Outcome], BitCounts] = field(
        default_factory=dict
    )
    evaluations: Counter[tuple[str, str]] = field(default_factory=Counter)
    # (engagement, epoch hour of the event): trigger events that passed the trigger's filters
    trigger_hours: Counter[tuple[str, int]] = field(default_factory=Counter)
    # (engagement, variant, test) with test "true" or "false"
    deliveries: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    # (engagement, variant, kind, first, test)
    impressions: Counter[tuple[str, str, str, str, str]] = field(default_factory=Counter)
    conversions: Counter[tuple[str, str]] = field(default_factory=Counter)
    element_clicks: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    dead_letters: Counter[tuple[str, str]] = field(default_factory=Counter)
    stale_events: Counter[str] = field(default_factory=Counter)
    profile_updates: int = 0
    delivery_latencies: list[float] = field(default_factory=list)

    def count_evaluations(self, evaluations: list[Evaluation], trigger_hour: int | None) -> None:
        """Count one event's (or release's) evaluations."""
        counts = self.raw_evaluations.get(trigger_hour)
        if counts is None:
            counts = self.raw_evaluations[trigger_hour] = Counter()
        counts.update(evaluations)

    def count_outcome_bits(self, outcome_bits: list[OutcomeBits], trigger_hour: int) -> None:
        """Count one event's candidate outcomes, a few int operations per outcome."""
        raw = self.raw_outcome_bits
        for plan, outcome, bits in outcome_bits:
            key = (trigger_hour, plan, outcome)
            counts = raw.get(key)
            if counts is None:
                counts = raw[key] = BitCounts()
            counts.add(bits)

    def merge(self, other: BatchTally) -> None:
        """Add ``other``'s counts to this tally."""
        for name in _COUNTER_FIELDS:
            counter: Counter[object] = getattr(self, name)
            counter.update(getattr(other, name))
        for hour, evaluations in other.raw_evaluations.items():
            self.raw_evaluations.setdefault(hour, Counter()).update(evaluations)
        for key, bit_counts in other.raw_outcome_bits.items():
            self.raw_outcome_bits.setdefault(key, BitCounts()).merge(bit_counts)
        self.profile_updates += other.profile_updates
        self.delivery_latencies.extend(other.delivery_latencies)

    def settle(self) -> None:
        """Fold the raw evaluation counts into ``evaluations`` and ``trigger_hours``."""
        for (trigger_hour, plan, outcome), bit_counts in self.raw_outcome_bits.items():
            expanded = self.raw_evaluations.setdefault(trigger_hour, Counter())
            candidates = plan.candidates
            for index, count in bit_counts.counts().items():
                expanded[candidates[index].evaluations[outcome]] += count
        self.raw_outcome_bits.clear()
        for hour, counts in self.raw_evaluations.items():
            for (engagement_id, _, outcome), count in counts.items():
                self.evaluations[(engagement_id, outcome.value)] += count
                if hour is not None and outcome not in NOT_A_TRIGGER:
                    self.trigger_hours[(engagement_id, hour)] += count
        self.raw_evaluations.clear()


_COUNTER_FIELDS = tuple(
    name for name, kind in BatchTally.__annotations__.items() if kind.startswith("Counter[")
)


LabelValues = TypeVar("LabelValues", bound=tuple[str, ...])


class CountsByLabels(Generic[LabelValues]):
    """A Prometheus counter with many label sets, added to a whole mapping at a time.

    ``labels(...).inc()`` takes a lock and a lookup per label set: with one set per
    engagement and outcome, that was most of the cost of recording a tally.
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        registry: CollectorRegistry,
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._labelnames = tuple(labelnames)
        self._counts: Counter[LabelValues] = Counter()
        registry.register(self)

    def add(self, counts: Mapping[LabelValues, int]) -> None:
        """Add ``counts``, keyed by label values in ``labelnames`` order."""
        self._counts.update(counts)

    def describe(self) -> list[CounterMetricFamily]:
        """Describe the metric without its samples (the registry checks names with it)."""
        return [self._family()]

    def collect(self) -> Iterator[CounterMetricFamily]:
        """Yield the metric with one sample per label set."""
        family = self._family()
        for labels, count in self._counts.items():
            family.add_metric(labels, count)
        yield family

    def _family(self) -> CounterMetricFamily:
        return CounterMetricFamily(self._name, self._documentation, labels=self._labelnames)


class EngineMetrics:
    """The engine's metrics, registered on one registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        reg = self.registry
        self.events_read = PromCounter(
            "declic_events_read", "Input records read, by topic", ["topic"], registry=reg
        )
        self.trigger_events = PromCounter(
            "declic_trigger_events",
            "Session and custom events read, by event (unknown custom names fold into 'other')",
            ["topic", "event"],
            registry=reg,
        )
        self.evaluations: CountsByLabels[tuple[str, str]] = CountsByLabels(
            "declic_evaluations",
            "Engagements evaluated against a trigger event, by outcome",
            ["engagement", "outcome"],
            registry=reg,
        )
        self.deliveries = PromCounter(
            "declic_deliveries",
            "Delivery records produced (test: test sends)",
            ["engagement", "variant", "test"],
            registry=reg,
        )
        self.impressions = PromCounter(
            "declic_impressions",
            "Interactions joined to their delivery (first: the first of its kind for the "
            "delivery; test: of a test send)",
            ["engagement", "variant", "kind", "first", "test"],
            registry=reg,
        )
        self.conversions = PromCounter(
            "declic_conversions",
            "Conversion records produced",
            ["engagement", "variant"],
            registry=reg,
        )
        self.element_clicks = PromCounter(
            "declic_element_clicks",
            "Clicks on elements mapped to a named metric by an engagement",
            ["engagement", "variant", "metric"],
            registry=reg,
        )
        self.pending_deliveries = Gauge(
            "declic_pending_deliveries",
            "Delayed deliveries waiting for their due time on this worker",
            registry=reg,
        )
        self.dead_letters = PromCounter(
            "declic_dead_letters",
            "Input records sent to the dead-letter topic, by reason",
            ["topic", "reason"],
            registry=reg,
        )
        self.stale_events = PromCounter(
            "declic_stale_events",
            "Events too old or too far in the future to trigger anything",
            ["topic"],
            registry=reg,
        )
        self.profile_updates = PromCounter(
            "declic_profile_updates", "Profile updates applied", registry=reg
        )
        self.event_to_delivery = Histogram(
            "declic_event_to_delivery_seconds",
            "Time from a trigger event's timestamp to its delivery being committed",
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.checkpoint_duration = Histogram(
            "declic_checkpoint_seconds",
            "Time to commit one partition's outputs, state and offsets",
            registry=reg,
        )
        self.checkpoints = PromCounter(
            "declic_checkpoints", "Checkpoints committed", ["result"], registry=reg
        )
        self.assigned_partitions = Gauge(
            "declic_assigned_partitions", "Input partitions owned by this worker", registry=reg
        )
        self.catalog_engagements = Gauge(
            "declic_catalog_engagements",
            "Engagements known to this worker, by status",
            ["status"],
            registry=reg,
        )
        self.consumer_lag = Gauge(
            "declic_consumer_lag",
            "Records not yet processed, by topic and partition",
            ["topic", "partition"],
            registry=reg,
        )
        self.stats_publication = Histogram(
            "declic_stats_publication_seconds",
            "Time to measure and queue this worker's engagement figures",
            registry=reg,
        )
        self.state_recovery_records = PromCounter(
            "declic_state_recovery_records",
            "Changelog records replayed into local state",
            registry=reg,
        )
        self.loop_stall = Histogram(
            "declic_loop_stall_seconds",
            "How late a periodic timer fired on the worker's event loop (it ran without yielding)",
            buckets=STALL_BUCKETS,
            registry=reg,
        )
        self.loop_stall_max = Gauge(
            "declic_loop_stall_max_seconds",
            "Longest event loop stall since the worker started",
            registry=reg,
        )

    def record(self, tally: BatchTally) -> None:
        """Fold committed counts into the metrics; settle ``tally`` first."""
        for topic, count in tally.events_read.items():
            self.events_read.labels(topic).inc(count)
        for (topic, event), count in tally.trigger_events.items():
            self.trigger_events.labels(topic, event).inc(count)
        self.evaluations.add(tally.evaluations)
        for (engagement, variant, test), count in tally.deliveries.items():
            self.deliveries.labels(engagement, variant, test).inc(count)
        for (engagement, variant, kind, first, test), count in tally.impressions.items():
            self.impressions.labels(engagement, variant, kind, first, test).inc(count)
        for (engagement, variant), count in tally.conversions.items():
            self.conversions.labels(engagement, variant).inc(count)
        for (engagement, variant, metric), count in tally.element_clicks.items():
            self.element_clicks.labels(engagement, variant, metric).inc(count)
        for (topic, reason), count in tally.dead_letters.items():
            self.dead_letters.labels(topic, reason).inc(count)
        for topic, count in tally.stale_events.items():
            self.stale_events.labels(topic).inc(count)
        if tally.profile_updates:
            self.profile_updates.inc(tally.profile_updates)
        for latency in tally.delivery_latencies:
            self.event_to_delivery.observe(latency)
