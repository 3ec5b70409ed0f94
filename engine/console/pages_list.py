"""GET /engagements: every engagement with its last 24 hours, filtered by status and name."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from engine.console.auth import require
from engine.console.charts import sparkline
from engine.console.context import CONSOLE
from engine.console.views import (
    STATUSES,
    last_day,
    matches,
    schedule_text,
    trigger_text,
)


async def list_engagements(request: web.Request) -> web.Response:
    """The list; ``?part=rows`` answers the table alone (the page's refresh)."""
    require(request, "view")
    console = request.app[CONSOLE]
    status = request.query.get("status", "")
    if status not in STATUSES:
        status = ""
    query = request.query.get("q", "").strip()[:256]
    snapshot = await console.data.snapshot()
    rows: list[dict[str, Any]] = []
    for engagement_id, record in sorted(
        snapshot.records.items(), key=lambda item: item[1]["engagement"]["name"].casefold()
    ):
        if not matches(record, status, query):
            continue
        engagement = record["engagement"]
        activity = last_day(snapshot.stats.get(engagement_id), snapshot.read_at_ms)
        rows.append(
            {
                "id": engagement_id,
                "name": engagement["name"],
                "status": engagement["status"],
                "trigger": trigger_text(engagement),
                "schedule": schedule_text(engagement),
                "percent": engagement["audience"]["percent"],
                "totals": activity.totals,
                "trend": sparkline(
                    activity.hourly["deliveries"],
                    label=f"deliveries per hour over 24 h of {engagement['name']}",
                ),
            }
        )
    context = {
        "rows": rows,
        "status": status,
        "statuses": STATUSES,
        "query": query,
        "read_at_ms": snapshot.read_at_ms,
        "total": len(snapshot.records),
        "refresh": request.path_qs,
    }
    template = "list_rows.html" if request.query.get("part") == "rows" else "list.html"
    render = console.extra["render"]
    response: web.Response = await render(request, template, context, 200)
    return response
