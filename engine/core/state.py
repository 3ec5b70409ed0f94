"""Per-user state, with a compact JSON form for the shell's store.

``to_json_dict`` output is plain JSON (str keys, int times) and ``from_json_dict`` rebuilds
an equal object, so a store round trip is exact. Corrupt stored data raises
``InvalidRecord("invalid_state", ...)``. ``DeliveryState`` lives in ``delivery_state`` and
is re-exported here.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final

import orjson
from msgspec import Struct, StructMeta

from engine.core.attributes import MAX_ATTRIBUTES, check_attributes
from engine.core.caps import FrequencyCap, is_capped, record_delivery_time
from engine.core.conversions import ConversionWatch, add_watch
from engine.core.counters import CountSpec, record_occurrence
from engine.core.delivery_state import DeliveryState
from engine.core.json_values import stored_object
from engine.core.pending import PendingDelivery
from engine.core.stored_state import read_event_times, read_list, read_times, sorted_times
from engine.errors import InvalidRecord

__all__ = ["MAX_DELIVERY_HISTORY", "MAX_USER_STATE_BYTES", "DeliveryState", "UserState"]

# The largest a user's state may take as compact JSON: well under the smallest record a
# worker may write (64 KiB, key and value), whatever the input.
MAX_USER_STATE_BYTES: Final = 48 * 1024
# Once past it, a state is brought down to this, so that the next changes do not each pay
# for measuring and evicting again.
_FIT_TARGET: Final = MAX_USER_STATE_BYTES - MAX_USER_STATE_BYTES // 8
# Engagements whose last delivery (or control assignment) a user remembers.
MAX_DELIVERY_HISTORY: Final = 256

_MISSING: Final = object()
# The watch list of every user without watches: shared, so it costs the collector
# nothing, and never mutated (a user's first watch replaces it by a list of its own).
_NO_WATCHES: Final[list[ConversionWatch]] = []
# Upper bounds, in compact JSON, of an epoch-ms time with its comma, and of a section's
# name and braces: what a growth adds on top of the strings it measures.
_TIME_BYTES: Final = 16
_SECTION_BYTES: Final = 8


def _json_size(value: object) -> int:
    return len(orjson.dumps(value))


def _oldest(times: Mapping[str, int], count: int) -> list[str]:
    """Return the ``count`` names of ``times`` with the oldest (time, name)."""
    if count == 1:  # the usual case: one new name on a full profile
        oldest = min(times.values())
        return [min([name for name, at in times.items() if at == oldest])]
    return [name for name, _ in heapq.nsmallest(count, times.items(), key=_time_then_name)]


def _time_then_name(item: tuple[str, int]) -> tuple[int, str]:
    return item[1], item[0]


class _UserStateMeta(StructMeta):
    """Build a ``UserState`` from its parts: copied, sorted and checked.

    A struct cannot define ``__init__``; its metaclass's ``__call__`` is what
    ``UserState(...)`` runs.
    """

    def __call__(
        cls,  # noqa: N805  # a metaclass method: its first argument is the class
        attributes: Mapping[str, object] | None = None,
        attribute_times: Mapping[str, int] | None = None,
        last_delivered: Mapping[str, int] | None = None,
        *,
        delivery_times: list[int] | None = None,
        event_times: Mapping[str, list[int]] | None = None,
        pending: list[PendingDelivery] | None = None,
        watches: list[ConversionWatch] | None = None,
    ) -> Any:
        values = dict(attributes or {})
        times = dict(attribute_times or {})
        if values.keys() != times.keys():
            raise InvalidRecord("invalid_state", "every attribute needs exactly one timestamp")
        return super().__call__(
            values,
            times,
            dict(last_delivered or {}),
            tuple(sorted(delivery_times)) if delivery_times else (),
            {name: sorted(at) for name, at in (event_times or {}).items()},
            {item.engagement_id: item for item in pending or ()},
            list(watches) if watches else _NO_WATCHES,
            None,
            False,
        )


class UserState(Struct, metaclass=_UserStateMeta, gc=False):
    """A user's merged profile (newest timestamp wins per attribute) and history.

    A ``null`` attribute value is kept with its timestamp: it clears the attribute (filters
    see it as missing) and still outranks older values arriving late. The history holds
    the last delivery per engagement (re-eligibility), recent delivery times (frequency
    caps), recent counted events, pending delayed deliveries and conversion watches.

    Every part is bounded, so that the state of one user stays small whatever the input:

    * attributes: at most ``MAX_ATTRIBUTES``, the most recently set (the oldest by
      (timestamp, name) are evicted), values bounded by ``attributes``;
    * last deliveries: at most ``MAX_DELIVERY_HISTORY`` engagements (the oldest other by
      (time, engagement id) is forgotten when a new one is recorded);
    * capped delivery times: the caps' largest ``max`` (``caps.MAX_CAP_DELIVERIES`` at most);
    * counted events: per name what the filters need, ``counters.MAX_COUNTED_TIMES`` in all;
    * pending deliveries: ``pending.MAX_PENDING_PER_USER`` (the matcher schedules no more);
    * conversion watches: ``conversions.MAX_WATCHES``.

    On top of these, the state never takes more than ``MAX_USER_STATE_BYTES`` as compact
    JSON (a size only reached with strings at their longest and made of characters JSON
    escapes): past it, the oldest attributes are evicted first, then the oldest counted
    event times, then the oldest last deliveries, until it takes at most 7/8 of it.
    Pending deliveries, watches and capped delivery times are never evicted: their bounds
    keep them far below.
    """

    # A struct with gc=False: the collector never tracks it (a user's state holds no
    # reference cycle). Its dicts of strings and ints are untracked too, capped delivery
    # times are a tuple and no watches one shared list: a cached user usually adds no
    # object to the collector's work, whose full passes would otherwise grow with the cache.
    _attributes: dict[str, object]
    _attribute_times: dict[str, int]
    _last_delivered: dict[str, int]
    _delivery_times: tuple[int, ...]  # a tuple of ints: untracked by the collector
    _event_times: dict[str, list[int]]
    _pending: dict[str, PendingDelivery]
    _watches: list[ConversionWatch]
    # An upper bound of the encoded size, or None when not measured since loading.
    _size_bound: int | None
    # Whether attributes changed since ``take_attributes_changed`` (figures recount them).
    _attributes_changed: bool

    if TYPE_CHECKING:  # the signature of ``_UserStateMeta.__call__``, for type checkers

        def __init__(
            self,
            attributes: Mapping[str, object] | None = None,
            attribute_times: Mapping[str, int] | None = None,
            last_delivered: Mapping[str, int] | None = None,
            *,
            delivery_times: list[int] | None = None,
            event_times: Mapping[str, list[int]] | None = None,
            pending: list[PendingDelivery] | None = None,
            watches: list[ConversionWatch] | None = None,
        ) -> None: ...

    @property
    def attributes(self) -> Mapping[str, object]:
        """Return the merged profile, as filters see it; do not mutate."""
        return self._attributes

    @property
    def attribute_times(self) -> Mapping[str, int]:
        """Return the epoch ms at which each attribute was last set."""
        return self._attribute_times

    @property
    def last_delivered(self) -> Mapping[str, int]:
        """Return, per engagement id, the event time of the last delivery or control."""
        return self._last_delivered

    @property
    def delivery_times(self) -> list[int]:
        """Return recent capped delivery times, ascending (a copy)."""
        return list(self._delivery_times)

    @property
    def event_times(self) -> Mapping[str, list[int]]:
        """Return recent timestamps (ascending) per counted event name; do not mutate."""
        return self._event_times

    @property
    def pending(self) -> Mapping[str, PendingDelivery]:
        """Return pending delayed deliveries by engagement id; do not mutate."""
        return self._pending

    @property
    def watches(self) -> list[ConversionWatch]:
        """Return open conversion watches; do not mutate."""
        return self._watches

    def merge_attributes(self, attributes: Mapping[str, object], timestamp_ms: int) -> bool:
        """Merge ``attributes`` set at ``timestamp_ms``; return whether anything changed.

        Per attribute the newest timestamp wins; on equal timestamps the incoming value wins.
        ``attributes`` past a bound of ``engine.core.attributes`` raise
        ``InvalidRecord("invalid_field", ...)`` before anything changes. Past
        ``MAX_ATTRIBUTES``, the oldest attributes by (timestamp, name) are evicted.
        """
        if not attributes:
            return False
        check_attributes(attributes)
        values = self._attributes
        times = self._attribute_times
        changed = False
        grown = 0
        for name, value in attributes.items():
            set_at = times.get(name)
            if set_at is not None and timestamp_ms < set_at:
                continue
            if set_at != timestamp_ms:
                times[name] = timestamp_ms
                changed = True
                grown += _TIME_BYTES
            current = values.get(name, _MISSING)
            # Compare types too: 1 == True in Python, but they are different JSON values.
            if current.__class__ is not value.__class__ or current != value:
                values[name] = value
                changed = True
                grown += 2 * _json_size(name) + _json_size(value) + _TIME_BYTES
        if not changed:
            return False
        self._attributes_changed = True
        excess = len(values) - MAX_ATTRIBUTES
        if excess > 0:
            for name in _oldest(times, excess):
                del values[name], times[name]
        self._grew(grown)
        return True

    def take_attributes_changed(self) -> bool:
        """Return whether attributes changed (set or evicted) since the last call."""
        changed, self._attributes_changed = self._attributes_changed, False
        return changed

    def last_delivered_at(self, engagement_id: str) -> int | None:
        """Return the event time of the last delivery of ``engagement_id``, if any."""
        return self._last_delivered.get(engagement_id)

    def record_delivery(self, engagement_id: str, triggered_at_ms: int) -> None:
        """Remember a delivery; a late, older trigger never moves the time backwards.

        Past ``MAX_DELIVERY_HISTORY`` engagements, the oldest other one by (time, id) is
        forgotten (it may then deliver again, as to a user it never reached).
        """
        history = self._last_delivered
        previous = history.get(engagement_id)
        if previous is not None and triggered_at_ms <= previous:
            return
        history[engagement_id] = triggered_at_ms
        if previous is None and len(history) > MAX_DELIVERY_HISTORY:
            del history[min((t, e) for e, t in history.items() if e != engagement_id)[1]]
        self._grew(_json_size(engagement_id) + _TIME_BYTES + 2 if previous is None else _TIME_BYTES)

    def is_capped(self, timestamp_ms: int, caps: tuple[FrequencyCap, ...]) -> bool:
        """Return whether a delivery at ``timestamp_ms`` would break one of ``caps``."""
        return is_capped(list(self._delivery_times), timestamp_ms, caps)

    def count_towards_caps(self, timestamp_ms: int, limit: int) -> None:
        """Remember a capped delivery, keeping the ``limit`` most recent times."""
        times = list(self._delivery_times)
        record_delivery_time(times, timestamp_ms, limit)
        self._delivery_times = tuple(times)
        self._grew(_TIME_BYTES)

    def count_event(self, name: str, timestamp_ms: int, specs: Mapping[str, CountSpec]) -> None:
        """Count custom event ``name``; prune every counted name to what ``specs`` need."""
        new_name = name not in self._event_times
        record_occurrence(self._event_times, name, timestamp_ms, specs)
        self._grew(_TIME_BYTES + (_json_size(name) + 4 if new_name else 0))

    def add_pending(self, pending: PendingDelivery) -> None:
        """Store ``pending``, replacing any pending delivery of the same engagement.

        The matcher keeps to ``pending.MAX_PENDING_PER_USER``; this does not check it.
        """
        self._pending[pending.engagement_id] = pending
        self._grew(_json_size(pending.to_json_dict()) + 2)

    def take_pending(self, engagement_id: str, delivery_id: str) -> PendingDelivery | None:
        """Remove and return the pending delivery ``delivery_id``, if still stored."""
        pending = self._pending.get(engagement_id)
        if pending is None or pending.delivery_id != delivery_id:
            return None
        del self._pending[engagement_id]
        return pending

    def add_watch(self, watch: ConversionWatch) -> None:
        """Start a conversion watch (expired and excess watches are dropped)."""
        if self._watches is _NO_WATCHES:
            self._watches = []
        add_watch(self._watches, watch)
        self._grew(_json_size(watch.to_json_dict()) + 2)

    def take_watches(self, keep: Callable[[ConversionWatch], bool]) -> list[ConversionWatch]:
        """Remove and return the watches ``keep`` rejects, in order."""
        kept: list[ConversionWatch] = []
        taken: list[ConversionWatch] = []
        for watch in self._watches:
            (kept if keep(watch) else taken).append(watch)
        self._watches = kept or _NO_WATCHES
        return taken

    def encoded_size(self) -> int:
        """Return the size of ``to_json_dict()`` as compact JSON (what the store keeps)."""
        return _json_size(self.to_json_dict())

    def _grew(self, added: int) -> None:
        """Account for a change of at most ``added`` bytes; keep within the size bound.

        The bound is kept as an upper estimate, so the state is measured only when the
        estimate passes ``MAX_USER_STATE_BYTES`` (or for the first change after loading).
        """
        bound = self._size_bound
        if bound is not None:
            bound += added + _SECTION_BYTES
            if bound <= MAX_USER_STATE_BYTES:
                self._size_bound = bound
                return
        self._size_bound = self._fit()

    def _fit(self) -> int:
        """Measure the state; past the bound, evict the oldest entries down to the target.

        Return the exact size.
        """
        size = self.encoded_size()
        if size <= MAX_USER_STATE_BYTES:
            return size
        for freed in self._evict_oldest():
            size -= freed  # freed is never under what the eviction saves
            if size <= _FIT_TARGET:
                size = self.encoded_size()
                if size <= _FIT_TARGET:
                    return size
        return self.encoded_size()  # only pending deliveries, watches and cap times left

    def _evict_oldest(self) -> Iterator[int]:
        """Evict one entry per step, in eviction order; yield at least the bytes it saved."""
        values, times = self._attributes, self._attribute_times
        for name in sorted(times, key=lambda key: (times[key], key)):
            freed = 2 * _json_size(name) + _json_size(values[name]) + _TIME_BYTES + 4
            del values[name], times[name]
            self._attributes_changed = True
            yield freed + (2 * _SECTION_BYTES if not times else 0)
        counted = self._event_times
        for _, name in sorted((at, name) for name, kept in counted.items() for at in kept):
            kept = counted[name]
            del kept[0]  # the oldest left of this name: the order is ascending
            freed = _TIME_BYTES
            if not kept:
                del counted[name]
                freed += _json_size(name) + 4 + (_SECTION_BYTES if not counted else 0)
            yield freed
        history = self._last_delivered
        for engagement_id in sorted(history, key=lambda key: (history[key], key)):
            del history[engagement_id]
            yield (
                _json_size(engagement_id) + _TIME_BYTES + 2 + (_SECTION_BYTES if not history else 0)
            )

    def to_json_dict(self) -> dict[str, object]:
        """Return the compact JSON form; empty sections are left out (a new user is ``{}``).

        ``a`` attributes, ``t`` their times, ``d`` last delivery per engagement, ``f``
        capped delivery times, ``n`` counted event times per name, ``p`` pending
        deliveries, ``w`` conversion watches.
        """
        data: dict[str, object] = {}
        if self._attributes:
            data["a"] = dict(self._attributes)
            data["t"] = dict(self._attribute_times)
        if self._last_delivered:
            data["d"] = dict(self._last_delivered)
        if self._delivery_times:
            data["f"] = list(self._delivery_times)
        if self._event_times:
            data["n"] = {name: list(times) for name, times in self._event_times.items()}
        if self._pending:
            data["p"] = [self._pending[key].to_json_dict() for key in sorted(self._pending)]
        if self._watches:
            data["w"] = [watch.to_json_dict() for watch in self._watches]
        return data

    @classmethod
    def from_json_dict(cls, data: object) -> UserState:
        """Rebuild a ``UserState`` from ``to_json_dict`` output."""
        if not isinstance(data, Mapping):
            raise InvalidRecord("invalid_state", "user state must be an object")
        return cls(
            stored_object(data, "a"),
            read_times(data, "t"),
            read_times(data, "d"),
            delivery_times=sorted_times(read_list(data, "f"), "'f'"),
            event_times=read_event_times(data),
            pending=[PendingDelivery.from_json_dict(item) for item in read_list(data, "p")],
            watches=[ConversionWatch.from_json_dict(item) for item in read_list(data, "w")],
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, UserState):
            return NotImplemented
        return self.to_json_dict() == other.to_json_dict()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __reduce__(self) -> tuple[Callable[[object], UserState], tuple[dict[str, object]]]:
        # Copies and pickles go through the stored form: the struct's own would call
        # ``UserState`` with its fields, which the metaclass does not take.
        return UserState.from_json_dict, (self.to_json_dict(),)

    def __repr__(self) -> str:
        return f"UserState({self.to_json_dict()!r})"
