"""One assigned input partition: its store, processor and transactional producer, and its state.

A partition moves through explicit states, and every operation checks it:

    ASSIGNING --producer started--> RECOVERING --changelog replayed--> RUNNING
    RUNNING --commit--> COMMITTING --committed--> RUNNING
    COMMITTING --failed--> ABORTING --aborted: inputs rewound--> RUNNING
                                    --producer unusable--> ASSIGNING (a new producer fences
                                      the old one; state and offsets are read again)
    any state --revoked or closed--> REVOKED

Starting a partition's producer fences any other producer of the partition and aborts
what it left open, so once RECOVERING, the changelog and the group's committed offsets
hold everything committed for it: the partition replays the first into its store and
resumes its inputs from the second. It then keeps its inputs' committed offsets (its
rewind offsets) up to date with each checkpoint. While ASSIGNING or RECOVERING, its
inputs are paused; records fetched for it while it is not RUNNING (or COMMITTING) are
dropped, and an abort seeks every input back to its committed offset, so they are
read again. ``generation`` changes at every rewind, so records fetched before one are
recognised and dropped too.

A producer fenced by another is not replaced at once: a newer owner fenced it (this
worker was frozen or cut off past its session, and its group is about to take the
partition away) or the broker aborted its transaction after an outage. Replacing it
would fence the newer owner in turn, so the partition waits ``FENCED_WAIT_SECONDS``,
longer than a group session, for its revocation before it takes a new producer.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from aiokafka.errors import ProducerFenced
from aiokafka.structs import ConsumerRecord, TopicPartition

from engine.metrics import EngineMetrics
from engine.retry import access_error
from engine.state.store import PartitionStore
from engine.stream.bulk_send import BulkSender
from engine.stream.checkpoint import TransactionalProducer, run_transaction
from engine.stream.processor import Outbox, PartitionProcessor
from engine.stream.topics import TopicNames

log = logging.getLogger(__name__)

# A producer being stopped, or a transaction being aborted, waits no longer than this
# (its broker may be gone).
PRODUCER_STOP_SECONDS = 5.0
ABORT_SECONDS = 10.0
# Generations are unique across every partition object of the process: records fetched
# for a partition before it was revoked and assigned back are never taken for current.
_GENERATIONS = itertools.count(1)
# How long a fenced partition waits for its revocation before it takes a new producer:
# longer than a group session (aiokafka's default is 10 s).
FENCED_WAIT_SECONDS = 15.0


class PartitionState(StrEnum):
    """Where a partition is in its life on this worker."""

    ASSIGNING = "assigning"
    RECOVERING = "recovering"
    RUNNING = "running"
    COMMITTING = "committing"
    ABORTING = "aborting"
    REVOKED = "revoked"


class InputConsumer(Protocol):
    """What a partition does with the engine's consumer: position and pause its inputs."""

    def seek(self, tp: TopicPartition, offset: int) -> None: ...
    async def seek_to_beginning(self, *partitions: TopicPartition) -> None: ...
    async def position(self, tp: TopicPartition) -> int: ...
    async def committed(self, tp: TopicPartition) -> int | None: ...
    def pause(self, *partitions: TopicPartition) -> None: ...
    def resume(self, *partitions: TopicPartition) -> None: ...


@dataclass(frozen=True, slots=True)
class PartitionContext:
    """What every partition of a worker shares."""

    topics: TopicNames
    group_id: str
    metrics: EngineMetrics
    new_processor: Callable[[int, PartitionStore], PartitionProcessor]
    new_producer: Callable[[int], Awaitable[TransactionalProducer]]
    fenced_wait_seconds: float = FENCED_WAIT_SECONDS


class IllegalTransition(RuntimeError):
    """Raise when an operation does not apply to the partition's current state."""


