"""The engagement form's layout: every field of an engagement, by its path, and what the
form does with its text (``Leaf``). A field's name is its path dotted, list indices as
numbers (``audience.filters.0.op``); ``forms`` writes and reads the fields.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Final, TypeAlias

from engine.core.fields import FieldPath

_INDEX: Final = re.compile(r"[0-9]+")
# Button keys become field names: no dots, and not a number, so paths stay unambiguous.
# The keys of a button the form has inputs for (templates/form.html).
BUTTON_FIELDS: Final = frozenset({"id", "label", "action"})
BUTTON_KEY: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
MESSAGE_TEXTS: Final = ("title", "body", "image_url")


class Leaf(Enum):
    """What the form does with a field's text."""

    TEXT = "text"  # a string; empty means absent
    INTEGER = "integer"
    NUMBER = "number"
    CHECKBOX = "checkbox"  # always shown: not submitted means false
    SECONDS_OR_NULL = "seconds_or_null"  # empty means null
    JSON = "json"  # JSON when it parses, else the text; empty means absent
    RAW = "raw"  # the text as submitted, empty included (custom message rows)


@dataclass(frozen=True, slots=True)
class ListOf:
    """Rows of ``item``, numbered from 0."""

    item: Node


@dataclass(frozen=True, slots=True)
class TextMap:
    """A free-form object of text fields (a message button)."""


@dataclass(frozen=True, slots=True)
class Message:
    """Free-form message content: the fields of ``layout``, the other keys as rows."""

    layout: Mapping[str, Node]


Node: TypeAlias = "Leaf | ListOf | TextMap | Message | Mapping[str, Node]"

_T, _I, _N = Leaf.TEXT, Leaf.INTEGER, Leaf.NUMBER
_CONDITIONS: Final = ListOf({"property": _T, "op": _T, "value": Leaf.JSON})
_MESSAGE: Final = Message(
    {
        **dict.fromkeys(MESSAGE_TEXTS, _T),
        "buttons": ListOf(TextMap()),
        "custom": ListOf({"key": Leaf.RAW, "value": Leaf.RAW}),
    }
)
# The form's layout: every field of schemas/engagement.schema.json (a unit test holds
# the two equal), with what the form does with its text.
LAYOUT: Final[Mapping[str, Node]] = {
    "id": _T,
    "name": _T,
    "description": _T,
    "status": _T,
    "priority": _I,
    "trigger": {
        "event": _T,
        "name": _T,
        "where": _CONDITIONS,
        "delay_seconds": _I,
        "cancel_on": ListOf({"event": _T, "where": _CONDITIONS}),
    },
    "schedule": {
        "start": _T,
        "end": _T,
        "local_time": Leaf.CHECKBOX,
        "hours": {"from": _T, "to": _T},
    },
    "audience": {
        "filters": ListOf(
            # Attribute conditions and event counts share the rows.
            {
                "attribute": _T,
                "event": _T,
                "op": _T,
                "value": Leaf.JSON,
                "count": _I,
                "within_seconds": _I,
            }
        ),
        "percent": _N,
        # Carried through every edit: dropping it would turn version 2 back into 1.
        "hash_version": _I,
    },
    "message": _MESSAGE,
    "variants": ListOf({"id": _T, "weight": _N, "message": _MESSAGE}),
    "control_percent": _N,
    "ignore_frequency_caps": Leaf.CHECKBOX,
    "expires_after_seconds": _I,
    "conversion": {"event": _T, "where": _CONDITIONS, "window_seconds": _I},
    "elements": ListOf({"element": _T, "metric": _T}),
    "reeligibility": {"after_seconds": Leaf.SECONDS_OR_NULL},
}


def child_of(node: Node, segment: str | int) -> Node | None:
    """Return the layout below ``node`` at ``segment``, or None when there is none."""
    if isinstance(node, Message):
        node = node.layout
    if isinstance(node, ListOf):
        return node.item if isinstance(segment, int) else None
    if isinstance(node, TextMap):
        return _T if isinstance(segment, str) and BUTTON_KEY.fullmatch(segment) else None
    if isinstance(node, Mapping) and isinstance(segment, str):
        return node.get(segment)
    return None


def locate(name: str) -> tuple[FieldPath, Leaf] | None:
    """Return the path and leaf of the field ``name``, or None when there is no such field."""
    node: Node | None = LAYOUT
    path: list[str | int] = []
    for part in name.split("."):
        segment: str | int = int(part) if _INDEX.fullmatch(part) else part
        node = child_of(node, segment) if node is not None else None
        path.append(segment)
    return (tuple(path), node) if isinstance(node, Leaf) else None
