"""Engagement documents as HTML form fields, and back; validator problems by field.

The fields are those of ``form_layout``: a field is named by the engagement's own dotted
path, list indices as numbers (``audience.filters.0.op``). Message content is free-form
JSON, so a message (top level or ``variants.N.message``) has a layout of its own: text
fields ``title``, ``body`` and ``image_url``; ``buttons.N.<key>`` text fields; every other
key as a row ``custom.N.key`` / ``custom.N.value``.

Reading a form back (``fields_to_document``):

- an empty field means the key is absent; a list row whose fields are all empty is
  dropped (forms show blank rows for adding), and the rows left are renumbered in order;
- integer and number fields are parsed, surrounding spaces ignored;
- the always-shown checkboxes ``schedule.local_time`` and ``ignore_frequency_caps`` are
  false when not submitted (browsers send nothing for an unchecked box);
- an empty ``reeligibility.after_seconds`` is null: at most once per user;
- a condition ``value`` or a custom message value is JSON when it parses as JSON
  (``12``, ``true``, ``["FR", "BE"]``, ``"12"``), else the text itself: quote a string
  that looks like JSON. An empty custom value is the empty string.

Round trip: for a valid engagement ``d`` whose messages and message keys are non-empty
and whose optional lists are absent or non-empty, ``fields_to_document`` of
``document_to_fields(d).items()`` equals ``d`` once ``apply_engagement_defaults`` fills
both: a form cannot tell an omitted optional field from its default.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from engine.console.form_layout import (
    BUTTON_FIELDS,
    LAYOUT,
    MESSAGE_TEXTS,
    Leaf,
    ListOf,
    Message,
    Node,
    TextMap,
    child_of,
    locate,
)
from engine.core.fields import FieldPath, FieldProblem, dotted

# Fields the page posts besides the engagement's.
PAGE_FIELDS: Final = frozenset({"csrf_token", "action"})
_CHECKED: Final = frozenset({"on", "true"})
_UNCHECKED: Final = frozenset({"off", "false", ""})
_NUMBER: Final = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")
_INTEGER: Final = re.compile(r"[+-]?[0-9]+")


@dataclass(slots=True)
class FormResult:
    """A submitted form read back: the document, the fields that could not be read
    (field name -> why), and the fields as read (rows renumbered) to show the form again."""

    document: dict[str, Any]
    problems: dict[str, str] = field(default_factory=dict)
    fields: dict[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------- document -> fields


def document_to_fields(document: Mapping[str, Any]) -> dict[str, str]:
    """Return the form fields of ``document``, by field name.

    Numbers are their shortest text, booleans "true"/"false", None "". A value the layout
    does not expect (an unknown key, a list where an object belongs) is written as JSON at
    its path, so reading the form back reports it instead of dropping it.
    """
    fields: dict[str, str] = {}
    _write(LAYOUT, document, (), fields)
    return fields


def _write(node: Node, value: Any, path: FieldPath, fields: dict[str, str]) -> None:
    if isinstance(node, Message) and isinstance(value, Mapping):
        _write_message(value, path, fields)
    elif isinstance(node, Mapping) and isinstance(value, Mapping):
        for key, item in value.items():
            child = node.get(key) if isinstance(key, str) else None
            if child is None:
                fields[dotted((*path, key))] = _json_text(item)
            else:
                _write(child, item, (*path, key), fields)
    elif isinstance(node, ListOf) and isinstance(value, list):
        for index, item in enumerate(value):
            _write(node.item, item, (*path, index), fields)
    elif isinstance(node, Leaf):
        fields[dotted(path)] = _leaf_text(node, value)
    else:
        fields[dotted(path)] = _json_text(value)


def _write_message(message: Mapping[str, Any], path: FieldPath, fields: dict[str, str]) -> None:
    custom: list[tuple[str, Any]] = []
    for key, value in message.items():
        if key in MESSAGE_TEXTS and isinstance(value, str) and value:
            fields[dotted((*path, key))] = value
        elif key == "buttons" and _plain_buttons(value):
            for index, button in enumerate(value):
                for name, text in button.items():
                    fields[dotted((*path, key, index, name))] = text
        else:
            custom.append((str(key), value))
    for index, (key, value) in enumerate(custom):
        fields[dotted((*path, "custom", index, "key"))] = key
        fields[dotted((*path, "custom", index, "value"))] = _json_text(value)


def _plain_buttons(value: Any) -> bool:
    """Whether ``value`` reads back the same from button text fields (else: a custom row)."""
    return (
        isinstance(value, list)
        and bool(value)
        and all(
            isinstance(button, dict)
            and bool(button)
            and all(
                key in BUTTON_FIELDS  # the keys the form shows; others go as JSON
                and isinstance(text, str)
                and text != ""
                for key, text in button.items()
            )
            for button in value
        )
    )


def _leaf_text(leaf: Leaf, value: Any) -> str:
    if leaf is Leaf.JSON or leaf is Leaf.RAW:
        return _json_text(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        # 50.0 reads as 50; past 2**53 the float's own shortest text is exact.
        return str(int(value)) if value.is_integer() and abs(value) < 1e16 else repr(value)
    return value if isinstance(value, str) else _json_text(value)


def _json_text(value: Any) -> str:
    """Return ``value`` as text a JSON field reads back the same."""
    if isinstance(value, str) and value and _parse_json(value) is _NOT_JSON:
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


_NOT_JSON: Final = object()


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


def _parse_json(text: str) -> Any:
    """Return the JSON value of ``text``, or ``_NOT_JSON`` (NaN and Infinity are not JSON)."""
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except ValueError:
        return _NOT_JSON


def _json_or_text(text: str) -> Any:
    value = _parse_json(text)
    return text if value is _NOT_JSON else value


# ---------------------------------------------------------------- fields -> document

_ABSENT: Final = object()


def fields_to_document(pairs: Iterable[tuple[str, str]]) -> FormResult:
    """Read submitted ``(name, value)`` pairs back into an engagement document."""
    result = FormResult(document={})
    tree: dict[str | int, Any] = {}
    for name, value in pairs:
        if name in PAGE_FIELDS:
            continue
        located = locate(name)
        if located is None:
            result.problems[name] = "unknown field"
            continue
        path, leaf = located
        values = _leaf_slot(tree, path)
        if values and leaf is not Leaf.CHECKBOX:
            result.problems[name] = "given more than once"
            continue
        values.append(value)
    document = _read(LAYOUT, tree, (), result)
    result.document = document if isinstance(document, dict) else {}
    return result


def _leaf_slot(tree: dict[str | int, Any], path: FieldPath) -> list[str]:
    for segment in path[:-1]:
        tree = tree.setdefault(segment, {})
    slot: list[str] = tree.setdefault(path[-1], [])
    return slot


def _read(node: Node, raw: Any, path: FieldPath, result: FormResult) -> Any:
    if isinstance(node, Leaf):
        return _read_leaf(node, raw, path, result)
    subtree: dict[str | int, Any] = raw if isinstance(raw, dict) else {}
    if isinstance(node, ListOf):
        items: list[Any] = []
        for index in sorted(key for key in subtree if isinstance(key, int)):
            if not _blank(node.item, subtree[index]):
                item = _read(node.item, subtree[index], (*path, len(items)), result)
                items.append({} if item is _ABSENT else item)
        return items or _ABSENT
    if isinstance(node, TextMap):
        texts = {key: text[0] for key, text in subtree.items() if isinstance(key, str) and text[0]}
        for key, text in texts.items():
            result.fields[dotted((*path, key))] = text
        return texts or _ABSENT
    layout = node.layout if isinstance(node, Message) else node
    values: dict[str, Any] = {}
    for key, child in layout.items():
        value = _read(child, subtree.get(key), (*path, key), result)
        if value is not _ABSENT:
            values[key] = value
    if isinstance(node, Message):
        _fold_custom(values, path, result)
    return values or _ABSENT


def _blank(node: Node, raw: Any) -> bool:
    if isinstance(raw, list):
        text = "".join(raw)
        return (text.strip() if node in _NUMERIC else text) == ""
    if isinstance(raw, dict):
        return all(_blank(child_of(node, key) or Leaf.TEXT, item) for key, item in raw.items())
    return True


_NUMERIC: Final = frozenset({Leaf.INTEGER, Leaf.NUMBER, Leaf.SECONDS_OR_NULL})


def _fold_custom(message: dict[str, Any], path: FieldPath, result: FormResult) -> None:
    """Move the custom rows of ``message`` in as its own keys."""
    for index, row in enumerate(message.pop("custom", [])):
        key, text = row.get("key", ""), row.get("value", "")
        where = dotted((*path, "custom", index, "key"))
        if key == "":
            result.problems[where] = "a custom field needs a key"
        elif key in message:
            result.problems[where] = f"{key!r} is given twice in this message"
        else:
            message[key] = _json_or_text(text)


def _read_leaf(leaf: Leaf, raw: list[str] | None, path: FieldPath, result: FormResult) -> Any:
    name = dotted(path)
    if leaf is Leaf.CHECKBOX:
        values = raw or []
        unknown = [value for value in values if value not in _CHECKED | _UNCHECKED]
        if unknown:
            result.problems[name] = f"must be a checkbox (on or absent), got {unknown[0]!r}"
        checked = any(value in _CHECKED for value in values)
        result.fields[name] = "true" if checked else "false"
        return checked
    if raw is None:
        return _ABSENT
    text = raw[0]
    result.fields[name] = text
    if leaf is Leaf.RAW:
        return text
    if leaf in _NUMERIC and not text.strip():
        return None if leaf is Leaf.SECONDS_OR_NULL else _ABSENT
    if leaf in _NUMERIC:
        number, problem = _number(text.strip(), integer=leaf is not Leaf.NUMBER)
        if problem is not None:
            result.problems[name] = problem
            return _ABSENT
        return number
    if text == "":
        return _ABSENT
    return _json_or_text(text) if leaf is Leaf.JSON else text


def _number(text: str, *, integer: bool) -> tuple[int | float, str | None]:
    """Return the number ``text`` holds, or why it holds none."""
    kind = "an integer" if integer else "a number"
    if _INTEGER.fullmatch(text) and len(text) <= 40:
        return int(text), None
    if _NUMBER.fullmatch(text):
        value = float(text)
        if not math.isfinite(value):
            return 0, f"must be a finite number, got {text!r}"
        if not integer:
            return value, None
        if value.is_integer():
            return int(value), None
    return 0, f"must be {kind}, got {text!r}"


# ---------------------------------------------------------------- validator problems


def problem_fields(problems: Iterable[FieldProblem]) -> dict[str, list[str]]:
    """Group validator problems by the form field they belong to.

    The field is the longest start of the problem's path that the form layout knows: a
    missing ``trigger.name`` (its path ends with the missing key) goes to ``trigger.name``,
    a problem inside a condition's array value to its ``value`` field, one inside free
    message content to the message (``message``, ``variants.0.message``). The rest of the
    path, if any, starts the text. A name the page does not show (an object path, "" for
    the whole engagement) is for the page to show at the top.
    """
    fields: dict[str, list[str]] = {}
    for problem in problems:
        depth = 0
        node: Node | None = LAYOUT
        for segment in problem.path:
            node = child_of(node, segment) if node is not None else None
            # Custom rows are the form's; a message key named "custom" is content.
            if node is None or (segment == "custom" and isinstance(node, ListOf)):
                break
            depth += 1
        rest = problem.path[depth:]
        text = f"{dotted(rest)}: {problem.message}" if rest else problem.message
        fields.setdefault(dotted(problem.path[:depth]), []).append(text)
    return fields
