"""Timestamp parsing (RFC 3339 with offset, epoch ms) and fast UTC formatting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from engine.core.timestamps import MAX_EPOCH_MS, MIN_EPOCH_MS, format_timestamp, parse_timestamp
from engine.errors import InvalidRecord

# 2026-11-23T10:00:00Z, computed independently of the parser.
TEN_O_CLOCK_MS = int(datetime(2026, 11, 23, 10, tzinfo=UTC).timestamp()) * 1000


@pytest.mark.parametrize(
    ("text", "expected_ms"),
    [
        ("2026-11-23T10:00:00Z", TEN_O_CLOCK_MS),
        ("2026-11-23T10:00:00z", TEN_O_CLOCK_MS),
        ("2026-11-23t10:00:00Z", TEN_O_CLOCK_MS),
        ("2026-11-23 10:00:00Z", TEN_O_CLOCK_MS),
        ("2026-11-23T11:00:00.5+01:00", TEN_O_CLOCK_MS + 500),
        ("2026-11-23T05:30:00.123-04:30", TEN_O_CLOCK_MS + 123),
        ("2026-11-23T10:00:00+00:00", TEN_O_CLOCK_MS),
        ("2026-11-23T10:00:00-00:00", TEN_O_CLOCK_MS),
        ("2026-11-23T10:00:00.0009Z", TEN_O_CLOCK_MS),  # sub-millisecond digits are floored
        ("2026-11-23T10:00:00.999999999Z", TEN_O_CLOCK_MS + 999),
        ("2026-11-23T10:00:00.999999999+01:00", TEN_O_CLOCK_MS - 3_600_000 + 999),
        ("2026-11-23T09:59:60Z", TEN_O_CLOCK_MS),  # leap second reads as the next second
        ("1970-01-01T00:00:00Z", 0),
        ("1969-12-31T23:59:59.999Z", -1),
    ],
)
def test_parse_rfc3339(text: str, expected_ms: int) -> None:
    assert parse_timestamp(text) == expected_ms


@pytest.mark.parametrize("millis", [0, 1, -1, TEN_O_CLOCK_MS, MIN_EPOCH_MS, MAX_EPOCH_MS])
def test_parse_epoch_ms(millis: int) -> None:
    assert parse_timestamp(millis) == millis


@pytest.mark.parametrize(
    "value",
    [
        "2026-11-23T10:00:00",  # no offset
        "2026-11-23",
        "2026-11-23T10:00Z",  # no seconds
        "20261123T100000Z",  # ISO basic format is not RFC 3339
        "2026-W47-1T10:00:00Z",
        "2026-11-23T10:00:00+0100",
        "2026-11-23T10:00:00+01:00:30",
        "2026-11-23T10:00:00,5Z",
        "2026-11-23T10:00:00.Z",
        "2026-11-23T10:00:00.+01:00",
        "2026-11-23T10:00:00+01:60",
        "2026-11-23T10:00:00+01",
        "2026-02-30T10:00:00Z",
        "2026-11-23T24:00:00Z",
        "2026-11-23T10:60:00Z",
        "2026-11-23T10:00:00+24:00",
        "2026-11-23T10:00:00Z ",
        "",
        "yesterday",
        MAX_EPOCH_MS + 1,
        MIN_EPOCH_MS - 1,
        True,
        1.5e12,
        None,
        ["2026-11-23T10:00:00Z"],
    ],
)
def test_parse_rejects(value: object) -> None:
    with pytest.raises(InvalidRecord) as raised:
        parse_timestamp(value)
    assert raised.value.reason == "invalid_timestamp"


@pytest.mark.parametrize(
    ("millis", "text"),
    [
        (0, "1970-01-01T00:00:00.000Z"),
        (-1, "1969-12-31T23:59:59.999Z"),
        (TEN_O_CLOCK_MS + 4 * 3_600_000 + 123, "2026-11-23T14:00:00.123Z"),
        (MAX_EPOCH_MS, "9999-12-31T23:59:59.999Z"),
        (MIN_EPOCH_MS, "0001-01-01T00:00:00.000Z"),
    ],
)
def test_format(millis: int, text: str) -> None:
    assert format_timestamp(millis) == text


def test_format_matches_datetime_over_many_days() -> None:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    for step in range(2_000):
        millis = step * 987_654_321_7 - 10**13
        reference = epoch + timedelta(milliseconds=millis)
        assert format_timestamp(millis) == reference.strftime("%Y-%m-%dT%H:%M:%S.") + (
            f"{millis % 1000:03d}Z"
        )


def test_round_trip() -> None:
    for millis in range(-5_000_000_007, 5_000_000_007, 99_999_989):
        assert parse_timestamp(format_timestamp(millis)) == millis
