"""Exception hierarchy: every error Declic raises on purpose derives from DeclicError."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


class DeclicError(Exception):
    """Root of every error raised by Declic."""


class ConfigError(DeclicError):
    """Raise when a setting is missing or invalid.

    ``problems`` pairs a settings field ("" for none) with what is wrong with it, so the
    command line can name the setting as the user gave it (flag or variable).
    """

    def __init__(self, problems: str | Sequence[tuple[str, str]]) -> None:
        self.problems = [("", problems)] if isinstance(problems, str) else list(problems)
        super().__init__(self.render({}))

    def render(self, names: Mapping[str, str]) -> str:
        """Return one line per problem, each setting named by `names` or its variable."""
        return "\n".join(
            f"{names.get(field) or 'DECLIC_' + field.upper()}: {text}" if field else text
            for field, text in self.problems
        )


class InvalidRecord(DeclicError):
    """Raise when an input record cannot be processed; it goes to dead-letters."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class StateFormatError(DeclicError):
    """Raise when a stored state value is of a format this worker cannot read.

    ``found`` is the value's format (None for a malformed header), ``newest`` the newest
    format this worker reads; see ``engine.state.format``.
    """

    def __init__(self, message: str, *, found: int | None, newest: int) -> None:
        super().__init__(message)
        self.found = found
        self.newest = newest


class KafkaAccessError(DeclicError):
    """Raise when Kafka refuses this client: its credentials, or an operation its principal
    has no ACL for. Retrying cannot help; commands and workers exit with status 3."""


class KafkaAuthenticationFailed(KafkaAccessError):
    """Raise when a broker refuses the client's credentials or the TLS handshake."""


class KafkaNotAuthorized(KafkaAccessError):
    """Raise when the principal lacks an ACL for what it asked (the message names it)."""
