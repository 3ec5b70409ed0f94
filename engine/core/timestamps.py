"""Parse event timestamps to epoch milliseconds and format them back as RFC 3339 UTC.

Accepted inputs: an RFC 3339 string carrying an offset (``Z``, ``z`` or ``±HH:MM``) or an
integer number of epoch milliseconds. Sub-millisecond digits are truncated (floored), so
parsing is exact and never rounds a timestamp into the next millisecond. A leap second
(``:60``) is read as the first instant of the following second, as Unix time does.
Anything else raises ``InvalidRecord("invalid_timestamp", ...)``.

Input records are stricter: their timestamps are read by ``rfc3339_ms``, which accepts
exactly what the schemas' ``rfc3339`` definition does (its pattern and ``date-time``).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Final

from engine.errors import InvalidRecord

# Years 0001..9999: the range datetime can represent, so every accepted value formats back.
MIN_EPOCH_MS = -62_135_596_800_000
MAX_EPOCH_MS = 253_402_300_799_999

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)
_MS_PER_DAY = 86_400_000
_EPOCH_ORDINAL = 719_163  # date(1970, 1, 1).toordinal()

# Strict RFC 3339 grammar, used only when the fast path declines a string.
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:[Zz]|([+-])(\d{2}):(\d{2}))\Z",
    re.ASCII,
)


def parse_timestamp(value: object) -> int:
    """Return ``value`` as epoch milliseconds or raise ``InvalidRecord``."""
    if value.__class__ is int:
        millis: int = value
        if MIN_EPOCH_MS <= millis <= MAX_EPOCH_MS:
            return millis
        raise InvalidRecord("invalid_timestamp", f"epoch milliseconds out of range: {millis}")
    if isinstance(value, str):
        return _parse_string(value)
    # bool is an int subclass but never a timestamp; floats are not integer milliseconds.
    raise InvalidRecord(
        "invalid_timestamp", f"expected RFC 3339 string or epoch ms, got {type(value).__name__}"
    )


def _parse_string(text: str) -> int:
    # fromisoformat is C-fast but lenient (basic format, week dates, no seconds, empty
    # fraction, offset minute 60), so only hand it strings that already have the RFC 3339
    # shape; the rest go to the strict regex.
    if (
        len(text) >= 20
        and text[4] == "-"
        and text[7] == "-"
        and text[10] == "T"
        and text[13] == ":"
        and text[16] == ":"
        and (text[19] in "Z+-" or (text[19] == "." and "0" <= text[20] <= "9"))
        and (text[-1] == "Z" or (text[-6] in "+-" and text[-3] == ":" and text[-2] <= "5"))
    ):
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            pass  # e.g. a leap second: let the strict parser decide
        else:
            if parsed.tzinfo is not None:
                millis: int = (parsed - _EPOCH) // _ONE_MS
                # The offset can carry a date of year 1 or 9999 outside what formats back.
                if MIN_EPOCH_MS <= millis <= MAX_EPOCH_MS:
                    return millis
                raise InvalidRecord("invalid_timestamp", f"out of range: {text!r}")
    return _parse_strict(text)


def _parse_strict(text: str) -> int:
    match = _RFC3339.match(text)
    if match is None:
        raise InvalidRecord("invalid_timestamp", f"not an RFC 3339 timestamp with offset: {text!r}")
    year, month, day, hour, minute, second, fraction, sign, off_hour, off_minute = match.groups()
    try:
        days = date(int(year), int(month), int(day)).toordinal() - _EPOCH_ORDINAL
    except ValueError as exc:
        raise InvalidRecord("invalid_timestamp", f"{exc}: {text!r}") from None
    hours, minutes, seconds = int(hour), int(minute), int(second)
    if hours > 23 or minutes > 59 or seconds > 60:
        raise InvalidRecord("invalid_timestamp", f"time of day out of range: {text!r}")
    millis = (((days * 24 + hours) * 60 + minutes) * 60 + seconds) * 1000
    if fraction:
        millis += int((fraction + "00")[:3])
    if sign is not None:
        offset_hours, offset_minutes = int(off_hour), int(off_minute)
        if offset_hours > 23 or offset_minutes > 59:
            raise InvalidRecord("invalid_timestamp", f"offset out of range: {text!r}")
        offset_ms = (offset_hours * 60 + offset_minutes) * 60_000
        millis = millis - offset_ms if sign == "+" else millis + offset_ms
    if not MIN_EPOCH_MS <= millis <= MAX_EPOCH_MS:
        raise InvalidRecord("invalid_timestamp", f"out of range: {text!r}")
    return millis


# schemas/common.schema.json#/$defs/rfc3339's pattern, with \Z for $: Python's $ also
# matches before a final newline, which the schema's regex refuses.
RFC3339_PATTERN: Final = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
    r"(Z|[+-][0-9]{2}:[0-9]{2})\Z"
)
_LEAP_MINUTE = 23 * 60 + 59  # a leap second is only ever 23:59:60 UTC


def rfc3339_ms(text: str, *, bounded: bool = True) -> int:
    """Return epoch milliseconds of ``text``, a string matching ``RFC3339_PATTERN``.

    Raise ``InvalidRecord("invalid_timestamp", ...)`` when its date or time does not exist
    (JSON Schema's ``date-time``: a leap second only at 23:59:60 UTC), or, if ``bounded``,
    when it falls outside years 0001..9999 UTC, the one limit the engine adds to the
    schema (for the instants it computes with and formats back).
    """
    # fromisoformat is C-fast and, on this shape, exact; it takes an offset minute of 60
    # as the next hour and refuses a leap second or year 0, which _rfc3339_exact decides.
    if text[17:19] != "60" and (text[-1] == "Z" or text[-2] <= "5"):
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            pass
        else:
            millis: int = (parsed - _EPOCH) // _ONE_MS
            return _in_range(millis, text) if bounded else millis
    millis = _rfc3339_exact(text)
    return _in_range(millis, text) if bounded else millis


def _rfc3339_exact(text: str) -> int:
    year, month, day = int(text[0:4]), int(text[5:7]), int(text[8:10])
    hour, minute, second = int(text[11:13]), int(text[14:16]), int(text[17:19])
    offset = 0
    if text[-1] != "Z":
        off_hour, off_minute = int(text[-5:-3]), int(text[-2:])
        if off_hour > 23 or off_minute > 59:
            raise InvalidRecord("invalid_timestamp", f"offset out of range: {text!r}")
        offset = (off_hour * 60 + off_minute) * (1 if text[-6] == "+" else -1)
    if not (1 <= month <= 12 and 1 <= day <= _days_in_month(year, month)):
        raise InvalidRecord("invalid_timestamp", f"no such date: {text!r}")
    if hour > 23 or minute > 59 or second > 60:
        raise InvalidRecord("invalid_timestamp", f"time of day out of range: {text!r}")
    if second == 60 and (hour * 60 + minute - offset) % 1440 != _LEAP_MINUTE:
        raise InvalidRecord("invalid_timestamp", f"a leap second not at 23:59:60 UTC: {text!r}")
    fraction = text[20 : len(text) - (1 if text[-1] == "Z" else 6)]
    days = _days_from_civil(year, month, day)
    millis = (((days * 24 + hour) * 60 + minute - offset) * 60 + second) * 1000
    if text[19] == ".":
        millis += int((fraction + "00")[:3])
    return millis


def _in_range(millis: int, text: str) -> int:
    if MIN_EPOCH_MS <= millis <= MAX_EPOCH_MS:
        return millis
    raise InvalidRecord("invalid_timestamp", f"outside years 0001..9999 UTC: {text!r}")


def _days_in_month(year: int, month: int) -> int:
    if month == 2:
        return 29 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28
    return 30 if month in (4, 6, 9, 11) else 31


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date, year 0 included (datetime's
    range starts at year 1, but an offset can bring 0000-12-31 into it)."""
    year -= month <= 2
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146_097 + day_of_era - 719_468


# Events arrive clustered in time, so a few cached days serve nearly every call.
DATE_PREFIX_CACHE_SIZE = 64


@lru_cache(maxsize=DATE_PREFIX_CACHE_SIZE)
def _date_prefix(days: int) -> str:
    day = date.fromordinal(days + _EPOCH_ORDINAL)
    return f"{day.year:04d}-{day.month:02d}-{day.day:02d}T"


def format_timestamp(ms: int) -> str:
    """Format epoch milliseconds as ``YYYY-MM-DDTHH:MM:SS.mmmZ``."""
    days, in_day = divmod(ms, _MS_PER_DAY)
    seconds, millis = divmod(in_day, 1000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{_date_prefix(days)}{hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}Z"
