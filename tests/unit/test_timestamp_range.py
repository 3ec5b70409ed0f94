"""Every accepted timestamp is within years 0001..9999, the range that formats back:
an offset cannot carry a date at either end outside it."""

from __future__ import annotations

import pytest

from engine.core.timestamps import MAX_EPOCH_MS, MIN_EPOCH_MS, format_timestamp, parse_timestamp
from engine.errors import InvalidRecord


@pytest.mark.parametrize(
    "text",
    [
        "0001-01-01T00:00:00+01:00",  # 0000-12-31T23:00Z
        "0001-01-01T00:59:59.999+01:00",
        "9999-12-31T23:59:59-05:00",  # 10000-01-01T04:59:59Z
        "9999-12-31T23:30:00.000-00:31",
    ],
)
def test_an_offset_past_either_end_is_refused(text: str) -> None:
    with pytest.raises(InvalidRecord) as raised:
        parse_timestamp(text)
    assert raised.value.reason == "invalid_timestamp"


@pytest.mark.parametrize(
    ("text", "millis"),
    [
        ("0001-01-01T01:00:00+01:00", MIN_EPOCH_MS),
        ("9999-12-31T22:59:59.999-01:00", MAX_EPOCH_MS),
    ],
)
def test_the_ends_themselves_are_accepted_and_format_back(text: str, millis: int) -> None:
    assert parse_timestamp(text) == millis
    assert parse_timestamp(format_timestamp(millis)) == millis
