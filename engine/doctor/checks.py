"""A check's result, and the two ways of printing a doctor's report: text and JSON."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson


class Status(StrEnum):
    """How a check came out. Only FAIL makes `declic doctor` exit 1 (WARN too with
    --strict): a warning is worth reading, not worth paging anyone."""

    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"  # not checked: what it needs is missing (said why), or it does not apply


@dataclass(frozen=True, slots=True)
class Check:
    """One check: its name, verdict, one line with the figures, and the figures."""

    name: str
    status: Status
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status.value,
            "message": self.message,
            "details": self.details,
        }


def ok(name: str, message: str, **details: Any) -> Check:
    return Check(name, Status.OK, message, details)


def warn(name: str, message: str, **details: Any) -> Check:
    return Check(name, Status.WARN, message, details)


def fail(name: str, message: str, **details: Any) -> Check:
    return Check(name, Status.FAIL, message, details)


def skip(name: str, message: str, **details: Any) -> Check:
    return Check(name, Status.SKIP, message, details)


_LABELS = {Status.OK: "ok", Status.WARN: "WARN", Status.FAIL: "FAIL", Status.SKIP: "skip"}


def passed(checks: Sequence[Check], strict: bool = False) -> bool:
    """Return whether the deployment passes: no failure (and no warning, if strict)."""
    failing = {Status.FAIL, Status.WARN} if strict else {Status.FAIL}
    return not any(check.status in failing for check in checks)


def summary(checks: Sequence[Check]) -> str:
    """Return the closing line: how many checks came out how."""
    counts = {status: sum(c.status is status for c in checks) for status in Status}
    parts = [f"{counts[s]} {word}" for s, word in _SUMMARY_WORDS if counts[s]]
    return f"{len(checks)} checks: " + ", ".join(parts)


_SUMMARY_WORDS = (
    (Status.OK, "ok"),
    (Status.WARN, "warning(s)"),
    (Status.FAIL, "failed"),
    (Status.SKIP, "skipped"),
)


def render_text(checks: Sequence[Check]) -> str:
    """Return one line per check (`ok    topics: ...`), then the summary."""
    lines = [f"{_LABELS[check.status]:<5} {check.name}: {check.message}" for check in checks]
    return "\n".join([*lines, summary(checks)])


def render_json(checks: Sequence[Check], strict: bool = False) -> str:
    """Return the report as one JSON document, for machines."""
    document = {
        "passed": passed(checks, strict),
        "summary": summary(checks),
        "checks": [check.to_json_dict() for check in checks],
    }
    return orjson.dumps(document).decode()
