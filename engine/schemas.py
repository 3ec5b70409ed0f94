"""Validate records and engagement documents against the wire-contract JSON Schemas.

The files in ``schemas/`` are the single source of truth for the record shapes;
this module only loads them, compiles validators and turns validation errors
into :class:`SchemaViolation` exceptions with readable paths.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, NoReturn
from urllib.parse import unquote

import jsonschema_rs

from engine.core.fields import FieldPath, FieldProblem
from engine.errors import DeclicError, InvalidRecord
from engine.schema_words import KINDS as _KINDS
from engine.schema_words import expected as _expected
from engine.schema_words import known_fields as _known_fields
from engine.schema_words import plain_reason as _plain_reason
from engine.schema_words import preview as _preview

__all__ = [
    "SCHEMA_BASE_URI",
    "SCHEMA_NAMES",
    "RecordValidator",
    "SchemaViolation",
    "apply_engagement_defaults",
    "format_path",
    "load_schema",
    "schema_dir",
    "validator",
]

SCHEMA_BASE_URI: Final = "https://declic.dev/schemas/"
SCHEMA_NAMES: Final[tuple[str, ...]] = (
    "session-event",
    "custom-event",
    "interaction",
    "profile-update",
    "engagement",
    "engagement-record",
    "delivery",
    "impression",
    "conversion",
    "dead-letter",
    "engagement-change",
    "test-send",
    "user-request",
    "user-audit",
)
_SCHEMA_SUFFIX: Final = ".schema.json"
# Keys that can be written as ".key" in a path; anything else is quoted as ["key"].
_PLAIN_KEY: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


class SchemaViolation(InvalidRecord):
    """Raise when a record does not match its JSON Schema."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__("schema_violation", f"{path or '(root)'}: {message}")
        self.path = path
        self.message = message

    def __str__(self) -> str:
        return self.detail

    def __reduce__(self) -> tuple[type[SchemaViolation], tuple[str, str]]:
        # The default reduce would replay args=(detail,) into a two-argument constructor.
        return (type(self), (self.path, self.message))


def schema_dir() -> Path:
    """Return the directory holding the ``*.schema.json`` files."""
    override = os.environ.get("DECLIC_SCHEMA_DIR")
    if override:
        return Path(override)
    package = Path(__file__).resolve().parent
    # A built wheel ships the schemas inside the package (see pyproject force-include);
    # a checkout or editable install reads them from the repository root.
    bundled = package / "_schemas"
    return bundled if bundled.is_dir() else package.parent / "schemas"


@dataclass(frozen=True)
class _Catalog:
    """Hold every schema document, indexed by file name and by $id, and their registry."""

    by_name: dict[str, dict[str, Any]]
    by_id: dict[str, dict[str, Any]]
    registry: jsonschema_rs.Registry


def _refuse_retrieval(uri: str) -> NoReturn:
    # Every $ref must resolve to a file in the schema directory; never go to the network.
    raise LookupError(f"schema {uri} is not in {schema_dir()}")


@functools.cache
def _catalog() -> _Catalog:
    """Load every schema file once; later DECLIC_SCHEMA_DIR changes need cache_clear()."""
    directory = schema_dir()
    by_name: dict[str, dict[str, Any]] = {}
    for file in sorted(directory.glob(f"*{_SCHEMA_SUFFIX}")):
        with file.open("rb") as handle:
            by_name[file.name.removesuffix(_SCHEMA_SUFFIX)] = json.load(handle)
    missing = [name for name in SCHEMA_NAMES if name not in by_name]
    if missing:
        raise DeclicError(f"schemas missing from {directory}: {', '.join(missing)}")
    by_id = {schema["$id"]: schema for schema in by_name.values()}
    registry = jsonschema_rs.Registry(list(by_id.items()), retriever=_refuse_retrieval)
    return _Catalog(by_name=by_name, by_id=by_id, registry=registry)


def load_schema(name: str) -> dict[str, Any]:
    """Return the parsed schema document ``schemas/<name>.schema.json`` (shared; do not mutate)."""
    try:
        return _catalog().by_name[name]
    except KeyError:
        raise ValueError(f"unknown schema {name!r}; known: {', '.join(SCHEMA_NAMES)}") from None


