"""GET /engagements/{id}: figures, diagnosis, changelog; and the actions its buttons post."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from engine.admin.diagnose import Snapshot, report_from
from engine.admin.engagement_yaml import engagement_yaml
from engine.admin.engagements import STATUS_ACTIONS, EngagementRejected
from engine.console.auth import require
from engine.console.charts import funnel_bars, hourly_bars
from engine.console.context import CONSOLE
from engine.console.rates import Rate, compare_variants, format_rate
from engine.errors import DeclicError
from engine.stats.counts import HOUR_MS

log = logging.getLogger(__name__)

# The statuses each button applies to: those `declic engagements pause|resume|archive` allow.
STATUS_BUTTONS = {action: allowed for action, (allowed, _) in STATUS_ACTIONS.items()}
DONE_WORDS = {
    "pause": "Paused",
    "resume": "Resumed",
    "archive": "Archived",
    "draft": "Saved as a draft",
    "save": "Saved",
    "launch": "Launched",
}


async def show_engagement(request: web.Request) -> web.Response:
    """The engagement's page; ``?part=figures`` answers the figures alone (the refresh)."""
    require(request, "view")
    part = "detail_figures.html" if request.query.get("part") == "figures" else "detail.html"
    done = DONE_WORDS.get(request.query.get("done", ""))
    return await _page(request, part, notice=done)


async def _page(
    request: web.Request, template: str, status: int = 200, **extra: Any
) -> web.Response:
    console = request.app[CONSOLE]
    engagement_id = request.match_info["engagement_id"]
    snapshot = await console.data.snapshot()
    record = snapshot.records.get(engagement_id)
    if record is None:
        raise web.HTTPNotFound(text=f"no engagement {engagement_id!r}")
    context = {
        **_figures_context(snapshot, engagement_id, console.settings.unseen_delivery_seconds)
    }
    engagement = record["engagement"]
    variants = [variant["id"] for variant in engagement.get("variants") or []] or ["default"]
    context.update(
        record=record,
        engagement=engagement,
        variant_ids=variants,
        buttons=[
            action
            for action, statuses in STATUS_BUTTONS.items()
            if engagement["status"] in statuses
        ],
        history=[
            change
            for change in reversed(snapshot.history)
            if change["engagement_id"] == engagement_id
        ],
    )
    context.update(
        {
            "error": None,
            "notice": None,
            "test_delivery": None,
            "test_user": "",
            "test_variant": "",
            **extra,
        }
    )
    render = console.extra["render"]
    response: web.Response = await render(request, template, context, status)
    return response


def _figures_context(snapshot: Snapshot, engagement_id: str, unseen_seconds: int) -> dict[str, Any]:
    now_ms = snapshot.read_at_ms
    report = report_from(snapshot, engagement_id, now_ms, None, unseen_seconds)
    figures = report.figures
    hourly = dict(figures.trigger.hourly)
    end_hour = now_ms // HOUR_MS
    totals = figures.totals
    variants = {
        variant.variant: {
            "deliveries": variant.deliveries,
            "impressions": variant.impressions,
            "clicks": variant.clicks,
            "conversions": variant.conversions,
        }
        for variant in figures.variants
    }
    control = {"users": figures.control_users, "conversions": figures.control_conversions}
    rows = [
        {
            "variant": name,
            **counts,
            "impression_rate": format_rate(Rate(counts["impressions"], counts["deliveries"])),
            "click_rate": format_rate(Rate(counts["clicks"], counts["impressions"])),
            "conversion_rate": format_rate(Rate(counts["conversions"], counts["deliveries"])),
        }
        for name, counts in sorted(variants.items())
    ]
    return {
        "report": report,
        "read_at_ms": now_ms,
        "segment": figures.segment,
        "trigger_24h": hourly_bars(
            hourly, end_hour=end_hour, hours=24, label="trigger events per hour, last 24 h"
        ),
        "trigger_7d": hourly_bars(
            hourly, end_hour=end_hour, hours=24 * 7, label="trigger events per hour, last 7 days"
        ),
        "trigger_total": figures.trigger.total,
        "outcomes_chart": funnel_bars(
            [(step.outcome, step.count) for step in figures.funnel],
            label="trigger events by outcome",
        ),
        "funnel_chart": funnel_bars(
            [
                ("delivered", totals.deliveries),
                ("shown", totals.impressions),
                ("clicked", totals.clicks),
                ("converted", totals.conversions),
            ],
            label="deliveries, impressions, clicks and conversions",
        ),
        "variant_rows": rows,
        "control": control,
        "control_rate": format_rate(Rate(control["conversions"], control["users"])),
        "winners": [
            compare_variants(variants, control, metric) for metric in ("clicks", "conversions")
        ],
        "verdicts": report.verdicts,
    }


async def change_status(request: web.Request) -> web.Response:
    """POST /engagements/{id}/pause|resume|archive."""
    action = request.match_info["action"]
    if action not in STATUS_BUTTONS:
        raise web.HTTPNotFound(text=f"no action {action!r}")
    session = require(request, action)
    console = request.app[CONSOLE]
    engagement_id = request.match_info["engagement_id"]
    try:
        await console.data.change_status(
            engagement_id, action, session.user, console.wall_clock_ms()
        )
    except EngagementRejected as error:
        return await _page(request, "detail.html", 409, error=str(error))
    raise web.HTTPSeeOther(f"/engagements/{engagement_id}?done={action}")


async def test_send(request: web.Request) -> web.Response:
    """POST /engagements/{id}/test-send: user_id, variant (empty: the user's)."""
    session = require(request, "test_send")
    console = request.app[CONSOLE]
    form = await request.post()
    user_id = str(form.get("user_id", "")).strip()
    variant = str(form.get("variant", "")).strip() or None
    sticky: dict[str, Any] = {"test_user": user_id, "test_variant": variant or ""}
    if not user_id or len(user_id) > 256:
        return await _page(
            request,
            "detail.html",
            400,
            error="test send: give a user id (1 to 256 characters)",
            **sticky,
        )
    engagement_id = request.match_info["engagement_id"]
    try:
        delivery = await console.data.test_send(engagement_id, user_id, variant, session.user)
    except EngagementRejected as error:
        return await _page(request, "detail.html", 409, error=f"test send: {error}", **sticky)
    except DeclicError as error:
        return await _page(request, "detail.html", 504, error=f"test send: {error}", **sticky)
    log.info("test send of %s to %s by %s", engagement_id, user_id, session.user)
    return await _page(request, "detail.html", test_delivery=delivery, **sticky)


async def export_yaml(request: web.Request) -> web.Response:
    """GET /engagements/{id}/export.yaml: what `declic engagements export` writes."""
    require(request, "view")
    engagement_id = request.match_info["engagement_id"]
    record = (await request.app[CONSOLE].data.snapshot()).records.get(engagement_id)
    if record is None:
        raise web.HTTPNotFound(text=f"no engagement {engagement_id!r}")
    return web.Response(
        text=engagement_yaml([record["engagement"]]),
        content_type="application/yaml",
        charset="utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{engagement_id}.yaml"',
            "Cache-Control": "no-store",
        },
    )
