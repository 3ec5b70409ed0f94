"""Process the records of one partition: decode, validate, match, stage outputs and state.

Nothing here awaits: a batch is handled synchronously and its effects wait in
the outbox and the store's staged writes until the checkpoint commits them.

Nothing here can stop the partition either: a record whose key and value together take
more than ``max_input_bytes`` becomes a dead letter (``too_large``) without being parsed,
a record that cannot be processed becomes one dead letter (its outputs so far dropped),
a record whose output would be larger than ``max_record_bytes`` too
(``output_too_large``), a dead letter itself is cut to fit, and a stored value that
cannot be read or a state that cannot be written is logged and skipped, one at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka.structs import ConsumerRecord, TopicPartition
from msgspec import UnsetType

from engine.core.catalog import Catalog
from engine.core.deliveries import new_delivery_state
from engine.core.delivery_state import DeliveryState
from engine.core.events import (
    Interaction,
    TriggerEvent,
    read_custom_event,
    read_interaction,
    read_profile_update,
    read_session_event,
    read_test_send,
)
from engine.core.interactions import join_interaction
from engine.core.matcher import evaluate, is_stale, is_too_far_ahead
from engine.core.pending import PendingDelivery
from engine.core.policy import MatchPolicy
from engine.core.release import release_pending
from engine.core.test_sends import test_delivery
from engine.core.user_requests import audit_record, read_user_request
from engine.core.wire import TestSendRecord, UserRequestRecord
from engine.errors import InvalidRecord, StateFormatError
from engine.metrics import BatchTally
from engine.state.keys import DELIVERY_PREFIX
from engine.state.store import PartitionStore
from engine.state.users import erase_user
from engine.stats.partition_stats import PartitionStats
from engine.stream.bulk_send import OutputRecord
from engine.stream.dead_letters import dead_letter
from engine.stream.due_index import DueIndex
from engine.stream.topics import InputKind, TopicNames
from engine.stream.user_cache import UserCache

log = logging.getLogger(__name__)

HOUR_MS = 3_600_000
# Settings.max_input_bytes' default: the largest input record (key and value) parsed.
DEFAULT_MAX_INPUT_BYTES = 262_144

# The schema each input topic's records follow (their structs are in engine.core.wire).
SCHEMA_BY_KIND = {
    InputKind.SESSIONS: "session-event",
    InputKind.CUSTOM_EVENTS: "custom-event",
    InputKind.INTERACTIONS: "interaction",
    InputKind.PROFILES: "profile-update",
    InputKind.TEST_SENDS: "test-send",
    InputKind.USER_REQUESTS: "user-request",
}


@dataclass(slots=True)
class Outbox:
    """What one partition has produced since its last checkpoint."""

    records: list[OutputRecord] = field(default_factory=list)
    # Offset of the next record to read, per input topic-partition (what gets committed).
    next_offsets: dict[TopicPartition, int] = field(default_factory=dict)
    tally: BatchTally = field(default_factory=BatchTally)
    # When each real delivery became due: its trigger's time, or the end of its delay.
    delivery_times_ms: list[int] = field(default_factory=list)

    def is_empty(self) -> bool:
        """Return True when there is nothing to commit."""
        return not self.records and not self.next_offsets


class PartitionProcessor:
    """Match the events of one input partition and stage what results."""

    def __init__(
        self,
        partition: int,
        store: PartitionStore,
        topics: TopicNames,
        catalog: Callable[[], Catalog],
        policy: MatchPolicy,
        *,
        max_record_bytes: int = 1_000_000,
        max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES,
    ) -> None:
        self.partition = partition
        self.max_record_bytes = max_record_bytes
        self.max_input_bytes = max_input_bytes
        self.store = store
        self.topics = topics
        self._catalog = catalog
        self._policy = policy
        self.due = DueIndex(store)
        self.stats = PartitionStats(store, partition)
        self.users = UserCache(partition, store, self.stats.segments, max_record_bytes)
        self.outbox = Outbox()

    def handle_batch(
        self, tp: TopicPartition, records: Iterable[ConsumerRecord], now_ms: int
    ) -> None:
        """Process records of one topic-partition, in offset order."""
        kind = self.topics.inputs[tp.topic]
        catalog = self._catalog()
        outbox = self.outbox
        count = 0
        last_offset = -1
        for record in records:
            queued = len(outbox.records)
            try:
                self._handle(kind, record, catalog, now_ms)
            except StateFormatError:
                raise  # state written by a newer version: stop, never misread it
            except InvalidRecord as error:
                del outbox.records[queued:]  # one dead letter instead of the outputs so far
                self._dead_letter(record, error.reason, error.detail, now_ms)
            except Exception as error:  # one bad record must never stop the partition
                log.exception(
                    "unexpected error on %s[%d]@%d", tp.topic, tp.partition, record.offset
                )
                del outbox.records[queued:]
                self._dead_letter(record, "processing_error", repr(error), now_ms)
            count += 1
            last_offset = record.offset
        if count:
            outbox.tally.events_read[kind.value] += count
            outbox.next_offsets[tp] = last_offset + 1

    def _handle(
        self, kind: InputKind, record: ConsumerRecord, catalog: Catalog, now_ms: int
    ) -> None:
        size = len(record.key or b"") + len(record.value or b"")
        if size > self.max_input_bytes:
            # Checked before anything reads it: parsing and validating cost with the size.
            raise InvalidRecord(
                "too_large",
                f"the record takes {size} bytes (key and value), more than the "
                f"{self.max_input_bytes} a worker parses (max_input_bytes)",
            )
        if record.value is None:
            raise InvalidRecord("invalid_json", "record has no value")
        value: bytes = record.value
        if kind is InputKind.CUSTOM_EVENTS:
            event = read_custom_event(value)
            _check_key(record.key, event.user_id)
            label = catalog.label_for_event_name(event.event_name)
            self._match(kind, event, label, catalog, now_ms)
        elif kind is InputKind.SESSIONS:
            event = read_session_event(value)
            _check_key(record.key, event.user_id)
            self._match(kind, event, event.event_name, catalog, now_ms)
        elif kind is InputKind.INTERACTIONS:
            interaction = read_interaction(value)
            _check_key(record.key, interaction.user_id)
            self._join(interaction, catalog, now_ms)
        elif kind is InputKind.TEST_SENDS:
            request = read_test_send(value)
            _check_key(record.key, request.user_id)
            self._test_send(request, catalog, now_ms)
        elif kind is InputKind.USER_REQUESTS:
            user_request = read_user_request(value)
            _check_key(record.key, user_request.user_id)
            self._forget(user_request, now_ms)
        else:
            update = read_profile_update(value)
            _check_key(record.key, update.user_id)
            if is_too_far_ahead(update.timestamp_ms, now_ms, self._policy):
                self.outbox.tally.stale_events[kind.value] += 1
                return
            user = self.users.get(update.user_id)
            if user.merge_attributes(update.attributes, update.timestamp_ms):
                self.users.changed(update.user_id)
            self.outbox.tally.profile_updates += 1

    def _match(
        self, kind: InputKind, event: TriggerEvent, label: str, catalog: Catalog, now_ms: int
    ) -> None:
        tally = self.outbox.tally
        tally.trigger_events[(kind.value, label)] += 1
        if is_stale(event, now_ms, self._policy):
            tally.stale_events[kind.value] += 1
        user = self.users.get(event.user_id)
        result = evaluate(event, user, catalog, now_ms, self._policy)
        trigger_hour = event.timestamp_ms // HOUR_MS
        if result.leading:
            tally.count_evaluations(result.leading, trigger_hour)
        tally.count_outcome_bits(result.outcome_bits, trigger_hour)
        if result.user_changed:
            self.users.changed(event.user_id)
        for pending in result.cancelled:
            self.due.remove(pending)
        for pending in result.scheduled:
            self.due.add(pending)
        for delivery in result.deliveries:
            self._emit_delivery(delivery, event.timestamp_ms, now_ms)
        for conversion in result.conversions:
            self._emit_to_user(self.topics.conversions, event.user_id, conversion)
            tally.conversions[(str(conversion["engagement_id"]), str(conversion["variant"]))] += 1

    def release_due(self, now_ms: int) -> int:
        """Resolve the delayed deliveries due by now_ms; return how many were resolved."""
        due = self.due.pop_due(now_ms)
        catalog = self._catalog()
        for pending in due:
            queued = len(self.outbox.records)
            try:
                self._release(pending, catalog, now_ms)
            except StateFormatError:
                raise  # state written by a newer version: stop, never misread it
            except Exception:  # one delivery must never stop the others, nor the partition
                log.exception(
                    "partition %d: could not release delivery %s of engagement %r: dropped",
                    self.partition,
                    pending.delivery_id,
                    pending.engagement_id,
                )
                del self.outbox.records[queued:]
        return len(due)

    def _release(self, pending: PendingDelivery, catalog: Catalog, now_ms: int) -> None:
        user = self.users.get(pending.user_id)
        release = release_pending(pending, user, catalog, now_ms, self._policy)
        if release.evaluation is None:
            return  # cancelled meanwhile
        self.users.changed(pending.user_id)
        self.outbox.tally.count_evaluations([release.evaluation], None)
        if release.delivery is not None:
            self._emit_delivery(release.delivery, pending.due_at_ms, now_ms)

    def _emit_delivery(self, delivery: dict[str, Any], due_ms: int, now_ms: int) -> None:
        delivery_key = DELIVERY_PREFIX + delivery["delivery_id"].encode()
        if self.store.get(delivery_key) is not None:
            return  # the same trigger event was already delivered: keep the first
        state = new_delivery_state(delivery, now_ms)
        # Checked before the state is stored: a delivery too large is not one at all.
        self._emit_to_user(self.topics.deliveries, delivery["user_id"], delivery)
        self.store.put(delivery_key, orjson.dumps(state.to_json_dict()))
        test = delivery["test"]
        key = (delivery["engagement_id"], delivery["variant"], "true" if test else "false")
        self.outbox.tally.deliveries[key] += 1
        if not test:
            self.outbox.delivery_times_ms.append(due_ms)

    def _join(self, interaction: Interaction, catalog: Catalog, now_ms: int) -> None:
        delivery_key = DELIVERY_PREFIX + interaction.delivery_id.encode()
        raw = self.store.get(delivery_key)
        delivery = DeliveryState.from_json_dict(orjson.loads(raw)) if raw is not None else None
        user = self.users.get(interaction.user_id)
        result = join_interaction(interaction, delivery, user, catalog, now_ms)
        if delivery is not None and result.delivery_changed:
            self.store.put(delivery_key, orjson.dumps(delivery.to_json_dict()))
        if result.user_changed:
            self.users.changed(interaction.user_id)
        impression = result.impression
        self._emit_to_user(self.topics.impressions, interaction.user_id, impression)
        engagement_id, variant = str(impression["engagement_id"]), str(impression["variant"])
        first = "true" if impression["first"] else "false"
        test = "true" if impression.get("test") else "false"
        self.outbox.tally.impressions[(engagement_id, variant, interaction.kind, first, test)] += 1
        if result.element_metric is not None:
            self.outbox.tally.element_clicks[(engagement_id, variant, result.element_metric)] += 1

    def _test_send(self, request: TestSendRecord, catalog: Catalog, now_ms: int) -> None:
        engagement = catalog.get(request.engagement_id)
        if engagement is None:
            raise InvalidRecord(
                "unknown_engagement", f"no engagement {request.engagement_id!r} to test-send"
            )
        delivery = test_delivery(
            engagement,
            request.user_id,
            now_ms,
            request_id=request.request_id,
            variant=None if isinstance(request.variant, UnsetType) else request.variant,
        )
        self._emit_delivery(delivery, now_ms, now_ms)

    def _forget(self, request: UserRequestRecord, now_ms: int) -> None:
        """Erase every key of the user (tombstones at the checkpoint), drop them from the
        caches and the due index, and record on the audit topic what, never whom."""
        self.users.stage()  # a state changed in memory only is found, and counted, too
        self.users.forget(request.user_id)
        erased = erase_user(self.store, request.user_id)
        for pending in erased.pending_deliveries():
            self.due.remove(pending)
        audit = audit_record(request, self.partition, erased.removed(), now_ms)
        key, value = request.request_id.encode(), orjson.dumps(audit)
        self.outbox.records.append(OutputRecord(self.topics.user_audit, key, value))

    def _dead_letter(self, record: ConsumerRecord, reason: str, detail: str, now_ms: int) -> None:
        self.outbox.records.append(
            dead_letter(
                record,
                reason,
                detail,
                now_ms,
                topic=self.topics.dead_letters,
                max_record_bytes=self.max_record_bytes,
            )
        )
        self.outbox.tally.dead_letters[(self.topics.inputs[record.topic].value, reason)] += 1

    def _emit_to_user(self, topic: str, user_id: str, record: Mapping[str, object]) -> None:
        """Queue ``record`` for ``topic``, keyed by the user (it goes to their partition)."""
        key, value = user_id.encode(), orjson.dumps(record)
        if len(key) + len(value) > self.max_record_bytes:
            raise InvalidRecord(
                "output_too_large",
                f"its {topic} record would take {len(key) + len(value)} bytes, more than "
                f"the {self.max_record_bytes} a record may (max_record_bytes)",
            )
        self.outbox.records.append(OutputRecord(topic, key, value, keyed_by_user=True))

    def checkpoint_committed(self) -> None:
        """Apply the committed checkpoint's user changes to the engagement figures."""
        self.stats.segments.committed(self._catalog())

    def freeze_checkpoint(self) -> tuple[dict[bytes, bytes | None], Outbox]:
        """Hand a checkpoint the state writes and the outbox gathered so far.

        Processing may go on meanwhile: what it stages or emits waits for the next one.
        """
        self.users.stage()
        self.stats.segments.freeze()
        return self.store.freeze_staged(), self.take_outbox()

    def take_outbox(self) -> Outbox:
        """Hand the outbox to the checkpoint and start a new one."""
        outbox, self.outbox = self.outbox, Outbox()
        self.users.clear_if_full()  # full: start the next interval empty
        return outbox

    def begin_stats(self, now_ms: int, unseen_after_ms: int) -> None:
        """Start measuring this partition's engagement figures."""
        self.stats.begin_publication(self._catalog(), now_ms, unseen_after_ms)

    def advance_stats(self, seconds: float) -> float | None:
        """Work on the figures for about ``seconds``; once measured, queue them for the next
        checkpoint and return the seconds the publication took in all."""
        publication = self.stats.advance(seconds)
        if publication is None:
            return None
        for key, value in publication.records:
            self.outbox.records.append(OutputRecord(self.topics.engagement_stats, key, value))
        return publication.seconds

    def close(self) -> None:
        """Let go of what holds the store open (a figures scan under way) and the caches."""
        self.stats.close()
        self.users.clear()

    def rollback(self) -> None:
        """Forget everything not committed: caches, staged state, due index, outbox."""
        self.users.clear()
        self.store.discard_staged()
        self.stats.segments.discard()
        self.due.reload()
        self.stats.forget_published()
        self.outbox = Outbox()


def _check_key(raw: bytes | None, user_id: str) -> None:
    """Refuse a record not keyed by its user_id: its state would live on another partition."""
    key = _user_key(raw)
    if key != user_id:
        raise InvalidRecord(
            "invalid_key",
            f"record key {key!r} differs from user_id {user_id!r}: "
            "input topics must be keyed by user_id",
        )


def _user_key(raw: bytes | None) -> str | None:
    """Return the record key as text; a key that is not UTF-8 is nobody's user id.

    Decoding with replacement characters would map many byte keys to one user, whose
    state lives on the partition of another key.
    """
    if raw is None:
        return None
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise InvalidRecord("invalid_key", "record key is not UTF-8") from None