def format_path(parts: Iterable[str | int]) -> str:
    """Render a JSON instance path as ``audience.filters[0].value``."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.fullmatch(part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part, ensure_ascii=False)}]"
    return out


class RecordValidator:
    """Validate instances against one named schema."""

    __slots__ = ("_catalog", "_is_valid", "_validator", "name")

    def __init__(self, name: str) -> None:
        schema = load_schema(name)
        self.name = name
        self._catalog = _catalog()
        self._validator = jsonschema_rs.validator_for(
            schema,
            registry=self._catalog.registry,
            retriever=_refuse_retrieval,
            validate_formats=True,
        )
        # Bound once: check() runs per event and this saves an attribute lookup.
        self._is_valid = self._validator.is_valid

    def check(self, instance: object) -> None:
        """Raise SchemaViolation for the first error if ``instance`` is invalid."""
        try:
            if self._is_valid(instance):
                return
        except ValueError as exc:
            raise SchemaViolation("", f"not a JSON value ({exc})") from None
        violations = self.errors(instance)
        raise (
            violations[0]
            if violations
            else SchemaViolation("", f"does not match schema {self.name}")
        )

    def is_valid(self, instance: object) -> bool:
        """Return whether ``instance`` is valid; non-JSON values are invalid."""
        try:
            return self._is_valid(instance)
        except ValueError:
            return False

    def errors(self, instance: object) -> list[SchemaViolation]:
        """Return every violation in ``instance``; empty when it is valid."""
        try:
            raw = list(self._validator.iter_errors(instance))
        except ValueError as exc:
            return [SchemaViolation("", f"not a JSON value ({exc})")]
        return [violation for error in raw for violation in self._translate(error)]

    def problems(self, instance: object) -> list[FieldProblem]:
        """Return every violation in ``instance`` in plain words, for the person who wrote
        it: the field path as written, what is wrong, each once; empty when it is valid."""
        try:
            raw = list(self._validator.iter_errors(instance))
        except ValueError:
            return [FieldProblem((), "holds a value that is not JSON")]
        problems: dict[FieldProblem, None] = {}
        for error in raw:
            problems.update(dict.fromkeys(self._plain(error)))
        return list(problems)

    def _plain(self, error: jsonschema_rs.ValidationError) -> list[FieldProblem]:
        location: FieldPath = tuple(error.instance_path)
        kind = error.kind
        node = self._keyword_owner(error.absolute_keyword_location)
        custom = node.get("errorMessage") if node is not None else None
        if isinstance(kind, _KINDS.Required):
            missing = "required field missing"
            if isinstance(custom, str):
                missing = f"{missing} ({custom})"
            return [FieldProblem((*location, kind.property), missing)]
        if isinstance(kind, _KINDS.AdditionalProperties):
            known = list(node.get("properties", {})) if node is not None else []
            return [
                FieldProblem(
                    (*location, name), f"unknown field {name!r}{_known_fields(name, known)}"
                )
                for name in kind.unexpected
            ]
        got = f", got {_preview(error.instance)}"
        if isinstance(custom, str):
            return [FieldProblem(location, custom + got)]
        if isinstance(kind, _KINDS.OneOfNotValid | _KINDS.AnyOf):
            return self._best_branch(location, kind.context, got)
        return [FieldProblem(location, _plain_reason(kind, error.instance))]

    def _best_branch(
        self,
        location: FieldPath,
        branches: list[list[jsonschema_rs.ValidationError]],
        got: str,
    ) -> list[FieldProblem]:
        """Explain a value no alternative accepts: by the alternative of its type, if any,
        else by the types accepted."""

        def type_only(errors: list[jsonschema_rs.ValidationError]) -> bool:
            return all(
                isinstance(error.kind, _KINDS.Type) and tuple(error.instance_path) == location
                for error in errors
            )

        of_its_type = [errors for errors in branches if errors and not type_only(errors)]
        if of_its_type:
            closest = min(of_its_type, key=len)
            return [problem for error in closest for problem in self._plain(error)]
        types = [
            name
            for errors in branches
            for error in errors
            if isinstance(error.kind, _KINDS.Type)
            for name in error.kind.types
        ]
        return [FieldProblem(location, _expected(types) + got)]

    def _translate(self, error: jsonschema_rs.ValidationError) -> list[SchemaViolation]:
        location = list(error.instance_path)
        kind = error.kind
        node = self._keyword_owner(error.absolute_keyword_location)
        custom = node.get("errorMessage") if node is not None else None
        if isinstance(kind, jsonschema_rs.ValidationErrorKind.Required):
            # Point at the missing field itself so the path names it.
            text = f"required property '{kind.property}' is missing"
            if isinstance(custom, str):
                text = f"{text}: {custom}"
            return [SchemaViolation(format_path([*location, kind.property]), text)]
        if isinstance(kind, jsonschema_rs.ValidationErrorKind.AdditionalProperties):
            known = node.get("properties", {}) if node is not None else {}
            allowed = f" (allowed: {', '.join(known)})" if known else ""
            return [
                SchemaViolation(
                    format_path([*location, name]), f"unknown property '{name}'{allowed}"
                )
                for name in kind.unexpected
            ]
        if isinstance(custom, str):
            return [
                SchemaViolation(format_path(location), f"{custom}, got {_preview(error.instance)}")
            ]
        if isinstance(kind, jsonschema_rs.ValidationErrorKind.Enum):
            # The library abbreviates long option lists; spell them all out to help with typos.
            options = ", ".join(_preview(option) for option in kind.options)
            return [
                SchemaViolation(
                    format_path(location), f"{_preview(error.instance)} is not one of {options}"
                )
            ]
        return [SchemaViolation(format_path(location), error.message)]

    def _keyword_owner(self, location: str | None) -> dict[str, Any] | None:
        """Return the schema object holding the failing keyword (it may carry an errorMessage)."""
        if not location or "#" not in location:
            return None
        uri, _, fragment = location.partition("#")
        node: Any = self._catalog.by_id.get(uri)
        tokens = [
            unquote(token).replace("~1", "/").replace("~0", "~")
            for token in fragment.split("/")[1:]
        ]
        for token in tokens[:-1]:
            if isinstance(node, dict):
                node = node.get(token)
            elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
                node = node[int(token)]
            else:
                return None
        return node if isinstance(node, dict) else None


@functools.cache
def validator(name: str) -> RecordValidator:
    """Return the shared validator for schema ``name`` (e.g. "custom-event")."""
    return RecordValidator(name)


def apply_engagement_defaults(document: Mapping[str, Any]) -> dict[str, Any]:
    """Return a deep copy of ``document`` with the schema's documented defaults filled in."""
    result = copy.deepcopy(dict(document))
    _fill_defaults(result, load_schema("engagement"))
    return result


def _fill_defaults(target: dict[str, Any], schema: Mapping[str, Any]) -> None:
    # Defaults come from the schema's `default` keywords so they cannot drift from the contract.
    properties = schema.get("properties", {})
    for key, subschema in properties.items():
        if not isinstance(subschema, dict):
            continue
        if key not in target and "default" in subschema:
            target[key] = copy.deepcopy(subschema["default"])
        child = target.get(key)
        if isinstance(child, dict) and "properties" in subschema:
            _fill_defaults(child, subschema)
