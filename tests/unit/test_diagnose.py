"""The impressions diagnosis: golden cases, then wording, rendering and ranking.

Golden cases (tests/golden/diagnose/*.json) give ``stats``, ``record`` (null: no such
engagement), ``history``, optional ``rivals``, ``now`` and ``since`` (the ``--since``
option), and ``expected``:

* ``causes``: the verdicts' causes, in rank order, exactly;
* ``explains``: cause -> impressions explained (first verdict of that cause);
* ``messages_contain``: cause -> text its message must contain;
* ``json``: dotted path into ``Report.to_json_dict()`` (list items by index) -> value;
* ``suggest_test_send`` and ``shortfall``.

Times are RFC 3339 in the files: ``now``, ``since``, ``stats.since_ms``,
``stats.segment.computed_at_ms`` and the ``stats.trigger_hours`` keys (the hour's start)
become epoch milliseconds (epoch hours for the keys) before the call. Records get the
schema defaults and are checked against the ``engagement-record`` and
``engagement-change`` schemas first.
"""

from __future__ import annotations

import ast
import copy
import json
from pathlib import Path
from typing import Any

import pytest

from engine.core.timestamps import parse_timestamp
from engine.diagnose import Report, build_report, render_ranking, render_text, shortfall
from engine.diagnose.wording import (
    duration_text,
    elapsed_text,
    percent_text,
    rate_text,
    value_text,
)
from engine.schemas import apply_engagement_defaults, validator

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "diagnose"
CASES = sorted(GOLDEN.glob("*.json"))
PACKAGE = Path(__file__).resolve().parents[2] / "engine" / "diagnose"
HOUR_MS = 3_600_000
NOW = parse_timestamp("2026-11-24T12:00:00Z")
WEEK_AGO = parse_timestamp("2026-11-17T12:00:00Z")


def _ms(value: Any) -> Any:
    return parse_timestamp(value) if isinstance(value, str) else value


