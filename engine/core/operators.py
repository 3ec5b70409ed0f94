"""Compile filter specs (``{"attribute"|"property": key, "op": op, "value": v}``) to predicates.

Semantics, applied to the value ``x`` found under ``key`` in the mapping being tested:

* Missing: a key that is absent or whose value is ``null`` is missing. On a missing key
  ``exists`` is false, ``not_exists`` is true, ``ne`` and ``not_in`` are true, every other
  operator is false.
* Types: ``bool`` is not a number; ``int`` and ``float`` compare as numbers, so ``1 eq 1.0``
  holds. Values of different types are never equal (``"1" eq 1`` is false, hence
  ``"1" ne 1`` is true). Arrays and objects are equal when their items are, by these rules.
* ``eq``, ``ne``: equality as above.
* ``gt``, ``gte``, ``lt``, ``lte``: number against number, or string against string
  (code-point order). Any other pairing is false, never an error.
* ``in``, ``not_in``: ``value`` is an array; ``x`` equals (does not equal) one of its items.
* ``exists``, ``not_exists``: ``value`` is ignored.
* ``contains``: substring when ``x`` and ``value`` are strings; membership (by equality
  above) when ``x`` is an array; false otherwise.

A spec that cannot be compiled (unknown op, ``gt`` against an array, ``in`` without an
array...) raises ``InvalidRecord("invalid_engagement", ...)`` at compile time, so evaluation
itself never raises. So does a list past a bound: more than ``MAX_FILTERS`` filters, or an
``in``/``not_in`` list of more than ``MAX_IN_VALUES`` values (both stated again in
``schemas/engagement.schema.json``; a unit test holds them equal).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final, NamedTuple

from engine.errors import InvalidRecord

Predicate = Callable[[Mapping[str, object]], bool]

# Filters in one list (a trigger's where, an audience, a cancel_on or conversion where).
MAX_FILTERS: Final = 100
# Values of one in / not_in list.
MAX_IN_VALUES: Final = 10_000

OPERATORS: Final = frozenset(
    {"eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "exists", "not_exists", "contains"}
)

_ORDERINGS: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}


def _is_number(value: object) -> bool:
    kind = value.__class__
    if kind is int or kind is float:  # exact-type fast path: JSON decoders build these
        return True
    return isinstance(value, int | float) and not isinstance(value, bool)


def json_equal(left: object, right: object) -> bool:
    """Return whether two JSON values are equal under the documented rules."""
    if isinstance(left, bool) or isinstance(right, bool):
        return left is right
    if _is_number(left):
        return _is_number(right) and left == right
    if isinstance(left, str):
        return isinstance(right, str) and left == right
    if isinstance(left, list | tuple):
        return (
            isinstance(right, list | tuple)
            and len(left) == len(right)
            and all(json_equal(a, b) for a, b in zip(left, right, strict=True))
        )
    if isinstance(left, Mapping):
        return (
            isinstance(right, Mapping)
            and left.keys() == right.keys()
            and all(json_equal(item, right[key]) for key, item in left.items())
        )
    return left is None and right is None


def _equals_to(target: object) -> Callable[[object], bool]:
    """Return a one-argument equality test specialised on ``target``'s type."""
    if isinstance(target, bool):
        return lambda value: value is target
    if _is_number(target):
        return lambda value: _is_number(value) and value == target
    if isinstance(target, str):
        return lambda value: isinstance(value, str) and value == target
    return lambda value: json_equal(value, target)


def _member_of(items: Sequence[object]) -> Callable[[object], bool]:
    """Return a membership test against ``items`` using hashed lookups where exact."""
    strings = frozenset(item for item in items if isinstance(item, str))
    # hash(1) == hash(1.0) gives number equality for free; bools are kept apart because
    # hash(True) == hash(1) would make True a member of [1].
    numbers = frozenset(item for item in items if _is_number(item))
    bools = tuple(item for item in items if isinstance(item, bool))
    others = tuple(item for item in items if isinstance(item, list | dict))

    def member(value: object) -> bool:
        if isinstance(value, str):
            return value in strings
        if isinstance(value, bool):
            return any(value is item for item in bools)
        if _is_number(value):
            return value in numbers
        return any(json_equal(value, item) for item in others)

    return member


def _ordering(op: str, target: object, where: str) -> Callable[[object], bool]:
    compare = _ORDERINGS[op]
    if _is_number(target):
        return lambda value: _is_number(value) and compare(value, target)
    if isinstance(target, str):
        return lambda value: isinstance(value, str) and compare(value, target)
    raise InvalidRecord("invalid_engagement", f"{where}: {op} needs a number or string value")


def _contains(target: object) -> Callable[[object], bool]:
    equals = _equals_to(target)

    def contains(value: object) -> bool:
        if isinstance(value, str):
            return isinstance(target, str) and target in value
        if isinstance(value, list):
            return any(equals(item) for item in value)
        return False

    return contains


def _present_test(op: str, target: object, where: str) -> Callable[[object], bool]:
    """Return the test applied to a present (non-null) value for ``op``."""
    if op == "eq":
        return _equals_to(target)
    if op == "ne":
        equals = _equals_to(target)
        return lambda value: not equals(value)
    if op in _ORDERINGS:
        return _ordering(op, target, where)
    if op in ("in", "not_in"):
        if not isinstance(target, list):
            raise InvalidRecord("invalid_engagement", f"{where}: {op} needs an array value")
        member = _member_of(target)
        return member if op == "in" else lambda value: not member(value)
    if op == "contains":
        return _contains(target)
    present_result = op == "exists"  # exists / not_exists on a present value
    return lambda value: present_result


