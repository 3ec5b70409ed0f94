"""Print diagnosis reports for a terminal: one engagement in full, or a ranking of many."""

from __future__ import annotations

import textwrap
from collections.abc import Iterable

from engine.diagnose.figures import Figures, VariantFigures, ratio
from engine.diagnose.history import ChangeEntry
from engine.diagnose.report import Report, shortfall
from engine.diagnose.wording import (
    count_text,
    date_text,
    duration_text,
    percent_text,
    rate_text,
    time_text,
    value_text,
)

_LABEL_WIDTH = 10
_WIDTH = 100


def _plural(count: int, word: str, words: str | None = None) -> str:
    """Return ``1 click`` or ``4,210 clicks`` (``words``: an irregular plural)."""
    return f"{count_text(count)} {word if count == 1 else words or word + 's'}"


def _heading(report: Report) -> list[str]:
    if not report.exists:
        return [f"{report.engagement_id} · not found"]
    parts = [report.engagement_id, report.name or "(no name)", report.status or "?"]
    line = " · ".join(parts)
    if report.version is not None:
        line += f" · v{report.version}"
        if report.updated_at and report.updated_by:
            line += f" (updated {report.updated_at[:10]} by {report.updated_by})"
    return [line]


def _variant_line(variant: VariantFigures) -> str:
    seen = percent_text(variant.impression_ratio) if variant.deliveries else "n/a"
    return (
        f"{variant.variant}: {_plural(variant.deliveries, 'delivery', 'deliveries')}, "
        f"{_plural(variant.impressions, 'impression')} ({seen}), "
        f"{_plural(variant.clicks, 'click')}, {_plural(variant.conversions, 'conversion')}"
    )


def _row(label: str, text: str) -> str:
    return f"  {label:<{_LABEL_WIDTH}} {text}"


def _figures(figures: Figures) -> list[str]:
    lines = ["Figures"]
    if figures.since_ms is not None:
        lines.append(_row("Counted", f"since {time_text(figures.since_ms)}"))
    segment = figures.segment
    if segment is not None:
        text = (
            f"{count_text(segment.audience_users)} of {count_text(segment.known_users)} known "
            f"users in the audience ({percent_text(segment.audience_share)}); the percentage "
            f"keeps {count_text(segment.kept_users)} ({percent_text(segment.kept_share)})"
        )
        if segment.computed_at_ms is not None:
            text += f" (as of {time_text(segment.computed_at_ms)})"
        lines.append(_row("Segment", text))
    trigger = figures.trigger
    lines.append(
        _row(
            "Trigger",
            f"{count_text(trigger.last_24h)} events in the last 24 h "
            f"({rate_text(trigger.per_hour_24h)} an hour, {trigger.silent_hours_24h} hours "
            f"with none); {count_text(trigger.last_7d)} in 7 days "
            f"({rate_text(trigger.per_hour_7d)} an hour)",
        )
    )
    lines.append(_row("Funnel", f"{_plural(figures.evaluations, 'evaluation')}"))
    steps = [step for step in figures.funnel if step.count]
    width = max((len(count_text(step.count)) for step in steps), default=1)
    for step in steps:
        lines.append(
            f"{'':{_LABEL_WIDTH + 5}}{step.outcome:<18} {count_text(step.count):>{width}}"
            f"  {percent_text(step.share):>4}"
        )
    variants = list(figures.variants)
    if len(variants) > 1:
        variants.append(figures.totals)
    for index, variant in enumerate(variants or [figures.totals]):
        lines.append(_row("Variants" if index == 0 else "", _variant_line(variant)))
    if figures.control_users:
        conversion = percent_text(ratio(figures.control_conversions, figures.control_users))
        lines.append(
            _row(
                "Control",
                f"{_plural(figures.control_users, 'user')}, "
                f"{_plural(figures.control_conversions, 'conversion')} ({conversion})",
            )
        )
    if figures.unseen_deliveries:
        after = figures.unseen_after_seconds
        age = f" older than {duration_text(after)}" if after else ""
        lines.append(
            _row("Unseen", f"{count_text(figures.unseen_deliveries)} deliveries{age} never seen")
        )
    return lines


def _change_lines(entry: ChangeEntry) -> list[str]:
    lines = [f"  {time_text(entry.at_ms)}  v{entry.version}  {entry.action}  by {entry.author}"]
    if entry.action == "create":
        return [*lines, f"      created with {_plural(len(entry.changes), 'field')}"]
    return lines + [
        f"      {item.field}: {value_text(item.old)} → {value_text(item.new)}"
        for item in entry.changes
    ]


def _changes(report: Report) -> list[str]:
    if report.changes_since_ms is not None:
        title = f"Changes since {time_text(report.changes_since_ms)}"
    elif report.launched is not None:
        launched = report.launched
        title = (
            f"Changes since launch (launched {date_text(launched.at_ms)} by {launched.author}, "
            f"v{launched.version})"
        )
    else:
        title = "Changes since launch (never launched)"
    lines = [title]
    for entry in report.changes:
        lines += _change_lines(entry)
    if not report.changes:
        lines.append("  none")
    return lines


def _verdicts(report: Report) -> list[str]:
    lines = ["Verdicts"]
    for number, verdict in enumerate(report.verdicts, start=1):
        cost = f": ~{_plural(verdict.explains, 'impression')}" if verdict.explains else ""
        lines += _wrapped(f"{number}. {verdict.message} [{verdict.cause}{cost}]", "  ", "     ")
    if not report.verdicts:
        lines.append("  no cause found: the engagement shows what its traffic allows")
    return lines


def _wrapped(text: str, indent: str, hanging: str) -> list[str]:
    return textwrap.wrap(
        text, _WIDTH, initial_indent=indent, subsequent_indent=hanging, break_on_hyphens=False
    )


def render_text(report: Report) -> str:
    """Return the report as a short, readable terminal text."""
    sections = [_heading(report), _figures(report.figures)]
    sections += [_changes(report), _verdicts(report)]
    if report.test_send_hint:
        sections.append(_wrapped(report.test_send_hint, "", ""))
    return "\n\n".join("\n".join(lines) for lines in sections) + "\n"


def ranked(reports: Iterable[Report]) -> list[Report]:
    """Return the reports, largest shortfall first (ties by engagement id)."""
    return sorted(reports, key=lambda report: (-shortfall(report), report.engagement_id))


def render_ranking(reports: Iterable[Report]) -> str:
    """Return one line per engagement, largest shortfall first, with its top verdict."""
    ordered = ranked(reports)
    width = max([len("ENGAGEMENT"), *(len(report.engagement_id) for report in ordered)])
    lines = [f"{'ENGAGEMENT':<{width}}  {'MISSING':>9}  TOP VERDICT"]
    for report in ordered:
        top = report.top_verdict
        verdict = "no cause found" if top is None else f"{top.cause}: {top.message}"
        lines.append(
            f"{report.engagement_id:<{width}}  {count_text(shortfall(report)):>9}  {verdict}"
        )
    return "\n".join(lines) + "\n"
