"""Bounds on profile attributes, checked before a merge touches the user state.

``schemas/common.schema.json`` (``attributes``, ``attribute_value``, ``attribute_scalar``)
states the same numbers, so a record the schema accepts never fails here; the check is
defence in depth for records that reach the core by another path. A unit test holds the
schema's numbers equal to these constants.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from engine.errors import InvalidRecord

# Attributes one record may set (the schema's maxProperties) and a user keeps at most.
MAX_ATTRIBUTES: Final = 128
# Characters of an attribute name (the schema's propertyNames maxLength).
MAX_ATTRIBUTE_NAME_LENGTH: Final = 256
# Characters of a string value, or of a string in an array value.
MAX_ATTRIBUTE_STRING_LENGTH: Final = 256
# Items of an array value.
MAX_ATTRIBUTE_ARRAY_ITEMS: Final = 16
# Characters of a string in an event's properties: matched, never stored, so they may be
# longer (a URL); the schema bounds them (names and counts as for attributes).
MAX_PROPERTY_STRING_LENGTH: Final = 1024


def _string_problem(text: str) -> str | None:
    if len(text) > MAX_ATTRIBUTE_STRING_LENGTH:
        return f"a string of {len(text)} characters, more than {MAX_ATTRIBUTE_STRING_LENGTH}"
    return None


def _value_problem(value: object) -> str | None:
    """Return why ``value`` breaks a bound, or None.

    The schema allows a scalar or a flat array of scalars. The core, laxer on the shape
    (it has always merged any JSON value), holds every value to the same sizes: strings of
    at most ``MAX_ATTRIBUTE_STRING_LENGTH`` characters (object keys included) and at most
    ``MAX_ATTRIBUTE_ARRAY_ITEMS`` items in all, nested ones included.
    """
    if isinstance(value, str):
        return _string_problem(value)
    if value is None or isinstance(value, bool | int | float):
        return None
    items = 0
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            problem = _string_problem(node)
            if problem is not None:
                return f"an array holding {problem}"
        elif isinstance(node, list | dict):
            items += len(node)
            if items > MAX_ATTRIBUTE_ARRAY_ITEMS:
                return f"an array of more than {MAX_ATTRIBUTE_ARRAY_ITEMS} items"
            if isinstance(node, dict):
                stack.extend(node.keys())
                stack.extend(node.values())
            else:
                stack.extend(node)
        elif not (node is None or isinstance(node, bool | int | float)):
            return f"a value holding a {type(node).__name__}, not JSON"
    return None


def check_attributes(attributes: Mapping[str, object]) -> None:
    """Raise ``InvalidRecord("invalid_field", ...)`` when ``attributes`` break a bound.

    At most ``MAX_ATTRIBUTES`` names of 1 to ``MAX_ATTRIBUTE_NAME_LENGTH`` characters; each
    value a scalar (a string of at most ``MAX_ATTRIBUTE_STRING_LENGTH`` characters, a
    number, a boolean or null) or an array of at most ``MAX_ATTRIBUTE_ARRAY_ITEMS`` items
    (see ``_value_problem``).
    """
    if len(attributes) > MAX_ATTRIBUTES:
        raise InvalidRecord(
            "invalid_field",
            f"attributes: {len(attributes)} attributes, more than the {MAX_ATTRIBUTES} a "
            "record may set",
        )
    for name, value in attributes.items():
        if not isinstance(name, str) or not 1 <= len(name) <= MAX_ATTRIBUTE_NAME_LENGTH:
            raise InvalidRecord(
                "invalid_field",
                f"attribute name {str(name)[:64]!r} must have 1 to "
                f"{MAX_ATTRIBUTE_NAME_LENGTH} characters",
            )
        problem = _value_problem(value)
        if problem is not None:
            raise InvalidRecord("invalid_field", f"attribute {name[:64]!r} is {problem}")
