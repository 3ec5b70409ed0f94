"""Answer "why are my impressions low?" for one engagement, from its counters and changelog.

Pure: no Kafka, no clock (``now_ms`` is given). ``build_report`` takes:

* ``stats``: the engagement's counters summed over partitions, cumulative since
  ``since_ms``: ``outcomes`` (evaluations by outcome, missing ones 0), ``variants``
  (``{variant: {deliveries, impressions, clicks, conversions}}``, first impression and
  click per delivery, test sends excluded), ``control`` (``{users, conversions}``),
  ``trigger_hours`` (epoch hour as a string -> trigger events that passed the trigger's
  filters), ``segment`` (``{known_users, audience_users, kept_users, computed_at_ms}`` or
  None) and ``unseen_deliveries`` (``{older_than_seconds, count}``);
* ``engagement_record``: the record on the ``engagements`` topic, None when there is none;
* ``history``: the engagement's changelog records, oldest first;
* ``rivals``: optionally, the other engagement records, to name those that outrank it.

Verdicts and their ``explains`` estimates: see ``engine.diagnose.causes`` and
``engine.diagnose.change_costs``. A report never answers with silence: it holds at least
one verdict. When the figures are too young to judge a cause, ``not_yet_judged`` says what
was seen so far and when it can be judged; when nothing costs impressions,
``no_cause_found`` gives the key figures. Both explain 0 and rank last, so they change
neither ``shortfall`` nor the test-send hint.

``shortfall`` ranks engagements for ``declic diagnose --all``: the evaluations the trigger
traffic offered (every evaluation but ``filter_miss``, which is not this engagement's
traffic, and ``not_re_eligible``, ``control`` and ``cancelled``, which withhold a message by
design) less the impressions made. It does not see a trigger that stopped arriving: the
``rare_trigger`` verdict does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from engine.core.timestamps import format_timestamp
from engine.diagnose.causes import (
    Evidence,
    Verdict,
    logging_pending,
    logging_verdict,
    no_cause_verdict,
    not_yet_judged_verdict,
    rank,
    rare_trigger_pending,
    rare_trigger_verdict,
    status_verdict,
)
from engine.diagnose.change_costs import change_verdicts
from engine.diagnose.figures import Figures, compute_figures
from engine.diagnose.history import (
    ChangeEntry,
    changes_to_list,
    current_life,
    launch_index,
    read_entries,
)
from engine.diagnose.outcome_causes import outcome_verdicts
from engine.diagnose.wording import date_text

# Outcomes that are not missing impressions: not this engagement's traffic, or by design.
_NOT_MISSED: Final = ("filter_miss", "not_re_eligible", "control", "cancelled")


@dataclass(frozen=True, slots=True)
class Report:
    """What one engagement delivered and showed, what changed, and why impressions are low."""

    engagement_id: str
    exists: bool
    name: str | None
    status: str | None
    version: int | None
    updated_at: str | None
    updated_by: str | None
    now_ms: int
    figures: Figures
    launched: ChangeEntry | None
    changes_since_ms: int | None  # None: changes since the launch
    changes: tuple[ChangeEntry, ...]
    verdicts: tuple[Verdict, ...]
    suggest_test_send: bool
    test_send_hint: str | None

    @property
    def top_verdict(self) -> Verdict | None:
        """Return the most important verdict, if any."""
        return self.verdicts[0] if self.verdicts else None

    def to_json_dict(self) -> dict[str, Any]:
        """Return the report as JSON-ready values (for ``--json`` and HTTP)."""
        return {
            "engagement_id": self.engagement_id,
            "exists": self.exists,
            "name": self.name,
            "status": self.status,
            "version": self.version,
            "updated_at": self.updated_at,
            "updated_by": self.updated_by,
            "generated_at": format_timestamp(self.now_ms),
            "figures": self.figures.to_json_dict(),
            "launched": None if self.launched is None else self.launched.to_json_dict(),
            "changes_since": (
                None if self.changes_since_ms is None else format_timestamp(self.changes_since_ms)
            ),
            "changes": [entry.to_json_dict() for entry in self.changes],
            "verdicts": [verdict.to_json_dict() for verdict in self.verdicts],
            "shortfall": shortfall(self),
            "suggest_test_send": self.suggest_test_send,
            "test_send_hint": self.test_send_hint,
        }


def shortfall(report: Report) -> int:
    """Return the impressions missing against what the trigger traffic offered."""
    figures = report.figures
    offered = figures.evaluations - sum(figures.outcome(name) for name in _NOT_MISSED)
    return max(0, offered - figures.totals.impressions)


def _engagement_id(
    stats: Mapping[str, Any], document: Mapping[str, Any], history: list[Mapping[str, Any]]
) -> str:
    for value in (document.get("id"), stats.get("engagement_id")):
        if isinstance(value, str) and value:
            return value
    return next(
        (str(record["engagement_id"]) for record in history if "engagement_id" in record), ""
    )


def _not_found(engagement_id: str, life: tuple[ChangeEntry, ...]) -> Verdict:
    message = f"no engagement '{engagement_id}' exists"
    if life and life[-1].action == "delete":
        message += f": it was deleted on {date_text(life[-1].at_ms)} by {life[-1].author}"
    else:
        message += ": check the id with `declic engagements list`"
    return Verdict("not_found", 0, message, blocking=True)


def _test_send_hint(engagement_id: str, figures: Figures) -> str | None:
    totals = figures.totals
    if totals.deliveries and totals.impressions:
        return None
    situation = "No delivery yet" if totals.deliveries == 0 else "No delivery got an impression"
    return (
        f"{situation}: run `declic engagements test-send {engagement_id} --user YOUR_USER` "
        "and check that the app shows the message and logs its impression."
    )


def _judge(
    evidence: Evidence, life: tuple[ChangeEntry, ...], since_ms: int | None
) -> tuple[Verdict, ...]:
    launched = launch_index(life)
    after_launch = () if launched is None else life[launched + 1 :]
    judged = [entry for entry in after_launch if since_ms is None or entry.at_ms >= since_ms]
    verdicts, unexplained = change_verdicts(evidence, judged)
    for judge in (status_verdict, logging_verdict, rare_trigger_verdict):
        verdict = judge(evidence)
        if verdict is not None:
            verdicts.append(verdict)
    verdicts += outcome_verdicts(evidence, unexplained)
    pending = [item for item in (rare_trigger_pending(evidence), logging_pending(evidence)) if item]
    if pending:
        verdicts.append(not_yet_judged_verdict(evidence, pending))
    elif not verdicts:
        verdicts.append(no_cause_verdict(evidence))
    return rank(verdicts)


def build_report(
    stats: Mapping[str, Any] | None,
    engagement_record: Mapping[str, Any] | None,
    history: Iterable[Mapping[str, Any]],
    now_ms: int,
    since_ms: int | None = None,
    *,
    rivals: Iterable[Mapping[str, Any]] = (),
) -> Report:
    """Build the diagnosis of one engagement as of ``now_ms``.

    ``since_ms`` lists the changes made at or after it instead of those since the launch;
    the figures stay as given.
    """
    stats = stats or {}
    record = engagement_record or {}
    document = record.get("engagement")
    document = document if isinstance(document, Mapping) else {}
    history = list(history)
    engagement_id = _engagement_id(stats, document, history)
    exists = engagement_record is not None
    figures = compute_figures(stats, now_ms)
    life = current_life(read_entries(history, engagement_id), exists)
    launched = launch_index(life)
    evidence = Evidence(engagement_id, document, figures, life, now_ms, tuple(rivals))
    verdicts = _judge(evidence, life, since_ms) if exists else (_not_found(engagement_id, life),)
    status = document.get("status")
    hint = _test_send_hint(engagement_id, figures) if exists and status != "archived" else None
    version = record.get("version")
    return Report(
        engagement_id=engagement_id,
        exists=exists,
        name=str(document["name"]) if "name" in document else None,
        status=str(status) if status is not None else None,
        version=version if isinstance(version, int) else None,
        updated_at=record.get("updated_at"),
        updated_by=record.get("author"),
        now_ms=now_ms,
        figures=figures,
        launched=None if launched is None else life[launched],
        changes_since_ms=since_ms,
        changes=changes_to_list(life, since_ms),
        verdicts=verdicts,
        suggest_test_send=hint is not None,
        test_send_hint=hint,
    )