def _one_step_predicate(op: str, key: str, target: object) -> Predicate | None:
    """Return a single-call predicate for the most common specs, or None.

    Same semantics as the general path, minus one call level per evaluation: these run for
    every candidate of every event.
    """
    if op == "exists":
        return lambda values: values.get(key) is not None
    if op == "not_exists":
        return lambda values: values.get(key) is None
    if isinstance(target, str):
        # A missing (None) or non-string value never equals a string.
        if op == "eq":
            return lambda values: values.get(key) == target
        if op == "ne":
            return lambda values: values.get(key) != target
    if (
        op in ("in", "not_in")
        and isinstance(target, list)
        and target
        and all(isinstance(item, str) for item in target)
    ):
        strings = frozenset(target)

        def in_strings(values: Mapping[str, object]) -> bool:
            value = values.get(key)
            return isinstance(value, str) and value in strings

        if op == "in":
            return in_strings
        return lambda values: not in_strings(values)
    if op in _ORDERINGS and _is_number(target):
        compare = _ORDERINGS[op]

        def ordered(values: Mapping[str, object]) -> bool:
            value = values.get(key)
            kind = value.__class__
            if kind is int or kind is float:
                return compare(value, target)
            return _is_number(value) and compare(value, target)  # None and bool are not

        return ordered
    return None


class Atom(NamedTuple):
    """One compiled filter: the key it reads, what it tests, and its canonical spec."""

    key: str
    # Equal for specs that always agree (same key, op and value): evaluated once per event.
    identity: bytes
    test: Predicate


def compile_atom(spec: Mapping[str, object], key_field: str) -> Atom:
    """Compile one filter spec whose key is read from ``spec[key_field]``."""
    key = spec.get(key_field)
    op = spec.get("op")
    where = f"filter {key_field}={key!r} op={op!r}"
    if not isinstance(key, str) or not key:
        raise InvalidRecord("invalid_engagement", f"{where}: missing {key_field} name")
    if not isinstance(op, str) or op not in OPERATORS:
        raise InvalidRecord("invalid_engagement", f"{where}: unknown operator")
    target = spec.get("value")
    if target is None and op not in ("exists", "not_exists"):
        raise InvalidRecord("invalid_engagement", f"{where}: value is required")
    if isinstance(target, list) and len(target) > MAX_IN_VALUES:
        raise InvalidRecord(
            "invalid_engagement",
            f"{where}: {len(target)} values, more than the {MAX_IN_VALUES} a list may hold",
        )
    # repr, not JSON: it never fails, and it tells 1, 1.0 and True apart as filters do.
    identity = repr((key, op, None if op in ("exists", "not_exists") else target)).encode()
    fast = _one_step_predicate(op, key, target)
    if fast is not None:
        return Atom(key, identity, fast)
    test = _present_test(op, target, where)
    when_missing = op in ("not_exists", "ne", "not_in")

    def predicate(values: Mapping[str, object]) -> bool:
        value = values.get(key)
        if value is None:
            return when_missing
        return test(value)

    return Atom(key, identity, predicate)


def compile_filter(spec: Mapping[str, object], key_field: str) -> Predicate:
    """Compile one filter spec whose key is read from ``spec[key_field]``."""
    return compile_atom(spec, key_field).test


def compile_atoms(specs: Iterable[object], key_field: str) -> tuple[Atom, ...]:
    """Compile a filter list into its atoms, in order."""
    specs = list(specs)
    check_filter_count(len(specs), f"{key_field} filters")
    atoms: list[Atom] = []
    for spec in specs:
        if not isinstance(spec, Mapping):
            raise InvalidRecord("invalid_engagement", f"{key_field} filter is not an object")
        atoms.append(compile_atom(spec, key_field))
    return tuple(atoms)


def check_filter_count(count: int, what: str) -> None:
    """Raise ``InvalidRecord`` when a list of ``count`` filters is over ``MAX_FILTERS``."""
    if count > MAX_FILTERS:
        raise InvalidRecord(
            "invalid_engagement", f"{what}: {count} filters, more than the {MAX_FILTERS} allowed"
        )


def always_true(values: Mapping[str, object]) -> bool:
    """Match everything: the predicate of an empty filter list."""
    return True


def compile_filters(specs: Iterable[object], key_field: str) -> Predicate:
    """Compile a filter list into one predicate that holds when every filter holds."""
    return conjunction(compile_atoms(specs, key_field))


def conjunction(atoms: Sequence[Atom]) -> Predicate:
    """Return a predicate that holds when every atom's test holds (``always_true`` if none)."""
    predicates = [atom.test for atom in atoms]
    if not predicates:
        return always_true
    if len(predicates) == 1:
        return predicates[0]
    chain = tuple(predicates)

    def all_hold(values: Mapping[str, object]) -> bool:
        # A plain loop: all() over a generator allocates on every call of the hot path.
        for predicate in chain:  # noqa: SIM110
            if not predicate(values):
                return False
        return True

    return all_hold
