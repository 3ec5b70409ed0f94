"""An immutable snapshot of compiled engagements, indexed by trigger key."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import Final

from engine.core.counters import CountSpec, merge_count_specs
from engine.core.engagements import ARCHIVED, Engagement
from engine.core.events import CUSTOM_PREFIX
from engine.core.plan import NO_PLAN, TriggerPlan

OTHER_EVENT_LABEL: Final = "other"

_NO_CANDIDATES: Final[tuple[Engagement, ...]] = ()


def _evaluation_order(engagement: Engagement) -> tuple[int, int, str]:
    return (-engagement.priority, engagement.start_order_ms, engagement.id)


class Catalog:
    """Engagements by id plus, for each trigger key, the non-archived ones it can fire.

    Candidates come in evaluation order, which is also the priority order: highest
    priority first, then the earliest schedule start (an open start is earliest; a
    local-time start counts as its wall-clock time read in UTC), then by id. The first
    eligible candidate is therefore the one delivered. Build a new catalog when
    engagements change; compiled engagements are reused, so a rebuild only re-indexes.
    """

    __slots__ = (
        "_by_id",
        "_by_trigger",
        "_count_specs",
        "_count_specs_by_key",
        "_custom_event_names",
        "_labelled_names",
        "_plans",
    )

    def __init__(self, by_id: Mapping[str, Engagement]) -> None:
        """Index ``by_id``; prefer ``Catalog.build``."""
        self._by_id: Mapping[str, Engagement] = MappingProxyType(dict(by_id))
        grouped: dict[str, list[Engagement]] = {}
        for engagement in self._by_id.values():
            if engagement.status != ARCHIVED:
                grouped.setdefault(engagement.trigger_key, []).append(engagement)
        self._by_trigger: dict[str, tuple[Engagement, ...]] = {
            key: tuple(sorted(group, key=_evaluation_order)) for key, group in grouped.items()
        }
        self._custom_event_names = frozenset(
            key[len(CUSTOM_PREFIX) :] for key in self._by_trigger if key.startswith(CUSTOM_PREFIX)
        )
        # Only active engagements' filters are counted: nothing else reads the counts.
        self._count_specs: Mapping[str, CountSpec] = MappingProxyType(
            merge_count_specs(
                item
                for engagement in self._by_id.values()
                if engagement.is_active
                for item in engagement.count_filters
            )
        )
        self._count_specs_by_key = {
            CUSTOM_PREFIX + name: spec for name, spec in self._count_specs.items()
        }
        self._plans = {
            key: TriggerPlan(
                self._by_trigger.get(key, _NO_CANDIDATES), self._count_specs_by_key.get(key)
            )
            for key in self._by_trigger.keys() | self._count_specs_by_key.keys()
        }
        # Names an engagement uses anywhere (trigger, cancel, conversion, count): metric labels.
        rule_keys = {
            rule.trigger_key
            for engagement in by_id.values()
            if engagement.status != ARCHIVED
            for rule in (*engagement.cancel_on, engagement.conversion)
            if rule is not None
        }
        self._labelled_names = (
            self._custom_event_names
            | frozenset(self._count_specs)
            | frozenset(
                key[len(CUSTOM_PREFIX) :] for key in rule_keys if key.startswith(CUSTOM_PREFIX)
            )
        )

    @classmethod
    def build(cls, engagements: Iterable[Engagement]) -> Catalog:
        """Index ``engagements``; for a repeated id the highest version wins (last on a tie)."""
        by_id: dict[str, Engagement] = {}
        for engagement in engagements:
            current = by_id.get(engagement.id)
            if current is None or engagement.version >= current.version:
                by_id[engagement.id] = engagement
        return cls(by_id)

    def with_engagement(self, engagement: Engagement) -> Catalog:
        """Return a catalog where ``engagement`` replaces any engagement with its id."""
        by_id = dict(self._by_id)
        by_id[engagement.id] = engagement
        return Catalog(by_id)

    def without(self, engagement_id: str) -> Catalog:
        """Return a catalog without the engagement ``engagement_id``."""
        by_id = dict(self._by_id)
        by_id.pop(engagement_id, None)
        return Catalog(by_id)

    def candidates(self, trigger_key: str) -> tuple[Engagement, ...]:
        """Return the non-archived engagements triggered by ``trigger_key``."""
        return self._by_trigger.get(trigger_key, _NO_CANDIDATES)

    def get(self, engagement_id: str) -> Engagement | None:
        """Return the engagement ``engagement_id``, archived ones included."""
        return self._by_id.get(engagement_id)

    @property
    def trigger_keys(self) -> frozenset[str]:
        """Return every trigger key that has at least one candidate."""
        return frozenset(self._by_trigger)

    @property
    def custom_event_names(self) -> frozenset[str]:
        """Return the custom event names some non-archived engagement listens to."""
        return self._custom_event_names

    @property
    def counted_events(self) -> Mapping[str, CountSpec]:
        """Return, per custom event name some active filter counts, what to keep of it."""
        return self._count_specs

    def count_spec(self, trigger_key: str) -> CountSpec | None:
        """Return the count spec of the custom events with ``trigger_key``, if counted."""
        return self._count_specs_by_key.get(trigger_key)

    def uses_local_time(self, trigger_key: str) -> bool:
        """Return whether a candidate of ``trigger_key`` has a local-time schedule."""
        return self.plan(trigger_key).uses_local_time

    def plan(self, trigger_key: str) -> TriggerPlan:
        """Return the candidates and per-event work for events with ``trigger_key``."""
        return self._plans.get(trigger_key, NO_PLAN)

    def label_for_event_name(self, name: str) -> str:
        """Return ``name`` if an engagement uses it, else "other": bounds metric labels."""
        return name if name in self._labelled_names else OTHER_EVENT_LABEL

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[Engagement]:
        return iter(self._by_id.values())
