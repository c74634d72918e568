"""Reporting periods: a day, month, quarter or year, or a range of them, in a time zone.

    period = parse_period("2026-10")      # October 2026
    period = parse_period("2026Q3")       # July to September 2026
    period = parse_period("2026")         # the calendar year
    period = parse_period("2026-10-05")   # one day
    period = parse_range("2026-01", "2026Q3")   # from the start of one to the end of the other
    period.start, period.end              # POSIX seconds, half-open [start, end)

The default time zone is Europe/Amsterdam.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_TIMEZONE = "Europe/Amsterdam"
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_QUARTER = re.compile(r"^(\d{4})[Qq]([1-4])$")
_YEAR = re.compile(r"^(\d{4})$")
_DAY = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")


class PeriodError(ValueError):
    """A period that is not YYYY-MM, YYYYQn or YYYY, or an unknown time zone."""


@dataclass(frozen=True, slots=True)
class Period:
    label: str
    start: float
    end: float
    timezone: str

    @property
    def start_date(self) -> str:
        return datetime.fromtimestamp(self.start, ZoneInfo(self.timezone)).date().isoformat()

    @property
    def end_date(self) -> str:
        """The first day after the period."""
        return datetime.fromtimestamp(self.end, ZoneInfo(self.timezone)).date().isoformat()


def parse_period(text: str, timezone: str = DEFAULT_TIMEZONE) -> Period:
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise PeriodError(f"unknown time zone {timezone!r}") from None
    text = text.strip()
    if m := _DAY.match(text):
        try:
            day = datetime(int(m[1]), int(m[2]), int(m[3]), tzinfo=zone)
        except ValueError:
            raise PeriodError(f"no such day {text!r}") from None
        following = datetime.fromordinal(day.toordinal() + 1).replace(tzinfo=zone)
        return Period(text, day.timestamp(), following.timestamp(), timezone)
    if m := _MONTH.match(text):
        year, month = int(m[1]), int(m[2])
        if not 1 <= month <= 12:
            raise PeriodError(f"no month {month} in {text!r}")
        first, months = (year, month), 1
    elif m := _QUARTER.match(text):
        year, quarter = int(m[1]), int(m[2])
        first, months = (year, 3 * quarter - 2), 3
    elif m := _YEAR.match(text):
        first, months = (int(m[1]), 1), 12
    else:
        raise PeriodError(
            f"period {text!r}: use YYYY-MM-DD (day), YYYY-MM (month), YYYYQn (quarter) or YYYY"
        )
    year, month = first
    end_index = year * 12 + month - 1 + months
    start = datetime(year, month, 1, tzinfo=zone)
    end = datetime(end_index // 12, end_index % 12 + 1, 1, tzinfo=zone)
    return Period(text.upper() if "q" in text.lower() else text, start.timestamp(),
                  end.timestamp(), timezone)


def parse_range(first: str, last: str, timezone: str = DEFAULT_TIMEZONE) -> Period:
    """From the start of period `first` to the end of period `last` (both included)."""
    start, end = parse_period(first, timezone), parse_period(last, timezone)
    if end.end <= start.start:
        raise PeriodError(f"range {first!r} to {last!r} ends before it starts")
    return Period(f"{start.label}..{end.label}", start.start, end.end, timezone)
