"""Small charts as inline SVG, drawn by the server: no script, no client library.

Each chart is an ``<svg>`` with width, height and viewBox, ``role="img"``, a ``<title>``
naming it for screen readers, and class names (``chart``, ``bar``, ``axis-label``...) for
the page's CSS to color. Every text that comes from data is escaped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Final

from markupsafe import Markup, escape

HOUR_SECONDS: Final = 3600
# Past two days of bars, an hour label per end no longer says which day: label days.
_MAX_HOUR_LABELED: Final = 48
# Month abbreviations written here: strftime's %b would follow the process locale.
_MONTHS: Final = (
    "Jan",
    "Feb",
    "Mar",
    "Apr",
    "May",
    "Jun",
    "Jul",
    "Aug",
    "Sep",
    "Oct",
    "Nov",
    "Dec",
)
_FONT: Final = 10  # px, the labels' font size; the margins below leave room for it
_PAD: Final = 1.0  # keeps a stroke or a full bar inside the box


def _n(value: float) -> str:
    """Return a coordinate as short text: 12, 12.5, 12.33."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _svg(kind: str, width: int, height: int, label: str, body: str) -> Markup:
    title = escape(label)
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart {kind}" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{title}">'
        f"<title>{title}</title>{body}</svg>"
    )


def sparkline(values: Sequence[float], *, width: int = 120, height: int = 24, label: str) -> Markup:
    """Return a line through ``values``, left to right, scaled to fill the box from 0 (or
    the lowest value, if negative) to the highest; none or all equal draw a flat line."""
    low = min(0.0, *values) if values else 0.0
    high = max(values) if values else 0.0
    span = high - low
    inner = height - 2 * _PAD

    def y(value: float) -> float:
        return height - _PAD - (inner * (value - low) / span if span else 0.0)

    if len(values) < 2:
        level = y(values[0]) if values else y(0.0)
        points = [(0.0, level), (float(width), level)]
    else:
        step = width / (len(values) - 1)
        points = [(index * step, y(value)) for index, value in enumerate(values)]
    text = " ".join(f"{_n(x)},{_n(y_)}" for x, y_ in points)
    body = f'<polyline class="sparkline-line" fill="none" points="{text}"/>'
    return _svg("sparkline", width, height, label, body)


def _hour_time(hour: int) -> datetime:
    return datetime.fromtimestamp(hour * HOUR_SECONDS, tz=UTC)


def hour_label(hour: int) -> str:
    """Return an epoch hour as "14:00" (UTC)."""
    return f"{_hour_time(hour):%H}:00"


def day_label(hour: int) -> str:
    """Return the UTC day of an epoch hour as "Nov 24"."""
    when = _hour_time(hour)
    return f"{_MONTHS[when.month - 1]} {when.day}"


def hourly_bars(
    counts_by_hour: Mapping[int, int],
    *,
    end_hour: int,
    hours: int,
    label: str,
    width: int = 480,
    height: int = 96,
) -> Markup:
    """Return one bar per hour for the ``hours`` epoch hours ending at ``end_hour``
    (included; a missing hour counts 0), heights in proportion to the largest count.

    The largest count is written top left; under the bars, the first and last hour
    ("14:00", UTC), or past two days the date at the start of each day ("Nov 24").
    """
    first = end_hour - hours + 1
    counts = [max(0, counts_by_hour.get(first + index, 0)) for index in range(hours)]
    top = max(counts, default=0)
    chart_top, chart_bottom = _FONT + 4.0, height - _FONT - 6.0
    inner = chart_bottom - chart_top
    step = width / max(hours, 1)
    gap = 1.0 if step >= 4 else 0.0
    parts = [
        f'<text class="axis-label axis-max" x="0" y="{_FONT}" font-size="{_FONT}">{top:,}</text>',
        f'<line class="axis" x1="0" y1="{_n(chart_bottom)}" x2="{width}" y2="{_n(chart_bottom)}"/>',
    ]
    for index, count in enumerate(counts):
        hour = first + index
        bar = inner * count / top if top else 0.0
        when = f"{day_label(hour)} {hour_label(hour)} UTC"
        parts.append(
            f'<rect class="bar" x="{_n(index * step)}" y="{_n(chart_bottom - bar)}" '
            f'width="{_n(step - gap)}" height="{_n(bar)}"><title>{when}: {count:,}</title></rect>'
        )
    label_y = _n(height - 2.0)
    if hours <= _MAX_HOUR_LABELED:
        ends = [(0.0, "start", first), (float(width), "end", end_hour)]
        parts += [
            f'<text class="axis-label" x="{_n(x)}" y="{label_y}" font-size="{_FONT}" '
            f'text-anchor="{anchor}">{hour_label(hour)}</text>'
            for x, anchor, hour in ends
        ]
    else:
        parts += [
            f'<text class="axis-label" x="{_n(index * step)}" y="{label_y}" '
            f'font-size="{_FONT}">{day_label(first + index)}</text>'
            for index in range(hours)
            if (first + index) % 24 == 0 and index * step + 40 <= width
        ]
    return _svg("hourly-bars", width, height, label, "".join(parts))


def funnel_bars(
    steps: Sequence[tuple[str, int]],
    *,
    label: str,
    width: int = 420,
    row_height: int = 22,
    name_width: int = 120,
) -> Markup:
    """Return a horizontal bar per step, in order, lengths in proportion to the largest
    count: the step's name on the left, its count (and its share of the first step's)
    after the bar."""
    top = max((count for _, count in steps), default=0)
    first = steps[0][1] if steps else 0
    room = width - name_width - 90.0  # what the count text after the longest bar needs
    height = max(1, len(steps)) * row_height
    parts: list[str] = []
    for index, (name, count) in enumerate(steps):
        y = index * row_height
        length = room * count / top if top > 0 else 0.0
        share = f" ({count / first:.0%})" if index and first > 0 else ""
        middle = _n(y + row_height / 2 + _FONT / 3)
        parts.append(
            f'<g class="step"><title>{escape(name)}: {count:,}{share}</title>'
            f'<text class="step-name" x="{name_width - 6}" y="{middle}" font-size="{_FONT}" '
            f'text-anchor="end">{escape(_short(name))}</text>'
            f'<rect class="bar" x="{name_width}" y="{_n(y + 3)}" width="{_n(length)}" '
            f'height="{row_height - 6}"/>'
            f'<text class="step-count" x="{_n(name_width + length + 4)}" y="{middle}" '
            f'font-size="{_FONT}">{count:,}{share}</text></g>'
        )
    return _svg("funnel-bars", width, height, label, "".join(parts))


def _short(name: str, limit: int = 20) -> str:
    """Return ``name`` cut to fit the name column (the step's title holds it whole)."""
    return name if len(name) <= limit else name[: limit - 1] + "…"
