"""Engagement files: YAML or JSON, one engagement, a list or several documents, read with
the line of every field so that each problem can be named where the user wrote it."""

from __future__ import annotations

import json
import re
from bisect import bisect_left
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, NoReturn

import yaml

from engine.core.fields import FieldPath
from engine.errors import DeclicError

__all__ = [
    "EngagementFileError",
    "EngagementSource",
    "load_engagement_documents",
    "load_engagement_sources",
]


class EngagementFileError(DeclicError):
    """Raise when an engagement file cannot be read or parsed."""

    def __init__(self, source: str, message: str, line: int | None = None) -> None:
        location = source if line is None else f"{source}:{line}"
        super().__init__(f"{location}: {message}")
        self.source = source
        self.line = line
        self.message = message


_STR_TAG: Final = "tag:yaml.org,2002:str"
_MERGE_TAG: Final = "tag:yaml.org,2002:merge"
# Values one YAML file may hold once its aliases are expanded: far more than a record
# Kafka takes, far fewer than "billion laughs" aliases expand to.
MAX_YAML_VALUES: Final = 1_000_000
# Digits of the longest integer read: far past 64 bits, short of Python's own limit.
_MAX_INTEGER_DIGITS: Final = 4000


class _EngagementLoader(yaml.SafeLoader):
    """Load YAML with YAML 1.2 scalars: only true/false are booleans, dates stay strings."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        # PyYAML keeps the last of duplicate keys silently; in an engagement that hides a mistake.
        seen: set[str] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag == _MERGE_TAG:
                continue
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != _STR_TAG:
                # JSON keys are strings: 200 or null as a key could not be published.
                found = (
                    f"found key {key_node.value!r}, which is not a string (quote it)"
                    if isinstance(key_node, yaml.ScalarNode)
                    else "found a list or an object as a key, where a string is expected"
                )
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark, found, key_node.start_mark
                )
            if key_node.value in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key_node.value!r}",
                    key_node.start_mark,
                )
            seen.add(key_node.value)
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        if len(node.value) > _MAX_INTEGER_DIGITS:
            raise yaml.constructor.ConstructorError(
                None, None, f"found an integer of {len(node.value)} characters", node.start_mark
            )
        value: int = super().construct_yaml_int(node)
        return value


_EngagementLoader.add_constructor("tag:yaml.org,2002:int", _EngagementLoader.construct_yaml_int)
# YAML 1.1 turns `NO` (Norway) or `off` into booleans and unquoted dates into datetime
# objects; neither survives JSON Schema validation, so resolve them as plain strings.
_EngagementLoader.yaml_implicit_resolvers = {
    first: [
        (tag, regexp)
        for tag, regexp in resolvers
        if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:timestamp")
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_EngagementLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


@dataclass(frozen=True)
class EngagementSource:
    """One engagement as read from a file: where it starts, and the line of each field."""

    file: str
    number: int  # from 1, in file order
    line: int
    document: dict[str, Any]
    lines: Mapping[FieldPath, int] = field(default_factory=dict, repr=False)

    @property
    def label(self) -> str:
        """Return ``file.yaml#2``."""
        return f"{self.file}#{self.number}"

    def line_of(self, path: Sequence[str | int]) -> int:
        """Return the line of the field at ``path``, else of its closest enclosing field."""
        prefix = tuple(path)
        while prefix:
            line = self.lines.get(prefix)
            if line is not None:
                return line
            prefix = prefix[:-1]
        return self.line


@dataclass(frozen=True)
class _Located:
    """A document parsed from a file, with the line of the document and of each field."""

    value: object
    line: int
    lines: dict[FieldPath, int]


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


class _IntegerTooLong(ValueError):
    def __init__(self, digits: int) -> None:
        super().__init__(f"found an integer of {digits} characters")
        self.digits = digits


def _json_int(text: str) -> int:
    if len(text) > _MAX_INTEGER_DIGITS:
        raise _IntegerTooLong(len(text))
    return int(text)