class Partition:
    """Own one input partition from assignment to revocation."""

    def __init__(
        self, number: int, store: PartitionStore, context: PartitionContext, consumer: InputConsumer
    ) -> None:
        self.number = number
        self.store = store
        self.state = PartitionState.ASSIGNING
        self.generation = next(_GENERATIONS)
        self._context = context
        self._consumer = consumer
        self._processor: PartitionProcessor | None = None
        self._producer: TransactionalProducer | None = None
        self._sender: BulkSender | None = None
        # Monotonic time before which no new producer is started (after being fenced).
        self.producer_not_before = 0.0
        self.inputs = [TopicPartition(topic, number) for topic in context.topics.inputs]
        # Where each input resumes after an abort: the group's committed offsets.
        self._committed: dict[TopicPartition, int] = {}
        self.changelog = TopicPartition(context.topics.state_changelog, number)
        consumer.pause(*self.inputs)

    @property
    def processor(self) -> PartitionProcessor:
        """Return the processor of a running partition."""
        if self._processor is None:
            raise IllegalTransition(f"partition {self.number} has no processor while {self.state}")
        return self._processor

    @property
    def running(self) -> bool:
        """Return whether records are processed (a checkpoint may be under way)."""
        return self.state in (PartitionState.RUNNING, PartitionState.COMMITTING)

    def accepts(self, generation: int | None) -> bool:
        """Return whether records fetched at ``generation`` are still to be processed."""
        return self.running and generation == self.generation

    def _expect(self, *states: PartitionState) -> None:
        if self.state not in states:
            raise IllegalTransition(
                f"partition {self.number} is {self.state}, expected {' or '.join(states)}"
            )

    async def start_producer(self) -> None:
        """Start the partition's producer, fencing any other; then recovery may begin."""
        self._expect(PartitionState.ASSIGNING)
        producer = await self._context.new_producer(self.number)
        if self.state is not PartitionState.ASSIGNING:  # revoked meanwhile
            await _stop(producer)
            return
        self._producer = producer
        self._sender = BulkSender(producer, self.inputs[0].topic, self.number)
        self.state = PartitionState.RECOVERING

    async def start_running(self) -> None:
        """Resume the inputs from the group's committed offsets, with a fresh processor."""
        self._expect(PartitionState.RECOVERING)
        committed: dict[TopicPartition, int] = {}
        for tp in self.inputs:
            offset = await self._consumer.committed(tp)
            if offset is None:
                await self._consumer.seek_to_beginning(tp)
                offset = await self._consumer.position(tp)
            committed[tp] = offset
        if self.state is not PartitionState.RECOVERING:  # revoked meanwhile
            return
        self._committed = committed
        for tp, offset in committed.items():
            self._consumer.seek(tp, offset)
        self._processor = self._context.new_processor(self.number, self.store)
        self.generation = next(_GENERATIONS)
        self.state = PartitionState.RUNNING
        self._consumer.resume(*self.inputs)
        _freeze_long_lived()

    def handle(self, tp: TopicPartition, records: list[ConsumerRecord], now_ms: int) -> None:
        """Process records of one of the partition's inputs."""
        self._expect(PartitionState.RUNNING, PartitionState.COMMITTING)
        self.processor.handle_batch(tp, records, now_ms)

    async def commit(self) -> Outbox | None:
        """Commit what was processed since the last checkpoint.

        Return the committed outbox (None when there was nothing to commit, or when the
        checkpoint failed: the inputs were then rewound, or the producer is being
        replaced, and ``state`` says which).
        """
        self._expect(PartitionState.RUNNING)
        processor = self.processor
        staged, outbox = processor.freeze_checkpoint()
        if outbox.is_empty() and not staged:
            return None
        assert self._producer is not None and self._sender is not None
        self.state = PartitionState.COMMITTING
        metrics = self._context.metrics
        started = asyncio.get_running_loop().time()
        try:
            last_changelog_offset = await run_transaction(
                self._producer,
                self._sender,
                records=outbox.records,
                changelog=self.changelog,
                changes=staged.items(),
                offsets=outbox.next_offsets,
                group_id=self._context.group_id,
            )
        except asyncio.CancelledError:
            # The worker is stopping: nothing of this window was committed. The next owner
            # reads these records again from the committed offsets.
            self.state = PartitionState.ABORTING
            await self._abort_quietly()
            self._forget()
            raise
        except Exception as error:
            refusal = access_error(error)
            await self._abort(error)
            if refusal is not None:
                # No retry makes an ACL appear: stop, naming it (the worker exits 3).
                raise refusal from error
            return None
        self.store.commit_frozen(last_changelog_offset)
        processor.checkpoint_committed()  # with the store write, nothing awaited between
        self._committed.update(outbox.next_offsets)
        self.state = PartitionState.RUNNING
        committed_at = time.time()
        outbox.tally.delivery_latencies.extend(
            committed_at - due_ms / 1000 for due_ms in outbox.delivery_times_ms
        )
        metrics.checkpoints.labels("committed").inc()
        metrics.checkpoint_duration.observe(asyncio.get_running_loop().time() - started)
        return outbox

    async def _abort(self, error: Exception) -> None:
        """Abort the transaction; rewind the inputs, or replace an unusable producer."""
        self.state = PartitionState.ABORTING  # records fetched from now on are dropped
        self._context.metrics.checkpoints.labels("aborted").inc()
        assert self._producer is not None
        try:
            await asyncio.wait_for(self._producer.abort_transaction(), ABORT_SECONDS)
        except Exception as abort_error:
            fenced = isinstance(error, ProducerFenced) or isinstance(abort_error, ProducerFenced)
            wait = self._context.fenced_wait_seconds if fenced else 0.0
            self.producer_not_before = time.monotonic() + wait
            log.warning(
                "partition %d: checkpoint failed (%s) and could not be aborted (%s): "
                "replacing its producer%s, then reading its state and offsets again",
                self.number,
                _describe(error),
                _describe(abort_error),
                f" in {wait:.0f}s unless the partition is revoked first" if fenced else "",
            )
            await self._replace_producer()
            return
        # Both windows go, the one that failed and the one processed meanwhile, and every
        # input is read again from its last commit (records fetched meanwhile were dropped).
        self.processor.rollback()
        for tp, offset in self._committed.items():
            self._consumer.seek(tp, offset)
        # With the seeks and nothing awaited in between: every record fetched before them,
        # being processed or not, is stale from now on.
        self.generation = next(_GENERATIONS)
        self.state = PartitionState.RUNNING
        log.error(
            "partition %d: checkpoint aborted (%s); re-reading from the last commit",
            self.number,
            _describe(error),
        )

    async def _replace_producer(self) -> None:
        self._consumer.pause(*self.inputs)
        self._forget()
        self._close_processor()
        producer, self._producer, self._sender = self._producer, None, None
        self.state = PartitionState.ASSIGNING
        if producer is not None:
            await _stop(producer)

    async def _abort_quietly(self) -> None:
        if self._producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._producer.abort_transaction(), PRODUCER_STOP_SECONDS)

    def _forget(self) -> None:
        """Drop every uncommitted change: caches, staged and frozen state, the outbox."""
        if self._processor is not None:
            self._processor.rollback()
        else:
            self.store.discard_staged()

    async def close(self) -> None:
        """Let the partition go: stop its producer and close its store."""
        if self.state is PartitionState.REVOKED:
            return
        self.state = PartitionState.REVOKED
        producer, self._producer, self._sender = self._producer, None, None
        if producer is not None:
            await _stop(producer)
        self._close_processor()
        self.store.close()

    def _close_processor(self) -> None:
        if self._processor is not None:
            self._processor.close()
            self._processor = None


async def _stop(producer: TransactionalProducer) -> None:
    try:
        await asyncio.wait_for(producer.stop(), PRODUCER_STOP_SECONDS)
    except Exception as error:  # a fenced producer or a lost broker: nothing left to do
        log.debug("producer stopped with %s", _describe(error))


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def _freeze_long_lived() -> None:
    """Move what lives now (modules, the engagement catalog and its plans: about 100
    objects per engagement) out of the collector's full passes, which would otherwise
    read them all every time: once per partition start, after a collection so that no
    garbage is frozen. Frozen objects are still freed when no longer referenced (a
    replaced catalog holds no reference cycle)."""
    gc.collect()
    gc.freeze()
