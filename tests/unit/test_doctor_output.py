"""How `declic doctor` prints its checks: a line each, a summary, or one JSON document."""

from __future__ import annotations

import json

from engine.doctor.checks import Status, fail, ok, passed, render_json, render_text, skip, warn

CHECKS = [
    ok("topics", "13 present", present=["a"]),
    warn("group", "g: no members"),
    skip("acls", "skipped: the broker has no authorizer"),
]


def test_text_has_one_aligned_line_per_check_then_a_summary() -> None:
    lines = render_text([*CHECKS, fail("partitions", "p.profiles has 2 partitions")]).splitlines()
    assert lines == [
        "ok    topics: 13 present",
        "WARN  group: g: no members",
        "skip  acls: skipped: the broker has no authorizer",
        "FAIL  partitions: p.profiles has 2 partitions",
        "4 checks: 1 ok, 1 warning(s), 1 failed, 1 skipped",
    ]


def test_json_lists_every_check_with_its_details() -> None:
    document = json.loads(render_json(CHECKS))
    assert document["passed"] is True
    assert [c["name"] for c in document["checks"]] == ["topics", "group", "acls"]
    assert document["checks"][0] == {
        "name": "topics",
        "status": "ok",
        "message": "13 present",
        "details": {"present": ["a"]},
    }
    assert {c["status"] for c in document["checks"]} == {"ok", "warn", "skip"}


def test_only_a_failure_fails_unless_strict() -> None:
    assert passed(CHECKS)
    assert not passed(CHECKS, strict=True)
    assert not passed([*CHECKS, fail("topics", "missing")])
    assert json.loads(render_json(CHECKS, strict=True))["passed"] is False
    assert {check.status for check in CHECKS} == {Status.OK, Status.WARN, Status.SKIP}
