"""Locate what is wrong in an engagement document: the field, in the author's own names.

A field path is the keys and list indices leading to a value, written dotted
(``variants.0.weight``, ``audience.filters.2.value``). ``InvalidField`` is the
``invalid_engagement`` error of one field; ``FieldProblem`` is the same, as data, for
tools that report every problem at once (``declic engagements apply``).

Every number of an engagement must be one its record can carry: an integer within 64
bits (``MIN_INTEGER``..``MAX_INTEGER``; JSON encoders refuse larger ones), a finite float
(a YAML ``.inf`` or ``.nan`` would be written as null). ``number_problems`` finds the
others, wherever they are, free-form messages included.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from math import isfinite
from typing import Final, NamedTuple

from engine.errors import InvalidRecord

FieldPath = tuple[str | int, ...]

# The integers a record can carry: signed 64 bits. The engagement schema states them
# again as the bounds of `priority`; a unit test holds the two equal.
MIN_INTEGER: Final = -(2**63)
MAX_INTEGER: Final = 2**63 - 1
_PREVIEW_CHARS: Final = 40


def dotted(path: Sequence[str | int]) -> str:
    """Return ``path`` as ``audience.filters.2.value``."""
    return ".".join(str(part) for part in path)


class FieldProblem(NamedTuple):
    """One problem of an engagement: the field (empty: the whole engagement) and what."""

    path: FieldPath
    message: str

    def __str__(self) -> str:
        return f"{dotted(self.path)}: {self.message}" if self.path else self.message


class InvalidField(InvalidRecord):
    """Raise when one field of an engagement is invalid; ``path`` locates it."""

    def __init__(
        self, path: Sequence[str | int], message: str, *, engagement_id: str | None = None
    ) -> None:
        problem = FieldProblem(tuple(path), message)
        owner = "" if engagement_id is None else f"{engagement_id}: "
        super().__init__("invalid_engagement", f"{owner}{problem}")
        self.path = problem.path
        self.message = message
        self.engagement_id = engagement_id

    @property
    def problem(self) -> FieldProblem:
        return FieldProblem(self.path, self.message)

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (self.path, self.message, self.engagement_id))


def _rebuild(path: FieldPath, message: str, engagement_id: str | None) -> InvalidField:
    return InvalidField(path, message, engagement_id=engagement_id)


def _preview(value: object) -> str:
    text = str(value)
    return text if len(text) <= _PREVIEW_CHARS else text[: _PREVIEW_CHARS - 1] + "…"


def number_problem(value: object) -> str | None:
    """Return why ``value`` is a number no record can carry, or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        if MIN_INTEGER <= value <= MAX_INTEGER:
            return None
        return (
            f"must be an integer between {MIN_INTEGER} and {MAX_INTEGER} (64 bits), "
            f"got {_preview(value)}"
        )
    if isinstance(value, float) and not isfinite(value):
        return f"must be a finite number, got {value}"
    return None


def number_problems(document: object, path: FieldPath = ()) -> list[FieldProblem]:
    """Return every number in ``document`` that no record can carry, at its path."""
    problems: list[FieldProblem] = []
    pending: list[tuple[FieldPath, object]] = [(path, document)]
    while pending:
        where, value = pending.pop()
        if isinstance(value, Mapping):
            pending += [((*where, key), item) for key, item in value.items()]
        elif isinstance(value, list | tuple):
            pending += [((*where, index), item) for index, item in enumerate(value)]
        else:
            problem = number_problem(value)
            if problem is not None:
                problems.append(FieldProblem(where, problem))
    # The stack visits fields last first: report them in document order.
    problems.reverse()
    return problems
