"""Schedules: local-time bounds, daily hours, zones and wall clocks."""

from __future__ import annotations

from typing import Any

import pytest

from engine.core.local_time import load_zone, user_zone, wall_clock_ms
from engine.core.schedule import compile_schedule
from engine.core.timestamps import parse_timestamp
from engine.errors import InvalidRecord

UTC = load_zone("UTC")
PARIS = load_zone("Europe/Paris")


def _wall(text: str) -> int:
    return parse_timestamp(text + "Z")


@pytest.mark.parametrize("name", ["Mars/Olympus", "", "../etc/passwd", "America", "/abs", "utc"])
def test_unknown_zones_load_as_none(name: str) -> None:
    assert load_zone(name) is None


def test_zone_objects_are_cached() -> None:
    assert load_zone("Europe/Paris") is load_zone("Europe/Paris")


def test_zone_precedence_device_then_profile_then_default() -> None:
    assert UTC is not None and PARIS is not None
    tokyo = {"timezone": "Asia/Tokyo"}
    assert user_zone({"timezone": "Europe/Paris"}, tokyo, UTC) is PARIS
    assert user_zone({"timezone": "Nope/Nope"}, tokyo, UTC).key == "Asia/Tokyo"
    assert user_zone({"timezone": 5}, {}, UTC) is UTC
    assert user_zone(None, {"timezone": "Nope/Nope"}, PARIS) is PARIS


def test_wall_clock_follows_daylight_saving() -> None:
    assert PARIS is not None
    winter = parse_timestamp("2026-01-15T12:00:00Z")
    summer = parse_timestamp("2026-07-15T12:00:00Z")
    assert wall_clock_ms(winter, PARIS) == _wall("2026-01-15T13:00:00")
    assert wall_clock_ms(summer, PARIS) == _wall("2026-07-15T14:00:00")
    # 2026-03-29: clocks jump from 02:00 to 03:00 in Paris.
    assert wall_clock_ms(parse_timestamp("2026-03-29T01:00:00Z"), PARIS) == _wall(
        "2026-03-29T03:00:00"
    )


def test_local_bounds_compare_wall_clock_times() -> None:
    schedule = compile_schedule(
        {"start": "2026-12-01T09:00:00", "end": "2026-12-24T18:00:00", "local_time": True}
    )
    clock = schedule.clock
    assert clock is not None and clock.local_time
    assert schedule.start_ms is None and schedule.end_ms is None
    assert not clock.holds(_wall("2026-12-01T08:59:59.999"))
    assert clock.holds(_wall("2026-12-01T09:00:00"))
    assert not clock.holds(_wall("2026-12-24T18:00:00"))
    assert schedule.start_order_ms == _wall("2026-12-01T09:00:00")


@pytest.mark.parametrize(
    ("hours", "inside", "outside"),
    [
        ({"from": "09:00", "to": "18:00"}, ["09:00", "17:59"], ["08:59", "18:00", "23:00"]),
        (
            {"from": "22:00", "to": "06:00"},
            ["22:00", "23:59", "00:00", "05:59"],
            ["06:00", "12:00"],
        ),
    ],
)
def test_daily_hours(hours: dict[str, str], inside: list[str], outside: list[str]) -> None:
    clock = compile_schedule({"hours": hours}).clock
    assert clock is not None and not clock.local_time
    for time in inside:
        assert clock.holds(_wall(f"2026-11-23T{time}:00")), time
    for time in outside:
        assert not clock.holds(_wall(f"2026-11-23T{time}:00")), time


def test_common_schedule_has_no_clock() -> None:
    assert compile_schedule({"start": "2026-01-01T00:00:00Z", "end": None}).clock is None
    assert compile_schedule({}).clock is None


@pytest.mark.parametrize(
    ("spec", "mentions"),
    [
        ({"start": "2026-12-01T09:00:00+01:00", "local_time": True}, "without offset"),
        ({"start": "2026-12-01T09:00:00Z", "local_time": True}, "without offset"),
        ({"start": "2026-12-01T09:00:00"}, "schedule start"),
        ({"start": "2026-13-01T09:00:00", "local_time": True}, "schedule start"),
        (
            {"start": "2026-12-02T00:00:00", "end": "2026-12-01T00:00:00", "local_time": True},
            "before end",
        ),
        ({"hours": {"from": "9:00", "to": "18:00"}}, "HH:MM"),
        ({"hours": {"from": "24:00", "to": "18:00"}}, "HH:MM"),
        ({"hours": {"from": "10:00", "to": "10:00"}}, "must differ"),
        ({"hours": "09:00-18:00"}, "object"),
        ({"local_time": "yes"}, "boolean"),
    ],
)
def test_bad_schedules_are_refused(spec: dict[str, Any], mentions: str) -> None:
    with pytest.raises(InvalidRecord) as raised:
        compile_schedule(spec)
    assert raised.value.reason == "invalid_engagement"
    assert mentions in raised.value.detail
