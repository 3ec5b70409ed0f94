"""The console's server-drawn SVG charts."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from markupsafe import Markup

from engine.console.charts import day_label, funnel_bars, hour_label, hourly_bars, sparkline

SVG = "{http://www.w3.org/2000/svg}"
# 2026-11-24T00:00:00Z as an epoch hour.
NOV_24 = int(datetime(2026, 11, 24, tzinfo=UTC).timestamp()) // 3600


def parse(chart: Markup) -> ET.Element:
    assert isinstance(chart, Markup)
    assert "<script" not in chart
    root = ET.fromstring(str(chart))
    assert root.tag == f"{SVG}svg"
    width, height = root.get("width"), root.get("height")
    assert root.get("viewBox") == f"0 0 {width} {height}"
    return root


def title(root: ET.Element) -> str | None:
    return root.findtext(f"{SVG}title")


def bars(root: ET.Element) -> list[ET.Element]:
    return root.findall(f".//{SVG}rect[@class='bar']")


def texts(root: ET.Element) -> list[str]:
    return [node.text or "" for node in root.iter(f"{SVG}text")]


CHARTS: list[Callable[[str], Markup]] = [
    lambda label: sparkline([1, 2, 3], label=label),
    lambda label: hourly_bars({}, end_hour=NOV_24, hours=24, label=label),
    lambda label: funnel_bars([(label, 3)], label=label),
]


@pytest.mark.parametrize("draw", CHARTS)
def test_labels_are_escaped(draw: Callable[[str], Markup]) -> None:
    chart = draw('<script>alert("x")</script> & co')
    assert "<script>" not in chart
    assert "&lt;script&gt;" in chart
    root = parse(chart)
    assert title(root) == '<script>alert("x")</script> & co'
    assert root.get("aria-label") == title(root)


def points(root: ET.Element) -> list[tuple[float, float]]:
    line = root.find(f"{SVG}polyline")
    assert line is not None
    pairs = (pair.split(",") for pair in (line.get("points") or "").split())
    return [(float(x), float(y)) for x, y in pairs]


def test_sparkline_scales_to_the_box() -> None:
    root = parse(sparkline([0, 5, 10], width=100, height=22, label="trend"))
    assert root.get("class") == "chart sparkline"
    assert points(root) == [(0, 21), (50, 11), (100, 1)]


@pytest.mark.parametrize("values", [[], [0, 0, 0], [7], [3, 3]])
def test_sparkline_without_variation_is_a_flat_line(values: list[float]) -> None:
    drawn = points(parse(sparkline(values, label="flat")))
    assert len({y for _, y in drawn}) == 1
    assert drawn[0][0] == 0 and drawn[-1][0] == 120


def test_hourly_bars_one_per_hour_in_proportion() -> None:
    end = NOV_24 + 23
    counts = {end: 40, end - 1: 10, end - 23: 20, end - 24: 999, end + 1: 999}
    root = parse(hourly_bars(counts, end_hour=end, hours=24, label="per hour"))
    drawn = bars(root)
    assert len(drawn) == 24
    heights = [float(bar.get("height") or 0) for bar in drawn]
    assert heights[-1] > 0
    assert heights[-2] == pytest.approx(heights[-1] / 4, abs=0.01)
    assert heights[0] == pytest.approx(heights[-1] / 2, abs=0.01)
    assert heights[1:-2] == [0] * 21
    # Bars stand on one baseline, left to right.
    bottoms = {float(bar.get("y") or 0) + float(bar.get("height") or 0) for bar in drawn}
    assert len(bottoms) == 1
    xs = [float(bar.get("x") or 0) for bar in drawn]
    assert xs == sorted(xs)
    assert texts(root) == ["40", "00:00", "23:00"]
    assert drawn[-1].findtext(f"{SVG}title") == "Nov 24 23:00 UTC: 40"


def test_hourly_bars_over_a_week_label_days() -> None:
    end = NOV_24 + 7 * 24 - 1
    root = parse(hourly_bars({end: 1}, end_hour=end, hours=168, label="week"))
    assert len(bars(root)) == 168
    assert texts(root)[1:] == [
        "Nov 24",
        "Nov 25",
        "Nov 26",
        "Nov 27",
        "Nov 28",
        "Nov 29",
        "Nov 30",
    ]


def test_hourly_bars_without_counts() -> None:
    root = parse(hourly_bars({}, end_hour=NOV_24, hours=3, label="none"))
    assert [float(bar.get("height") or 0) for bar in bars(root)] == [0, 0, 0]
    assert texts(root)[0] == "0"


def test_hour_and_day_labels() -> None:
    assert hour_label(NOV_24 + 14) == "14:00"
    assert day_label(NOV_24 + 14) == "Nov 24"


def test_funnel_bars_name_and_count_each_step() -> None:
    steps = [("delivered", 200), ("shown", 100), ("clicked", 0), ("a" * 40, 50)]
    root = parse(funnel_bars(steps, label="funnel"))
    drawn = bars(root)
    assert len(drawn) == 4
    widths = [float(bar.get("width") or 0) for bar in drawn]
    assert widths[1] == pytest.approx(widths[0] / 2, abs=0.01)
    assert widths[2] == 0
    assert widths[3] == pytest.approx(widths[0] / 4, abs=0.01)
    assert texts(root) == [
        "delivered",
        "200",
        "shown",
        "100 (50%)",
        "clicked",
        "0 (0%)",
        "a" * 19 + "…",
        "50 (25%)",
    ]
    # The whole name stays in the step's title.
    assert [group.findtext(f"{SVG}title") for group in root.iter(f"{SVG}g")][-1] == (
        "a" * 40 + ": 50 (25%)"
    )


def test_funnel_bars_without_steps_or_counts() -> None:
    assert bars(parse(funnel_bars([], label="empty"))) == []
    zero = parse(funnel_bars([("delivered", 0)], label="zero"))
    assert [bar.get("width") for bar in bars(zero)] == ["0"]
