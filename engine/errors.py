"""Exception hierarchy: every error Declic raises on purpose derives from DeclicError."""

from __future__ import annotations


class DeclicError(Exception):
    """Root of every error raised by Declic."""


class ConfigError(DeclicError):
    """Raise when a setting is missing or invalid."""


class InvalidRecord(DeclicError):
    """Raise when an input record cannot be processed; it goes to dead-letters."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class BrokerUnavailable(DeclicError):
    """Raise when the Kafka cluster cannot be reached."""
