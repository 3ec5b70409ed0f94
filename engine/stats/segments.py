"""Segment sizes of one partition, kept up to date as users change instead of rescanned.

A user counts in an engagement's audience when its attribute filters hold, and is kept
when, in the audience, the engagement's sample draws them (the matcher's decision). Both
depend only on the user's id and attributes, so the sizes change only when a user's
attributes are written or a user appears or goes, and when an engagement's audience or
sample changes. The processor notes each such write (attributes before and after);
changes are staged, frozen with the checkpoint that carries them and queued once it
committed (dropped if it aborted), then applied in slices (``advance``): the sizes
describe the committed store as of the last change applied. An engagement that is new,
or whose audience or sample changed, is recounted by a scan of the partition's users
(in slices too), and so is everything once, when a partition starts (its store was just
restored).

Known and audience users are exact. Kept users are exact for an engagement without a
percentage; with one, telling kept from not costs a hash per user and engagement (a
SHA-256 under hash version 1). Past ``KEPT_DRAWS_PER_USER`` engagements with a
percentage, the draws are checked for one user in 2, 4, 8... (the least that keeps
within it; chosen by a CRC-32 of the id, unrelated to either hash version) and scaled,
as the scans did with their sample of users: ``sampled_users`` says how many were.
No figure depends on the time: the audience filters read attributes only.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
import zlib
from collections import deque
from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass, field

import orjson

from engine.core.bucketing import LEGACY_HASH_VERSION, user_hash
from engine.core.catalog import Catalog
from engine.core.engagements import Engagement, sample_position
from engine.core.plan import BitCounts, FilterIndex, bit_indexes
from engine.state.keys import USER_PREFIX
from engine.state.store import PartitionStore

# Users read, or changes applied, between two checks of the time slice (tens of µs each).
RECOUNT_SLICE = 100
# Sample draws checked per user, on average, at most (see the module's docstring).
KEPT_DRAWS_PER_USER = 64
# Committed changes waiting for a slice, at most: past this they are applied at once. A
# burst of new users (millions of profiles) would otherwise queue faster than the slices
# apply them, each change holding the user's attributes in memory.
QUEUED_CHANGES_LIMIT = 20_000

log = logging.getLogger(__name__)

Attributes = Mapping[str, object]


class _Unreadable:
    """The attributes of a stored user whose state cannot be read (counted in no audience)."""


UNREADABLE = _Unreadable()
Before = Attributes | _Unreadable | None


def stored_attributes(payload: bytes | memoryview | None) -> Before:
    """Return the attributes of a stored user state (None: no user, UNREADABLE: corrupt)."""
    if payload is None:
        return None
    try:
        data = orjson.loads(payload)
        attributes = data.get("a", {}) if isinstance(data, dict) else None
    except orjson.JSONDecodeError:
        return UNREADABLE
    return attributes if isinstance(attributes, dict) else UNREADABLE


def _signature(engagement: Engagement) -> tuple[object, ...]:
    """What the audience and the sample of ``engagement`` depend on: equal, same sizes."""
    return (
        tuple(atom.identity for atom in engagement.audience_atoms),
        engagement.percent >= 100,
        engagement.sample_threshold,
        engagement.hash_version,
        engagement.sample_prefix,
        engagement.sample_salt,
    )


class _Shape:
    """Engagements as bits (index ``i`` is ``1 << i``), with their audiences indexed."""

    def __init__(self, engagements: list[Engagement]) -> None:
        self.engagements = engagements
        self.everyone = (1 << len(engagements)) - 1
        self.index = FilterIndex([engagement.audience_atoms for engagement in engagements])
        self.sampled = 0
        for position, engagement in enumerate(engagements):
            if engagement.percent < 100:
                self.sampled |= 1 << position
        self.hashes_users = any(e.hash_version != LEGACY_HASH_VERSION for e in engagements)

    def audience(self, attributes: Before) -> int:
        """Return the engagements whose audience holds ``attributes`` (none if not a user)."""
        if attributes is None or isinstance(attributes, _Unreadable) or not self.everyone:
            return 0
        return self.everyone & ~self.index.failing(attributes)

    def kept(self, user_key: bytes, audience: int) -> int:
        """Return the engagements of ``audience`` whose sample draws the user ``user_key``."""
        drawn = audience & self.sampled
        if not drawn:
            return audience
        kept = audience & ~self.sampled
        hashed = user_hash(user_key) if self.hashes_users else 0
        for position in bit_indexes(drawn):
            engagement = self.engagements[position]
            if sample_position(engagement, user_key, hashed) < engagement.sample_threshold:
                kept |= 1 << position
        return kept


@dataclass(slots=True)
class _Deltas:
    """Users entering (``plus``) and leaving (``minus``) audiences and samples, as bits."""

    audience_plus: BitCounts = field(default_factory=BitCounts)
    audience_minus: BitCounts = field(default_factory=BitCounts)
    kept_plus: BitCounts = field(default_factory=BitCounts)
    kept_minus: BitCounts = field(default_factory=BitCounts)


@dataclass(frozen=True, slots=True)
class Segment:
    """One engagement's segment on one partition."""

    known_users: int
    audience_users: int
    kept_users: int
    sampled_users: int  # users whose sample draws were checked (all readable ones if exact)


