"""Gather what `declic diagnose` needs from Kafka: figures, engagement records, history."""

from __future__ import annotations

import asyncio
from typing import Any

from engine.admin.engagements import read_catalog
from engine.admin.history import read_history
from engine.diagnose.report import Report, build_report
from engine.settings import Settings
from engine.stats.reader import read_stats


async def diagnose(
    settings: Settings, engagement_id: str, now_ms: int, since_ms: int | None = None
) -> Report:
    """Return the report of one engagement."""
    stats, records, history = await asyncio.gather(
        read_stats(settings), read_catalog(settings), read_history(settings, engagement_id)
    )
    return build_report(
        _figures(stats, engagement_id, settings.unseen_delivery_seconds),
        records.get(engagement_id),
        history,
        now_ms,
        since_ms,
        rivals=list(records.values()),
    )


async def diagnose_active(settings: Settings, now_ms: int) -> list[Report]:
    """Return the reports of every active engagement."""
    stats, records, history = await asyncio.gather(
        read_stats(settings), read_catalog(settings), read_history(settings)
    )
    reports = []
    for engagement_id, record in sorted(records.items()):
        if record["engagement"]["status"] != "active":
            continue
        changes = [change for change in history if change["engagement_id"] == engagement_id]
        reports.append(
            build_report(
                _figures(stats, engagement_id, settings.unseen_delivery_seconds),
                record,
                changes,
                now_ms,
                None,
                rivals=list(records.values()),
            )
        )
    return reports


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
    }