def _stats(raw: dict[str, Any]) -> dict[str, Any]:
    stats = copy.deepcopy(raw)
    stats["since_ms"] = _ms(stats.get("since_ms"))
    if isinstance(stats.get("segment"), dict):
        stats["segment"]["computed_at_ms"] = _ms(stats["segment"].get("computed_at_ms"))
    stats["trigger_hours"] = {
        key if key.isdigit() else str(parse_timestamp(key) // HOUR_MS): count
        for key, count in stats.get("trigger_hours", {}).items()
    }
    return stats


def _record(raw: dict[str, Any] | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    record = {**raw, "engagement": apply_engagement_defaults(raw["engagement"])}
    validator("engagement-record").check(record)
    return record


def _at(data: Any, path: str) -> Any:
    for part in path.split("."):
        data = data[int(part)] if isinstance(data, list) else data[part]
    return data


def _run(case: dict[str, Any]) -> Report:
    for change in case["history"]:
        validator("engagement-change").check(change)
    return build_report(
        _stats(case["stats"]),
        _record(case["record"]),
        case["history"],
        parse_timestamp(case["now"]),
        _ms(case.get("since")),
        rivals=[_record(item) for item in case.get("rivals", [])],
    )


@pytest.mark.parametrize("path", CASES, ids=[path.stem for path in CASES])
def test_golden(path: Path) -> None:
    case = json.loads(path.read_text(encoding="utf-8"))
    expected = case["expected"]
    report = _run(case)
    verdicts = report.to_json_dict()["verdicts"]
    assert [item["cause"] for item in verdicts] == expected["causes"], verdicts
    first = {}
    for item in verdicts:
        first.setdefault(item["cause"], item)
    for cause, explains in expected.get("explains", {}).items():
        assert first[cause]["explains"] == explains, first[cause]
    for cause, text in expected.get("messages_contain", {}).items():
        assert text in first[cause]["message"]
    document = report.to_json_dict()
    for key, value in expected.get("json", {}).items():
        assert _at(document, key) == value, key
    assert report.suggest_test_send is expected["suggest_test_send"]
    if "shortfall" in expected:
        assert shortfall(report) == expected["shortfall"]
    json.dumps(document)  # plain JSON all the way down
    assert all(set(item) == {"cause", "explains", "message"} for item in verdicts)


def test_golden_cover_the_classic_situations() -> None:
    firsts = {
        path.stem: json.loads(path.read_text(encoding="utf-8"))["expected"]["causes"][0]
        for path in CASES
    }
    for cause in (
        "audience",
        "outside_schedule",
        "changed_after_launch",
        "not_logging_impressions",
        "rare_trigger",
        "not_found",
        "inactive",
        "not_yet_judged",
        "no_cause_found",
    ):
        assert cause in firsts.values(), cause


# --- building blocks -------------------------------------------------------------------


def _engagement(**fields: Any) -> dict[str, Any]:
    document = {
        "id": "spring-sale",
        "name": "Spring sale",
        "status": "active",
        "trigger": {"event": "session_start"},
        "message": {"title": "Hi"},
        **fields,
    }
    return {
        "engagement": apply_engagement_defaults(document),
        "version": 2,
        "updated_at": "2026-11-21T10:00:00.000Z",
        "author": "alice",
    }


def _change(version: int, action: str, at: str, *changes: tuple[str, Any, Any]) -> dict[str, Any]:
    return {
        "engagement_id": "spring-sale",
        "version": version,
        "action": action,
        "author": "alice" if version % 2 else "bob",
        "at": at,
        "changes": [{"field": field, "old": old, "new": new} for field, old, new in changes],
    }


def _busy_stats(**outcomes: int) -> dict[str, Any]:
    """Return counters with plenty of trigger traffic, delivered 100 and seen 80."""
    return {
        "engagement_id": "spring-sale",
        "since_ms": WEEK_AGO,
        "outcomes": {"delivered": 100, **outcomes},
        "variants": {"default": {"deliveries": 100, "impressions": 80, "clicks": 9}},
        "trigger_hours": {str(NOW // HOUR_MS - 2): 1_000},
        "unseen_deliveries": {"older_than_seconds": 3600, "count": 3},
    }


def _causes(report: Report) -> list[str]:
    return [verdict.cause for verdict in report.verdicts]


def test_draft_launched_by_resume_lists_only_later_changes() -> None:
    history = [
        _change(1, "create", "2026-11-01T09:00:00Z", ("status", None, "draft")),
        _change(2, "update", "2026-11-02T09:00:00Z", ("audience.percent", 100, 50)),
        _change(3, "resume", "2026-11-03T09:00:00Z", ("status", "draft", "active")),
        _change(4, "update", "2026-11-04T09:00:00Z", ("priority", 0, 3)),
    ]
    report = build_report(_busy_stats(), _engagement(priority=3), history, NOW)
    assert report.launched is not None and report.launched.version == 3
    assert [entry.version for entry in report.changes] == [4]
    # Raising the priority widens the reach: listed, but blamed for nothing.
    assert "changed_after_launch" not in _causes(report)


def test_only_a_real_change_of_hash_version_is_a_reshuffle() -> None:
    launch = _change(1, "create", "2026-11-01T09:00:00Z", ("status", None, "active"))
    # Writing down the version it already had (absent means 1) draws nobody again.
    same = _change(2, "update", "2026-11-02T09:00:00Z", ("audience.hash_version", None, 1))
    report = build_report(_busy_stats(), _engagement(), [launch, same], NOW)
    assert "users_reshuffled" not in _causes(report)
    back = _change(3, "update", "2026-11-03T10:15:00Z", ("audience.hash_version", 2, 1))
    report = build_report(_busy_stats(), _engagement(), [launch, same, back], NOW)
    [verdict] = [item for item in report.verdicts if item.cause == "users_reshuffled"]
    assert verdict.explains == 0
    assert verdict.message.startswith(
        "users reshuffled on 2026-11-03 10:15 UTC by alice (audience.hash_version 2 → 1)"
    )
    # Before the launch nobody was drawn yet: nothing to name.
    draft = _change(1, "create", "2026-11-01T09:00:00Z", ("status", None, "draft"))
    resume = _change(3, "resume", "2026-11-04T09:00:00Z", ("status", "draft", "active"))
    before = _change(2, "update", "2026-11-02T09:00:00Z", ("audience.hash_version", 1, 2))
    report = build_report(_busy_stats(), _engagement(), [draft, before, resume], NOW)
    assert "users_reshuffled" not in _causes(report)


def test_update_setting_status_active_is_a_launch() -> None:
    history = [
        _change(1, "create", "2026-11-01T09:00:00Z", ("status", None, "draft")),
        _change(2, "update", "2026-11-02T09:00:00Z", ("status", "draft", "active")),
    ]
    report = build_report(_busy_stats(), _engagement(), history, NOW)
    assert report.launched is not None and report.launched.version == 2
    assert report.changes == ()


def test_never_launched_draft() -> None:
    history = [_change(1, "create", "2026-11-01T09:00:00Z", ("status", None, "draft"))]
    stats = _busy_stats(inactive=300)
    report = build_report(stats, _engagement(status="draft"), history, NOW)
    assert report.launched is None and report.changes == ()
    assert report.verdicts[0].cause == "inactive"
    assert report.verdicts[0].message.startswith(
        "the engagement is a draft since 2026-11-01 by alice: it delivers nothing until "
        "`declic engagements resume spring-sale`"
    )
    assert "Changes since launch (never launched)" in render_text(report)


def test_local_time_hours_are_named() -> None:
    schedule = {"local_time": True, "hours": {"from": "09:00", "to": "18:00"}}
    report = build_report(
        _busy_stats(outside_schedule=500), _engagement(schedule=schedule), [], NOW
    )
    assert report.verdicts[0].message == (
        "83% of trigger events (500) fell outside the schedule, which runs only 09:00-18:00 "
        "each day (users' local time)"
    )


def test_schedule_not_started_yet() -> None:
    schedule = {"start": "2026-12-01T00:00:00Z"}
    report = build_report(_busy_stats(outside_schedule=10), _engagement(schedule=schedule), [], NOW)
    assert any("which starts on 2026-12-01" in verdict.message for verdict in report.verdicts)


def test_stale_and_filter_miss_are_explained() -> None:
    trigger = {"event": "custom", "name": "Viewed", "where": [{"property": "x", "op": "exists"}]}
    stats = _busy_stats(stale=50, filter_miss=150)
    report = build_report(stats, _engagement(trigger=trigger), [], NOW)
    messages = {verdict.cause: verdict.message for verdict in report.verdicts}
    assert (
        messages["filter_miss"] == "the trigger's where filters reject 60% of events (150 of 250)"
    )
    assert "check the publishers' clocks and lag" in messages["stale"]
    assert [verdict.explains for verdict in report.verdicts] == [120, 40]  # x 0.8


def test_some_impressions_but_most_deliveries_unseen() -> None:
    stats = _busy_stats()
    stats["variants"]["default"]["impressions"] = 10
    stats["unseen_deliveries"]["count"] = 85
    report = build_report(stats, _engagement(), [], NOW)
    assert report.verdicts[0].cause == "not_logging_impressions"
    assert report.verdicts[0].explains == 90
    assert report.verdicts[0].message.startswith(
        "85 deliveries older than 1 h never got an impression (only 10% of deliveries were seen)"
    )
    assert not report.suggest_test_send  # the path works: some impressions come back


def test_control_raised_after_launch_takes_its_share_of_control() -> None:
    history = [
        _change(1, "create", "2026-11-01T09:00:00Z", ("status", None, "active")),
        _change(2, "update", "2026-11-20T09:00:00Z", ("control_percent", 10, 40)),
    ]
    report = build_report(_busy_stats(control=400), _engagement(control_percent=40), history, NOW)
    explains = {verdict.cause: verdict.explains for verdict in report.verdicts}
    # Buckets [10, 40) of the [0, 40) now held out: 3/4 of 400, x 0.8.
    assert explains == {"changed_after_launch": 240, "control": 80}


def test_archived_ranks_first_and_suggests_no_test_send() -> None:
    history = [
        _change(1, "create", "2026-11-01T09:00:00Z", ("status", None, "active")),
        _change(2, "archive", "2026-11-20T09:00:00Z", ("status", "active", "archived")),
    ]
    report = build_report(
        _busy_stats(audience_miss=900), _engagement(status="archived"), history, NOW
    )
    assert _causes(report)[:2] == ["archived", "audience"]
    assert report.verdicts[0].message.startswith(
        "the engagement is archived since 2026-11-20 by bob"
    )
    assert not report.suggest_test_send


def test_trigger_counted_under_an_hour_is_not_yet_judged() -> None:
    stats = {
        "engagement_id": "spring-sale",
        "since_ms": NOW - 5 * 60_000,  # counting began at 11:55
        "outcomes": {"delivered": 3},
        "variants": {"default": {"deliveries": 3, "impressions": 3}},
        "trigger_hours": {str(NOW // HOUR_MS - 1): 3},
        "unseen_deliveries": {"older_than_seconds": 3600, "count": 0},
    }
    report = build_report(stats, _engagement(), [], NOW)
    assert _causes(report) == ["not_yet_judged"]
    assert report.verdicts[0].message == (
        "too early to judge every cause: so far 3 trigger events in the first 5 min of "
        "counting, 3 delivered, 3 shown (100%); trigger frequency can be judged from "
        "2026-11-24 12:55 UTC, after an hour of counting"
    )
    # Three hours later, the same 3 events are judged: the trigger is rare.
    later = build_report(stats, _engagement(), [], NOW + 3 * HOUR_MS)
    assert _causes(later) == ["rare_trigger"]


def test_unseen_deliveries_wait_for_the_threshold() -> None:
    stats = _busy_stats()
    stats["since_ms"] = NOW - 3 * HOUR_MS
    stats["unseen_deliveries"] = {"older_than_seconds": 86_400, "count": 0}
    report = build_report(stats, _engagement(), [], NOW)
    assert _causes(report) == ["not_yet_judged"]
    assert report.verdicts[0].message.endswith(
        "so far 100 trigger events in the first 3 h of counting, 100 delivered, 80 shown (80%); "
        "impression logging can be judged from 2026-11-25 09:00 UTC, once deliveries are "
        "1 day old"
    )
    # Once deliveries can be that old, the unseen count decides.
    stats["since_ms"] = NOW - 2 * 86_400_000
    assert _causes(build_report(stats, _engagement(), [], NOW)) == ["no_cause_found"]


@pytest.mark.parametrize(
    "stats",
    [
        {},
        {"since_ms": NOW},
        {"since_ms": NOW + HOUR_MS},
        {"since_ms": NOW - HOUR_MS, "outcomes": {"delivered": 1}},
        {"since_ms": WEEK_AGO, "trigger_hours": {str(NOW // HOUR_MS): 5_000}},
    ],
    ids=["nothing", "just-begun", "ahead", "one-hour", "busy"],
)
def test_the_diagnosis_never_answers_with_silence(stats: dict[str, Any]) -> None:
    report = build_report(stats, _engagement(), [], NOW)
    assert report.verdicts
    assert render_text(report).split("Verdicts\n")[1].startswith("  1. ")


def test_recreated_engagement_starts_a_new_life() -> None:
    history = [
        _change(1, "create", "2026-11-01T09:00:00Z", ("status", None, "active")),
        _change(2, "update", "2026-11-02T09:00:00Z", ("audience.percent", 100, 10)),
        _change(2, "delete", "2026-11-03T09:00:00Z", ("status", "active", None)),
        _change(1, "create", "2026-11-04T09:00:00Z", ("status", None, "active")),
    ]
    report = build_report(_busy_stats(), _engagement(), history, NOW)
    assert report.launched is not None and report.launched.at == "2026-11-04T09:00:00Z"
    assert report.changes == ()


# --- wording ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("share", "text"),
    [(0, "0%"), (0.004, "<1%"), (0.625, "63%"), (0.7093, "71%"), (0.996, ">99%"), (1, "100%")],
)
def test_percentages_carry_no_false_precision(share: float, text: str) -> None:
    assert percent_text(share) == text


def test_durations_rates_and_values() -> None:
    assert [duration_text(s) for s in (45, 1800, 3600, 86_400, 172_800, 90)] == [
        "45 s",
        "30 min",
        "1 h",
        "1 day",
        "2 days",
        "90 s",
    ]
    assert [rate_text(r) for r in (0.5, 2.0, 12.4, 1234.6)] == ["0.5", "2", "12", "1,235"]
    assert [elapsed_text(ms) for ms in (45_999, 299_000, 5_399_000, 200_000_000, -5)] == [
        "45 s",
        "4 min",
        "1 h",
        "2 days",
        "0 s",
    ]
    assert value_text(None) == "none"
    assert value_text(["FR", "BE"]) == '["FR", "BE"]'
    assert value_text("x" * 80).endswith("…") and len(value_text("x" * 80)) == 48


# --- rendering -------------------------------------------------------------------------


def _golden_report(name: str) -> Report:
    return _run(json.loads((GOLDEN / f"{name}.json").read_text(encoding="utf-8")))


def test_render_text_reads_like_a_report() -> None:
    text = render_text(_golden_report("percent_lowered_after_launch"))
    lines = text.splitlines()
    assert lines[0] == "premium-upsell · Premium upsell · active · v2 (updated 2026-11-21 by alice)"
    for heading in ("Figures", "Changes since launch (launched 2026-11-10 by bob, v1)", "Verdicts"):
        assert heading in lines
    assert (
        "2,000 of 5,000 known users in the audience (40%); the percentage keeps 400 (20%)" in text
    )
    assert "      audience.percent: 100 → 20" in lines
    assert text.index("  1. the engagement was changed after launch") < text.index(
        "  2. the audience"
    )
    assert "[changed_after_launch: ~384 impressions]" in text
    assert "test-send" not in text
    assert all(len(line) <= 100 for line in lines if line.lstrip()[:1].isdigit())


def test_render_text_figures_and_test_send_hint() -> None:
    text = render_text(_golden_report("no_impressions_logged"))
    assert "1. deliveries are produced but 0 of 850 got an impression" in text
    assert "default: 850 deliveries, 0 impressions (0%), 0 clicks, 0 conversions" in text
    assert "780 deliveries older than 1 h never seen" in text
    assert ["delivered", "850", "59%"] in [line.split() for line in text.splitlines()]
    assert "declic engagements test-send cart-reminder --user YOUR_USER" in text.replace("\n", " ")


def test_render_text_variants_control_and_since() -> None:
    text = render_text(_golden_report("control_and_variants"))
    assert "A: 450 deliveries, 400 impressions (89%), 80 clicks, 30 conversions" in text
    assert "total: 900 deliveries, 780 impressions (87%), 140 clicks, 75 conversions" in text
    assert "Control    100 users, 5 conversions (5%)" in text
    since = render_text(_golden_report("since_filters_changes"))
    assert "Changes since 2026-11-20 00:00 UTC" in since


def test_render_text_of_a_missing_engagement() -> None:
    text = render_text(_golden_report("not_found_deleted"))
    assert text.startswith("old-promo · not found\n")
    assert "1. no engagement 'old-promo' exists: it was deleted on 2026-11-22 by bob" in text


def test_ranking_puts_the_largest_shortfall_first() -> None:
    names = ["rare_trigger", "no_impressions_logged", "tight_audience", "no_traffic"]
    reports = [_golden_report(name) for name in names]
    lines = render_ranking(reports).splitlines()
    assert lines[0].split() == ["ENGAGEMENT", "MISSING", "TOP", "VERDICT"]
    assert [line.split()[0] for line in lines[1:]] == [
        "welcome-offer",
        "cart-reminder",
        "referral-ask",
        "feature-tour",
    ]
    assert lines[1].split()[1] == "1,908"
    assert "audience: the audience filters keep 2% of known users" in lines[1]
    assert "rare_trigger: the trigger event 'Opened Feature' did not arrive" in lines[4]


def test_ranking_of_an_engagement_without_causes() -> None:
    stats = _busy_stats()
    stats["variants"]["default"]["impressions"] = 100
    report = build_report(stats, _engagement(), [], NOW)
    assert _causes(report) == ["no_cause_found"] and shortfall(report) == 0
    expected = (
        "nothing found that costs impressions: 100 trigger events since 2026-11-17, "
        "100 delivered, 100 shown (100%)"
    )
    assert report.verdicts[0].message == expected
    assert render_ranking([report]).splitlines()[1].endswith(f"no_cause_found: {expected}")
    assert f"1. {expected} [no_cause_found]" in render_text(report).replace("\n     ", " ")


def test_informational_verdicts_rank_last_and_change_no_ranking() -> None:
    young = _golden_report("too_young_trigger")
    text = render_text(young)
    assert "1. too early to judge every cause: so far 3 trigger events in the first 5 min" in text
    assert "once deliveries are 1 h old [not_yet_judged]" in text.replace("\n     ", " ")
    assert not young.suggest_test_send
    # Besides a cause, the verdict still comes, after it (explaining 0).
    case = json.loads((GOLDEN / "too_young_trigger.json").read_text(encoding="utf-8"))
    case["stats"]["outcomes"]["audience_miss"] = 7
    report = _run(case)
    assert _causes(report) == ["audience", "not_yet_judged"]
    assert [verdict.explains for verdict in report.verdicts] == [5, 0]  # 7 x 2/3
    reports = [young, _golden_report("nothing_found"), _golden_report("tight_audience")]
    lines = render_ranking(reports).splitlines()
    assert [line.split()[:2] for line in lines[1:]] == [
        ["welcome-offer", "1,908"],
        ["order-thanks", "8"],
        ["welcome-tip", "1"],
    ]
    assert "not_yet_judged: too early to judge every cause" in lines[3]


# --- purity ----------------------------------------------------------------------------


def test_diagnosis_imports_no_kafka_faust_or_clock() -> None:
    forbidden = {"aiokafka", "faust", "mode", "time", "asyncio"}
    for path in PACKAGE.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not {name.split(".")[0] for name in names} & forbidden, path.name
        assert ".now(" not in path.read_text(encoding="utf-8"), path.name
