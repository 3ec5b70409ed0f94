"""Retry what fails while the Kafka cluster is unreachable or moving, instead of exiting.

A worker started before its brokers, or one that outlives a broker outage, waits and
says so; a node down in a replicated cluster only sends requests elsewhere. Errors
that are not Kafka's or the network's (a setting, a local disk) are not retried.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiokafka.errors import KafkaError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

KAFKA_UNAVAILABLE = (KafkaError, OSError, asyncio.TimeoutError)
FIRST_WAIT_SECONDS = 0.5
LONGEST_WAIT_SECONDS = 10.0


def _describe(error: BaseException | None) -> str:
    if error is None:
        return "no answer"
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


async def retry_kafka_forever(
    call: Callable[[], Awaitable[T]],
    what: str,
    on_wait: Callable[[str], None] | None = None,
    errors: tuple[type[BaseException], ...] = KAFKA_UNAVAILABLE,
) -> T:
    """Return ``await call()``, retried with growing pauses while it raises ``errors``
    (by default: Kafka is unavailable).

    Each failure is logged as a warning naming ``what`` could not be done, and handed to
    ``on_wait`` (the worker shows it on /health).
    """

    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        problem = _describe(error)
        if on_wait is not None:
            on_wait(problem)
        log.warning(
            "cannot %s yet (%s); waiting for Kafka, next try in %.1fs",
            what,
            problem,
            state.upcoming_sleep,
        )

    retrying = AsyncRetrying(
        retry=retry_if_exception_type(errors),
        wait=wait_exponential(multiplier=FIRST_WAIT_SECONDS, max=LONGEST_WAIT_SECONDS),
        before_sleep=before_sleep,
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            return await call()
    raise AssertionError("unreachable: tenacity either returns or raises")


def _retriable(error: BaseException) -> bool:
    return isinstance(error, KafkaError) and bool(getattr(error, "retriable", False))


async def retry_kafka_briefly(call: Callable[[], Awaitable[T]], seconds: float = 30.0) -> T:
    """Return ``await call()``, retrying errors Kafka marks retriable for up to ``seconds``.

    For one request sent to one node (admin requests go to a node picked at random): a
    node that is down or a leader that is moving answers with a retriable error.
    """
    retrying = AsyncRetrying(
        retry=retry_if_exception(_retriable),
        wait=wait_exponential(multiplier=0.1, max=2.0),
        stop=stop_after_delay(seconds),
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            return await call()
    raise AssertionError("unreachable: tenacity either returns or raises")
