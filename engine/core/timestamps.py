"""Parse event timestamps to epoch milliseconds and format them back as RFC 3339 UTC.

Accepted inputs: an RFC 3339 string carrying an offset (``Z``, ``z`` or ``±HH:MM``) or an
integer number of epoch milliseconds. Sub-millisecond digits are truncated (floored), so
parsing is exact and never rounds a timestamp into the next millisecond. A leap second
(``:60``) is read as the first instant of the following second, as Unix time does.
Anything else raises ``InvalidRecord("invalid_timestamp", ...)``.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache

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
