"""Gather what `declic diagnose` needs from Kafka (figures, engagement records, history)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from engine.admin.engagements import read_catalog
from engine.admin.history import read_history
from engine.core.timestamps import parse_timestamp
from engine.diagnose.report import Report, build_report
from engine.settings import Settings
from engine.stats.reader import read_stats


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What every report is built from: the three topics as one read found them."""

    stats: dict[str, dict[str, Any]]
    records: dict[str, dict[str, Any]]
    history: list[dict[str, Any]]
    read_at_ms: int  # wall-clock time the read began


async def read_snapshot(settings: Settings, engagement_id: str | None = None) -> Snapshot:
    """Read engagement-stats, engagements and engagement-changelog (one engagement's
    history only, when ``engagement_id`` is given)."""
    read_at_ms = int(time.time() * 1000)
    stats, records, history = await asyncio.gather(
        read_stats(settings), read_catalog(settings), read_history(settings, engagement_id)
    )
    return Snapshot(stats, records, history, read_at_ms)


def report_from(
    snapshot: Snapshot,
    engagement_id: str,
    now_ms: int,
    since_ms: int | None,
    unseen_delivery_seconds: int,
) -> Report:
    """Return the report of one engagement, built from ``snapshot``."""
    figures = _figures(snapshot.stats, engagement_id, unseen_delivery_seconds)
    record = snapshot.records.get(engagement_id)
    if engagement_id not in snapshot.stats and record is not None:
        # No worker counted it yet: counting can have begun at its last change at most
        # (from the epoch, a new engagement would be "missing its trigger for 24 h").
        figures["since_ms"] = parse_timestamp(record["updated_at"])
    return build_report(
        figures,
        record,
        [change for change in snapshot.history if change["engagement_id"] == engagement_id],
        now_ms,
        since_ms,
        rivals=list(snapshot.records.values()),
    )


async def diagnose(
    settings: Settings, engagement_id: str, now_ms: int, since_ms: int | None = None
) -> Report:
    """Return the report of one engagement."""
    snapshot = await read_snapshot(settings, engagement_id)
    return report_from(snapshot, engagement_id, now_ms, since_ms, settings.unseen_delivery_seconds)


async def diagnose_active(settings: Settings, now_ms: int) -> list[Report]:
    """Return the reports of every active engagement."""
    snapshot = await read_snapshot(settings)
    return [
        report_from(snapshot, engagement_id, now_ms, None, settings.unseen_delivery_seconds)
        for engagement_id, record in sorted(snapshot.records.items())
        if record["engagement"]["status"] == "active"
    ]


def _figures(
    stats: dict[str, dict[str, Any]], engagement_id: str, unseen_after_seconds: int
) -> dict[str, Any]:
    # An engagement no worker published figures for yet: all zero.
    return stats.get(engagement_id) or {
        "engagement_id": engagement_id,
        "since_ms": 0,
        "outcomes": {},
        "variants": {},
        "control": {"users": 0, "conversions": 0},
        "trigger_hours": {},
        "segment": None,
        "unseen_deliveries": {"older_than_seconds": unseen_after_seconds, "count": 0},
        "activity_hours": {},
    }
