"""Schema validation errors in plain words: what a failed keyword means for the user,
without the validator's wording."""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Sequence
from typing import Final

import jsonschema_rs

_PREVIEW_CHARS: Final = 60


def preview(value: object) -> str:
    """Return a value as JSON, cut to a few dozen characters."""
    text = json.dumps(value, ensure_ascii=False, default=repr)
    return text if len(text) <= _PREVIEW_CHARS else text[: _PREVIEW_CHARS - 1] + "…"


KINDS = jsonschema_rs.ValidationErrorKind
_TYPE_WORDS: Final = {
    "object": "an object",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


def _either(words: Sequence[str]) -> str:
    """Return ``a``, ``a or b``, ``a, b or c``."""
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def expected(types: Iterable[str]) -> str:
    named = set(types)
    if "number" in named:
        named.discard("integer")
    words = [word for name, word in _TYPE_WORDS.items() if name in named]
    return f"expected {_either(words)}" if words else "has the wrong type"


def _number_text(limit: object) -> str:
    if isinstance(limit, float) and limit.is_integer():
        return str(int(limit))
    return str(limit)


def known_fields(name: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (known fields: {', '.join(known)})" if known else ""


def _size(value: object) -> str:
    return str(len(value)) if isinstance(value, str | list | dict) else "?"


def plain_reason(kind: jsonschema_rs.ValidationErrorKind, instance: object) -> str:
    """Say what a failed keyword means, without the validator's wording."""
    got = f", got {preview(instance)}"
    if isinstance(kind, KINDS.Type):
        return expected(kind.types) + got
    bounds: dict[type, str] = {
        KINDS.Minimum: "must be at least",
        KINDS.Maximum: "must be at most",
        KINDS.ExclusiveMinimum: "must be greater than",
        KINDS.ExclusiveMaximum: "must be less than",
    }
    for kind_type, words in bounds.items():
        if isinstance(kind, kind_type):
            return f"{words} {_number_text(getattr(kind, 'limit', '?'))}{got}"
    sizes: dict[type, tuple[str, str]] = {
        KINDS.MinLength: ("must be at least", "characters long"),
        KINDS.MaxLength: ("must be at most", "characters long"),
        KINDS.MinItems: ("must hold at least", "items"),
        KINDS.MaxItems: ("must hold at most", "items"),
        KINDS.MinProperties: ("must have at least", "fields"),
        KINDS.MaxProperties: ("must have at most", "fields"),
    }
    for kind_type, (words, unit) in sizes.items():
        if isinstance(kind, kind_type):
            limit = getattr(kind, "limit", "?")
            if limit == 1 and words.endswith("at least"):
                return "must not be empty"
            return f"{words} {limit} {unit}, not {_size(instance)}"
    if isinstance(kind, KINDS.Enum):
        return f"must be one of {_either([preview(option) for option in kind.options])}{got}"
    if isinstance(kind, KINDS.Constant):
        return f"must be {preview(kind.expected_value)}{got}"
    if isinstance(kind, KINDS.Pattern):
        return f"must match the pattern {kind.pattern}{got}"
    if isinstance(kind, KINDS.Format):
        return f"must be a valid {kind.format}{got}"
    if isinstance(kind, KINDS.MultipleOf):
        return f"must be a multiple of {_number_text(kind.multiple_of)}{got}"
    if isinstance(kind, KINDS.UniqueItems):
        return "must not hold the same item twice"
    if isinstance(kind, KINDS.OneOfMultipleValid):
        return f"fits more than one of the allowed forms{got}"
    if isinstance(kind, KINDS.Contains):
        return "holds too few or too many items of the kind counted"
    if isinstance(kind, KINDS.PropertyNames):
        name = kind.error.instance
        return f"has a field name that is not allowed: {plain_reason(kind.error.kind, name)}"
    return f"is not allowed here{got}"
