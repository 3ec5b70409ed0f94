"""Retry what fails while the Kafka cluster is unreachable or moving, instead of exiting.

A worker started before its brokers, or one that outlives a broker outage, waits and
says so; a node down in a replicated cluster only sends requests elsewhere. Errors
that are not Kafka's or the network's (a setting, a local disk) are not retried, nor
are Kafka's refusals (``access_error``): credentials it rejects, or an operation the
principal has no ACL for. Those are raised as ``KafkaAccessError``, naming what was refused.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TypeVar

from aiokafka.errors import (
    AuthenticationFailedError,
    AuthenticationMethodNotSupported,
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    IllegalSaslStateError,
    KafkaConnectionError,
    KafkaError,
    NodeNotReadyError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
    UnsupportedSaslMechanismError,
)
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_delay,
    wait_exponential,
)

from engine.errors import KafkaAccessError, KafkaAuthenticationFailed, KafkaNotAuthorized

log = logging.getLogger(__name__)

T = TypeVar("T")

KAFKA_UNAVAILABLE = (KafkaError, OSError, asyncio.TimeoutError)
FIRST_WAIT_SECONDS = 0.5
LONGEST_WAIT_SECONDS = 10.0

# Kafka's refusals of an operation, with the kind of resource an ACL was missing on.
AUTHORIZATION_FAILURES: dict[type[KafkaError], str] = {
    TopicAuthorizationFailedError: "topic",
    GroupAuthorizationFailedError: "group",
    TransactionalIdAuthorizationFailed: "transactional id",
    ClusterAuthorizationFailedError: "cluster",
}
# A broker refusing the credentials, or a TLS handshake that cannot succeed.
AUTHENTICATION_FAILURES = (
    SaslAuthenticationFailed,
    AuthenticationFailedError,
    AuthenticationMethodNotSupported,
    UnsupportedSaslMechanismError,
    IllegalSaslStateError,
    ssl.SSLError,
)
# What aiokafka raises when it could not connect: the log may say it was refused.
CONNECTION_FAILURES = (KafkaConnectionError, NodeNotReadyError, OSError)
# TLS errors of a connection cut short (a broker going down): no refusal.
_TLS_CUT_SHORT = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError)


def _describe(error: BaseException | None) -> str:
    if error is None:
        return "no answer"
    if isinstance(error, KafkaConnectionError) and _WATCH.last_connection_error is not None:
        # "Unable to bootstrap from [...]" says nothing the reader can act on; aiokafka
        # logged the cause (refused, unknown host, ...) just before raising it.
        cause = _WATCH.last_connection_error
        reason = os.strerror(cause.errno).lower() if cause.errno else str(cause)
        return f"unreachable: {reason}"
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _authentication_failure(error: BaseException) -> KafkaAuthenticationFailed:
    if isinstance(error, ssl.SSLError):
        reason = getattr(error, "verify_message", None) or error.reason or str(error)
        return KafkaAuthenticationFailed(
            f"the TLS handshake failed: {reason} (check kafka_ssl_cafile, and "
            "kafka_ssl_certfile and kafka_ssl_keyfile if the brokers require a client "
            "certificate)"
        )
    reason = str(error.args[0]) if error.args else getattr(error, "description", str(error))
    return KafkaAuthenticationFailed(
        f"authentication failed: {reason} (check DECLIC_KAFKA_SASL_USERNAME, "
        "DECLIC_KAFKA_SASL_PASSWORD and DECLIC_KAFKA_SASL_MECHANISM)"
    )


class _RefusalWatch(logging.Filter):
    """Keep the last authentication failure aiokafka logged.

    aiokafka logs why it could not connect (``Unable connect to "host:port": <error>``) and
    then raises only ``KafkaConnectionError: Unable to bootstrap``: the log record holds the
    real cause, SaslAuthenticationFailed or a TLS error. Records pass through unchanged.
    """

    def __init__(self) -> None:
        super().__init__()
        self.last: tuple[float, KafkaAuthenticationFailed] | None = None
        self.last_connection_error: OSError | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        arguments = record.args if isinstance(record.args, tuple) else ()
        for argument in arguments:
            if isinstance(argument, OSError) and not isinstance(argument, ssl.SSLError):
                self.last_connection_error = argument
            if isinstance(argument, AUTHENTICATION_FAILURES) and not isinstance(
                argument, _TLS_CUT_SHORT
            ):
                self.last = (time.monotonic(), _authentication_failure(argument))
        return True


_WATCH = _RefusalWatch()
logging.getLogger("aiokafka").addFilter(_WATCH)


def _operation(traceback: TracebackType | None) -> str | None:
    """Return what a refused topic operation was, from the aiokafka code that raised it.

    Consumers and admin clients raise it in their own code; a producer reports a refused
    write through the future of the send, awaited in ours: no aiokafka frame then.
    """
    modules = []
    while traceback is not None:
        modules.append(str(traceback.tb_frame.f_globals.get("__name__", "")))
        traceback = traceback.tb_next
    for module in reversed(modules):
        if module.startswith("aiokafka.producer"):
            return "write to"
        if module.startswith("aiokafka.consumer"):
            return "read"
        if module.startswith("aiokafka.admin"):
            return "describe"
    if modules and not any(module.startswith("aiokafka") for module in modules):
        return "write to"
    return None


def _denial(error: KafkaError, resource: str) -> str:
    """Return which permission Kafka refused, as precisely as the error tells."""
    detail = error.args[0] if error.args else None
    if isinstance(detail, set | frozenset | list | tuple):
        names = ", ".join(repr(str(name)) for name in sorted(detail, key=str))
    else:
        names = repr(str(detail)) if detail else ""
    code = getattr(error, "message", type(error).__name__)
    if resource == "topic" and isinstance(detail, str) and detail.startswith("cannot create topic"):
        topic = detail.removeprefix("cannot create topic ").split(":", 1)[0]
        return f"not authorized to create topic {topic} ({code}: no ACL allows Create on it)"
    if resource == "topic":
        operation = _operation(error.__traceback__)
        allow = {"write to": "Write", "read": "Read", "describe": "Describe"}.get(
            operation or "", "the operation"
        )
        return (
            f"not authorized to {operation or 'use'} topic {names or '(unnamed)'} "
            f"({code}: no ACL allows {allow} on it)"
        )
    if resource == "group":
        return f"not authorized to use group {names} ({code}: no ACL allows Read on it)"
    if resource == "transactional id":
        return f"not authorized to use transactional id {names} ({code}: no ACL allows Write on it)"
    return (
        f"not authorized by the cluster ({code}): an idempotent producer needs Write on the "
        "topics it writes (or IdempotentWrite on the cluster)"
    )


def access_error(error: BaseException, since: float | None = None) -> KafkaAccessError | None:
    """Return the refusal ``error`` stands for, or None if it is not one.

    A refusal is an authorization error (the message names the resource and the operation
    an ACL must allow), a failed authentication or TLS handshake, or a connection error
    while aiokafka logged such a failure (at or after ``since``, a ``time.monotonic()``).
    """
    if isinstance(error, KafkaAccessError):
        return error
    for kind, resource in AUTHORIZATION_FAILURES.items():
        if isinstance(error, kind):
            return KafkaNotAuthorized(_denial(error, resource))
    if isinstance(error, AUTHENTICATION_FAILURES) and not isinstance(error, _TLS_CUT_SHORT):
        return _authentication_failure(error)
    last = _WATCH.last
    if isinstance(error, CONNECTION_FAILURES) and last is not None:
        moment, refusal = last
        if since is None or moment >= since:
            return refusal
    return None


async def retry_kafka_forever(
    call: Callable[[], Awaitable[T]],
    what: str,
    on_wait: Callable[[str], None] | None = None,
    errors: tuple[type[BaseException], ...] = KAFKA_UNAVAILABLE,
) -> T:
    """Return ``await call()``, retried with growing pauses while it raises ``errors``
    (by default: Kafka is unavailable), except Kafka's refusals: those are raised at once as
    ``KafkaAccessError`` (see ``access_error``).

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

    async def refusals_raised() -> T:
        started = time.monotonic()
        try:
            return await call()
        except Exception as error:
            refused = access_error(error, since=started)
            if isinstance(refused, KafkaNotAuthorized) and refused is not error:
                raise KafkaNotAuthorized(f"{refused}; could not {what}") from error
            if refused is not None and refused is not error:
                raise refused from error
            raise

    retrying = AsyncRetrying(
        retry=retry_if_exception(
            lambda error: isinstance(error, errors) and not isinstance(error, KafkaAccessError)
        ),
        wait=wait_exponential(multiplier=FIRST_WAIT_SECONDS, max=LONGEST_WAIT_SECONDS),
        before_sleep=before_sleep,
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            return await refusals_raised()
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
