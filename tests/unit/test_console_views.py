"""What the console's pages say of an engagement: schedule, trigger, last 24 hours, audience."""

from __future__ import annotations

from engine.console.views import (
    audience_estimate,
    known_users,
    last_day,
    matches,
    schedule_text,
    trigger_text,
)

HOUR_MS = 3_600_000
NOW_MS = 493_200 * HOUR_MS + 1_000  # in the hour 493200


def test_schedules_are_shown_as_written_offset_and_all() -> None:
    assert schedule_text({"schedule": {"start": None, "end": None}}) == "always"
    engagement = {
        "schedule": {
            "start": "2026-12-01T09:00:00+05:30",
            "end": "2026-12-31T23:59:59.250Z",
            "hours": {"from": "08:00", "to": "20:00"},
        }
    }
    assert schedule_text(engagement) == (
        "from 2026-12-01 09:00:00+05:30 until 2026-12-31 23:59:59.250Z 08:00-20:00 daily"
    )
    local = {"schedule": {"start": "2026-12-01T09:00:00", "end": None, "local_time": True}}
    assert schedule_text(local) == "from 2026-12-01 09:00:00 (user's local time)"


def test_triggers_in_words() -> None:
    assert trigger_text({"trigger": {"event": "session_start"}}) == "session_start"
    custom = {
        "trigger": {
            "event": "custom",
            "name": "checkout",
            "where": [{"property": "total", "op": "gt", "value": 50}],
            "delay_seconds": 600,
        }
    }
    assert trigger_text(custom) == "custom: checkout (1 condition), after 10 min"


def test_the_last_day_sums_the_24_hours_up_to_the_one_under_way() -> None:
    figures = {
        "activity_hours": {
            str(493_200): {"deliveries": 2, "clicks": 1},
            str(493_200 - 23): {"deliveries": 5},
            str(493_200 - 24): {"deliveries": 100},  # a day ago: out
        }
    }
    day = last_day(figures, NOW_MS)
    assert day.totals == {"deliveries": 7, "impressions": 0, "clicks": 1, "conversions": 0}
    assert day.hourly["deliveries"][0] == 5 and day.hourly["deliveries"][-1] == 2
    assert len(day.hourly["deliveries"]) == 24
    assert last_day(None, NOW_MS).totals["deliveries"] == 0


def test_search_by_words_of_the_name_and_filter_by_status() -> None:
    record = {"engagement": {"id": "spring-sale", "name": "Spring Sale 2026", "status": "active"}}
    assert matches(record, "", "sale spring")
    assert matches(record, "active", "SPRING")
    assert not matches(record, "paused", "")
    assert not matches(record, "", "winter")


def test_the_audience_estimate_uses_the_measured_segment_or_says_it_has_none() -> None:
    segment = {"known_users": 1000, "audience_users": 400, "kept_users": 200}
    assert audience_estimate({"segment": segment}, 1000, 50) == (
        "400 of 1,000 known users match the filters as saved; at 50% about 200 would be reached"
    )
    assert "1,000 users known; at 10% about 100 before filters" in audience_estimate(None, 1000, 10)
    assert "no user figures yet" in audience_estimate(None, None, 10)
    assert known_users({"a": {"segment": segment}, "b": {"segment": None}}) == 1000
    assert known_users({}) is None