class _Members(list[tuple[str, Any]]):
    """An object's members in file order, duplicates kept (json.loads' pairs hook)."""


_JSON_TOKEN: Final = re.compile(r'["{}\[\]:,]')
_JSON_STRING_REST: Final = re.compile(r'[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_JSON_SPACE: Final = re.compile(r"[ \t\n\r]*")


def _after_space(text: str, index: int) -> int:
    match = _JSON_SPACE.match(text, index)
    return index if match is None else match.end()


def _json_value_starts(text: str) -> list[int]:
    """Return where each value of ``text``, valid JSON, starts: in document order, a
    container before what it holds (the order of a depth-first walk of the parsed value)."""
    starts = [_after_space(text, 0)]
    containers: list[str] = []
    index = starts[0]
    while (match := _JSON_TOKEN.search(text, index)) is not None:
        char, index = match.group(), match.end()
        if char == '"':
            rest = _JSON_STRING_REST.match(text, index)
            index = rest.end() if rest is not None else len(text)
        elif char in "{[":
            containers.append(char)
            following = _after_space(text, index)
            if char == "[" and text[following : following + 1] != "]":
                starts.append(following)
        elif char in "}]":
            containers.pop()
        elif char == ":" or (containers and containers[-1] == "["):
            starts.append(_after_space(text, index))
    return starts


def _line_finder(text: str) -> Callable[[int], int]:
    newlines = [match.start() for match in re.finditer("\n", text)]
    return lambda index: bisect_left(newlines, index) + 1


class _JsonLines:
    """Turn parsed members into dicts, refusing duplicate keys, and note each field's line."""

    def __init__(self, text: str, source: str) -> None:
        self.source = source
        self.line_at = _line_finder(text)
        self.starts: Iterator[int] = iter(_json_value_starts(text))
        self.root_line = self.line_at(next(self.starts))
        self.lines: dict[FieldPath, int] = {}

    def walk(self, value: object, path: FieldPath) -> object:
        """Return ``value`` with its objects as dicts (``starts`` follows the same walk)."""
        if isinstance(value, _Members):
            result: dict[str, object] = {}
            for key, item in value:
                line = self.line_at(next(self.starts))
                if key in result:
                    problem = f"invalid JSON: duplicate key {key!r}"
                    raise EngagementFileError(self.source, problem, line)
                self.lines[(*path, key)] = line
                result[key] = self.walk(item, (*path, key))
            return result
        if isinstance(value, list):
            items: list[object] = []
            for index, item in enumerate(value):
                self.lines[(*path, index)] = self.line_at(next(self.starts))
                items.append(self.walk(item, (*path, index)))
            return items
        return value


def _parse_json(text: str, source: str) -> list[_Located]:
    try:
        parsed = json.loads(
            text, parse_constant=_reject_constant, parse_int=_json_int, object_pairs_hook=_Members
        )
        walk = _JsonLines(text, source)
        value = walk.walk(parsed, ())
    except json.JSONDecodeError as exc:
        raise EngagementFileError(
            source, f"invalid JSON: {exc.msg} (column {exc.colno})", exc.lineno
        ) from None
    except _IntegerTooLong as exc:
        digits = re.search(rf"\d{{{exc.digits}}}", text)
        line = _line_finder(text)(digits.start()) if digits is not None else None
        raise EngagementFileError(source, f"invalid JSON: {exc}", line) from None
    except RecursionError:
        raise EngagementFileError(source, "invalid JSON: nested too deeply") from None
    except ValueError as exc:
        raise EngagementFileError(source, f"invalid JSON: {exc}") from None
    return [_Located(value, walk.root_line, walk.lines)]


class _YamlLines:
    """Note the line of each field of a constructed YAML document, refusing aliases that
    contain themselves or expand past ``MAX_YAML_VALUES`` values."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.lines: dict[FieldPath, int] = {}
        self._inside: set[int] = set()
        self._visited = 0

    def walk(self, node: yaml.Node, value: object, path: FieldPath) -> None:
        line = node.start_mark.line + 1
        self._visited += 1
        if self._visited > MAX_YAML_VALUES:
            raise EngagementFileError(
                self.source,
                f"invalid YAML: its aliases expand to more than {MAX_YAML_VALUES} values",
                line,
            )
        if id(node) in self._inside:
            raise EngagementFileError(
                self.source, "invalid YAML: an alias refers to a value that contains it", line
            )
        if isinstance(node, yaml.MappingNode) and isinstance(value, dict):
            self._inside.add(id(node))
            # Merged keys come first, so a key written here overrides their lines too.
            for key_node, value_node in node.value:
                key = key_node.value
                if isinstance(key, str) and key in value:
                    self.lines[(*path, key)] = key_node.start_mark.line + 1
                    self.walk(value_node, value[key], (*path, key))
            self._inside.discard(id(node))
        elif isinstance(node, yaml.SequenceNode) and isinstance(value, list):
            self._inside.add(id(node))
            for index, (item_node, item) in enumerate(zip(node.value, value, strict=False)):
                self.lines[(*path, index)] = item_node.start_mark.line + 1
                self.walk(item_node, item, (*path, index))
            self._inside.discard(id(node))


def _parse_yaml(text: str, source: str) -> list[_Located]:
    loader = _EngagementLoader(text)
    documents: list[_Located] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            value = loader.construct_document(node)
            walk = _YamlLines(source)
            walk.walk(node, value, ())
            documents.append(_Located(value, node.start_mark.line + 1, walk.lines))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = ": ".join(part for part in (exc.context, exc.problem) if part) or "parse error"
        if mark is None:
            raise EngagementFileError(source, f"invalid YAML: {problem}") from None
        raise EngagementFileError(
            source, f"invalid YAML: {problem} (column {mark.column + 1})", mark.line + 1
        ) from None
    except yaml.YAMLError as exc:
        raise EngagementFileError(source, f"invalid YAML: {exc}") from None
    except RecursionError:
        raise EngagementFileError(source, "invalid YAML: nested too deeply") from None
    finally:
        loader.dispose()
    return documents


def load_engagement_sources(path: Path) -> list[EngagementSource]:
    """Read the engagements of a YAML or JSON file, with the line of each field.

    A file holds one engagement object, a list of them or, in YAML, several
    ``---``-separated documents (each an object or a list). Engagements are numbered
    from 1 in file order. Duplicate keys, in YAML as in JSON, are refused. Validation is
    left to the caller.
    """
    source = str(path)
    suffix = path.suffix.lower()
    if suffix not in (".yaml", ".yml", ".json"):
        raise EngagementFileError(source, "unsupported file type; expected .yaml, .yml or .json")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise EngagementFileError(source, f"cannot read file: {exc}") from None
    documents = _parse_json(text, source) if suffix == ".json" else _parse_yaml(text, source)

    result: list[EngagementSource] = []
    for document in documents:
        if document.value is None:  # an empty YAML document, e.g. after a trailing `---`
            continue
        items: list[tuple[object, int, dict[FieldPath, int]]] = []
        if isinstance(document.value, list):
            by_item: dict[int, dict[FieldPath, int]] = {}
            for field_path, line in document.lines.items():
                if isinstance(field_path[0], int):
                    by_item.setdefault(field_path[0], {})[field_path[1:]] = line
            for index, item in enumerate(document.value):
                lines = by_item.get(index, {})
                items.append((item, lines.pop((), document.line), lines))
        else:
            items.append((document.value, document.line, document.lines))
        for item, line, lines in items:
            if not isinstance(item, dict):
                raise EngagementFileError(
                    source, f"expected an engagement object, got {type(item).__name__}", line
                )
            result.append(EngagementSource(source, len(result) + 1, line, item, lines))
    if not result:
        raise EngagementFileError(source, "no engagement found")
    return result


def load_engagement_documents(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """Read engagements from a YAML or JSON file as ``("file.yaml#2", document)`` pairs.

    See ``load_engagement_sources``, which also tells the line of each field.
    """
    return [(found.label, found.document) for found in load_engagement_sources(path)]