Change = tuple[bytes, tuple[Before, Attributes | None]]


class SegmentCounts:
    """Audience and kept users per engagement, and known users, of one partition."""

    def __init__(self, store: PartitionStore, draws_per_user: int = KEPT_DRAWS_PER_USER) -> None:
        self._store = store
        self._draws_per_user = draws_per_user
        self._every = 1  # one user in this many has their draws checked
        self._catalog: Catalog | None = None
        self._signatures: dict[str, tuple[object, ...]] = {}
        self._shape = _Shape([])
        # Bit counts of the current shape, added to ``_sizes`` when read or reshaped: adding
        # a user to many audiences costs a few int operations, not one per engagement.
        self._deltas = _Deltas()
        self._sizes: dict[str, list[int]] = {}  # engagement id -> [audience, kept]
        self._known = 0
        self._unreadable = 0
        self._drawn = 0  # readable users whose sample draws are checked
        self._sampled_ids: set[str] = set()  # engagements with a percentage
        self._queue: deque[Change] = deque()  # committed, not applied yet
        self._staged: dict[bytes, tuple[Before, Attributes | None]] = {}
        self._frozen: dict[bytes, tuple[Before, Attributes | None]] = {}
        # Engagements to recount or being recounted (their sizes are partial until the
        # recount ends), and whether the known users are too (at start). A recount starts
        # at its first slice, so that it counts what was committed until then.
        self._recounting: set[str] = set()
        self._recounting_known = True
        self._recounting_drawn = True
        self._wanted: list[Engagement] | None = []
        self._recount: Generator[None, None, None] | None = None

    # --- changes of users -------------------------------------------------------------

    def user_written(self, user_key: bytes, before: Before, after: Attributes | None) -> None:
        """Note a staged write of user ``user_key``: attributes ``before`` (as stored until
        now) and ``after`` (None: the user is deleted)."""
        noted = self._staged.get(user_key)
        # Within a window the first ``before`` and the last ``after`` make the change.
        self._staged[user_key] = (before if noted is None else noted[0], after)

    def freeze(self) -> None:
        """Hand the changes staged so far to the checkpoint being committed."""
        if self._frozen:  # never committed nor discarded: keep them, in order
            for user_key, (before, after) in self._staged.items():
                noted = self._frozen.get(user_key)
                self._frozen[user_key] = (before if noted is None else noted[0], after)
            self._staged = {}
            return
        self._frozen, self._staged = self._staged, {}

    def committed(self, catalog: Catalog) -> None:
        """Queue the frozen changes (their checkpoint committed); follow ``catalog``."""
        frozen, self._frozen = self._frozen, {}
        self._queue.extend(frozen.items())
        self.follow(catalog)
        queue = self._queue
        while len(queue) > QUEUED_CHANGES_LIMIT:
            self._apply(*queue.popleft())

    @property
    def queued(self) -> int:
        """Return how many committed changes wait to be applied."""
        return len(self._queue)

    def discard(self) -> None:
        """Forget staged and frozen changes (their checkpoint was aborted)."""
        self._staged = {}
        self._frozen = {}

    def _draws_checked(self, user_key: bytes) -> bool:
        return self._every == 1 or zlib.crc32(user_key) % self._every == 0

    def _apply_queued(self, deadline: float) -> bool:
        """Apply queued changes until ``deadline``; return whether none is left."""
        queue = self._queue
        while queue:
            for _ in range(min(RECOUNT_SLICE, len(queue))):
                self._apply(*queue.popleft())
            if time.perf_counter() >= deadline:
                break
        return not queue

    def _apply(self, user_key: bytes, change: tuple[Before, Attributes | None]) -> None:
        before, after = change
        shape = self._shape
        deltas = self._deltas
        if before is None:
            self._known += after is not None
        elif after is None:
            self._known -= 1
        if isinstance(before, _Unreadable):
            self._unreadable -= 1
        drawn = self._draws_checked(user_key)
        if drawn:
            self._drawn += (after is not None) - (isinstance(before, Mapping))
        was = shape.audience(before)
        now = shape.audience(after)
        came = now & ~was
        gone = was & ~now
        if came:
            deltas.audience_plus.add(came)
            if drawn:
                deltas.kept_plus.add(shape.kept(user_key, came & shape.sampled))
        if gone:
            deltas.audience_minus.add(gone)
            if drawn:
                deltas.kept_minus.add(shape.kept(user_key, gone & shape.sampled))

    # --- changes of engagements -------------------------------------------------------

    def _settle(self) -> None:
        """Add the bit counts of the current shape to the sizes by engagement id."""
        deltas, self._deltas = self._deltas, _Deltas()
        engagements = self._shape.engagements
        for counts, column, sign in (
            (deltas.audience_plus, 0, 1),
            (deltas.audience_minus, 0, -1),
            (deltas.kept_plus, 1, 1),
            (deltas.kept_minus, 1, -1),
        ):
            for position, count in counts.counts().items():
                self._sizes[engagements[position].id][column] += sign * count

    def follow(self, catalog: Catalog) -> None:
        """Follow ``catalog`` if it is new: engagements new or with another audience or
        sample are recounted, archived ones forgotten.

        Never call it between the store's write of a checkpoint and ``committed``: a
        recount's snapshot would hold changes that ``committed`` then adds again.
        """
        if catalog is not self._catalog:
            self._apply_queued(math.inf)  # committed under the engagements until now
            self._reshape(catalog)

    def _reshape(self, catalog: Catalog) -> None:
        self._settle()
        self._catalog = catalog
        engagements = [engagement for engagement in catalog if engagement.status != "archived"]
        signatures = {engagement.id: _signature(engagement) for engagement in engagements}
        changed = {
            engagement_id
            for engagement_id, signature in signatures.items()
            if self._signatures.get(engagement_id) != signature
        }
        self._signatures = signatures
        self._sampled_ids = {e.id for e in engagements if e.percent < 100}
        every = 1
        while len(self._sampled_ids) > every * self._draws_per_user:
            every *= 2
        if every != self._every:  # other users checked: every sampled engagement again
            self._every = every
            self._recounting_drawn = True
            changed |= self._sampled_ids
        self._sizes = {
            engagement_id: self._sizes.get(engagement_id, [0, 0]) for engagement_id in signatures
        }
        self._shape = _Shape(engagements)
        self._recounting = (self._recounting & signatures.keys()) | changed
        if changed:
            # A recount under way starts again with the others: one snapshot for all.
            self._wanted = [e for e in engagements if e.id in self._recounting]
            self.close()
        elif self._wanted is not None:
            self._wanted = [e for e in self._wanted if e.id in signatures]

    def _start_recount(self, engagements: list[Engagement]) -> Generator[None, None, None]:
        """Zero what is recounted and start its scan, on a snapshot taken now: the changes
        committed from now on are applied to the zeroed sizes as to the others."""
        self._apply_queued(math.inf)  # the snapshot holds them
        self._settle()  # and the bit counts too
        for engagement in engagements:
            self._sizes[engagement.id] = [0, 0]
        if self._recounting_known:
            self._known = 0
            self._unreadable = 0
        if self._recounting_drawn:
            self._drawn = 0
        entries = self._store.items(USER_PREFIX)
        first = next(entries, None)  # the store's iterator, hence its snapshot, exists now
        users = entries if first is None else itertools.chain([first], entries)
        return self._recount_users(_Shape(engagements), users)

    def _recount_users(
        self, shape: _Shape, users: Iterator[tuple[bytes, bytes | memoryview]]
    ) -> Generator[None, None, None]:
        counting_known = self._recounting_known
        counting_drawn = self._recounting_drawn
        known = unreadable = drawn_users = 0
        audience = BitCounts()
        kept = BitCounts()
        for index, (key, value) in enumerate(users):
            if index % RECOUNT_SLICE == 0:
                yield
            known += 1
            attributes = stored_attributes(value)
            if isinstance(attributes, _Unreadable):
                unreadable += 1
                continue
            user_key = key[len(USER_PREFIX) :]
            drawn = self._draws_checked(user_key)
            drawn_users += drawn
            bits = shape.audience(attributes)
            if bits:
                audience.add(bits)
                if drawn:
                    kept.add(shape.kept(user_key, bits & shape.sampled))
        for column, counts in ((0, audience), (1, kept)):
            for position, count in counts.counts().items():
                sizes = self._sizes.get(shape.engagements[position].id)
                if sizes is not None:  # else archived meanwhile
                    sizes[column] += count
        if counting_known:
            self._known += known
            self._unreadable += unreadable
            self._recounting_known = False
            if unreadable:
                log.error("%d stored users cannot be read; segments leave them out", unreadable)
        if counting_drawn:
            self._drawn += drawn_users
            self._recounting_drawn = False
        self._recounting = set()

    @property
    def recounting(self) -> bool:
        """Return whether a recount is wanted or under way."""
        return self._wanted is not None or self._recount is not None

    @property
    def busy(self) -> bool:
        """Return whether changes wait to be applied or a recount is under way."""
        return bool(self._queue) or self._wanted is not None or self._recount is not None

    def advance(self, deadline: float) -> bool:
        """Apply queued changes, then recount, until ``time.perf_counter()`` passes
        ``deadline``; return whether all is done."""
        if not self._apply_queued(deadline):
            return False
        if self._wanted is not None:
            self._recount, self._wanted = self._start_recount(self._wanted), None
        if self._recount is None:
            return True
        try:
            next(self._recount)  # at least one slice per call
            while time.perf_counter() < deadline:
                next(self._recount)
        except StopIteration:
            self._recount = None
            return True
        return False

    def close(self) -> None:
        """Abandon the scan of a recount under way (it holds a store iterator)."""
        if self._recount is not None:
            self._recount.close()
            self._recount = None

    # --- reading ----------------------------------------------------------------------

    def segments(self) -> dict[str, Segment]:
        """Return the segments of the engagements not being recounted (all committed
        changes applied); none while the known users are being recounted."""
        if self._recounting_known:
            return {}
        self._settle()
        counted = self._known - self._unreadable
        scale = counted / self._drawn if self._drawn else 0.0
        segments = {}
        for engagement_id, (audience, kept) in self._sizes.items():
            if engagement_id in self._recounting:
                continue
            if engagement_id in self._sampled_ids:
                segments[engagement_id] = Segment(
                    self._known, audience, round(kept * scale), self._drawn
                )
            else:
                segments[engagement_id] = Segment(self._known, audience, audience, counted)
        return segments
