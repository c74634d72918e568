"""import-log's fast timestamp parser gives what parse_time (datetime.strptime) gives."""

from __future__ import annotations

import json
from datetime import UTC

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ketenmonitor.eventlog_import import TimeParser, TimestampSpec, parse_time

FORMATS = ["%d-%m-%Y %H:%M", "%Y-%m-%d %H:%M:%S", "%d/%m/%Y", "%Y%m%d%H%M%S", "%d %b %Y %H:%M"]


def outcome(call, *args):
    try:
        return ("ok", call(*args).isoformat())
    except ValueError as exc:
        return ("error", str(exc))


cells = st.one_of(
    st.builds(
        "{:02d}-{:02d}-{:04d} {:02d}:{:02d}".format,
        st.integers(0, 32),
        st.integers(0, 13),
        st.integers(1, 9999),
        st.integers(0, 25),
        st.integers(0, 61),
    ),
    st.builds(
        "{}-{}-{} {}:{}:{}".format,
        st.integers(0, 2100),
        st.integers(0, 13),
        st.integers(0, 32),
        st.integers(0, 25),
        st.integers(0, 61),
        st.integers(0, 62),
    ),
    st.text(alphabet="0123456789-/: T", max_size=22),
    st.sampled_from(
        [
            "08-01-2024 09:15",
            " 8-1-2024 9:15 ",
            "31-03-2024 02:30",
            "27-10-2024 02:30",
            "29-02-2023 10:00",
            "29-02-2024 10:00",
            "01 Jan 2024 10:00",
            # Lord Howe Island moves its clocks by half an hour at 02:00 local time: hours with a
            # change, whose offset the fast parser must find per time, not once per hour.
            "07-04-2024 01:15",
            "07-04-2024 01:45",
            "06-10-2024 02:15",
            "06-10-2024 02:45",
            "",
        ]
    ),
)


@settings(max_examples=1500, deadline=None)
@given(
    fmt=st.sampled_from(FORMATS),
    zone=st.sampled_from(["Europe/Amsterdam", "UTC", "Australia/Lord_Howe"]),
    cell=cells,
)
def test_the_fast_parser_equals_strptime(fmt, zone, cell):
    spec = TimestampSpec(column="t", format=fmt, timezone=zone)
    parser = TimeParser(spec)
    expected = outcome(parse_time, cell, spec)
    assert outcome(parser, cell) == expected
    assert outcome(parser, cell) == expected  # and again, from its cache


@pytest.mark.parametrize("zone", ["Europe/Amsterdam", "Australia/Lord_Howe", "America/St_Johns"])
def test_every_minute_of_two_years_equals_strptime_after_the_hour_offsets_are_cached(zone):
    # Every 7th local minute of 2024 (both DST switches of the year, every minute of an
    # hour over the weeks) in one parser, so that most come through the offset kept for their hour.
    from datetime import datetime, timedelta

    spec = TimestampSpec(column="t", format="%d-%m-%Y %H:%M", timezone=zone)
    parser = TimeParser(spec)
    at, end = datetime(2024, 1, 1), datetime(2025, 1, 1)
    while at < end:
        cell = at.strftime("%d-%m-%Y %H:%M")
        assert parser(cell) == parse_time(cell, spec), cell
        at += timedelta(minutes=7)
    assert 0 < len(parser._offsets) <= 366 * 24
    assert 0 < len(parser._hours) <= len(parser._offsets)  # most came as hour start + minutes


@pytest.mark.parametrize(
    ("fmt", "fast"), [("%d-%m-%Y %H:%M", True), ("%d %b %Y %H:%M", False), (None, False)]
)
def test_simple_formats_take_the_fast_path(fmt, fast):
    assert (TimeParser(TimestampSpec(column="t", format=fmt))._regex is not None) == fast


@settings(max_examples=500, deadline=None)
@given(at=st.datetimes(timezones=st.just(UTC)))
def test_orjson_writes_an_imported_time_as_isoformat_did(at):
    # import_rows hands the UTC datetime to orjson instead of calling isoformat() itself.
    assert orjson.dumps(at) == json.dumps(at.isoformat()).encode()


# Cells that share their local hour often (the fast parser keeps an hour's start in UTC and adds
# the minutes): days around both DST switches of 2024, and the first and last hours of the
# calendar, where the hour's start or its times fall outside years 1-9999 in UTC.
same_hours = st.builds(
    "{:02d}-{:02d}-{:04d} {:02d}:{:02d}".format,
    st.sampled_from([1, 6, 7, 27, 31]),
    st.sampled_from([1, 3, 4, 10, 12]),
    st.sampled_from([1, 2024, 9999]),
    st.integers(0, 3) | st.just(23),
    st.integers(0, 61),
)


@settings(max_examples=400, deadline=None)
@given(
    fmt=st.sampled_from(["%d-%m-%Y %H:%M", "%d-%m-%Y"]),
    zone=st.sampled_from(["Europe/Amsterdam", "America/St_Johns", "Australia/Lord_Howe"]),
    cells=st.lists(same_hours | st.builds("{:02d}-{:02d}-{:04d}".format,
                                          st.integers(1, 3), st.just(1), st.just(1)), max_size=40),
)
def test_one_parser_over_many_cells_of_the_same_hours_equals_strptime(fmt, zone, cells):
    spec = TimestampSpec(column="t", format=fmt, timezone=zone)
    parser = TimeParser(spec)
    for cell in cells:
        assert outcome(parser, cell) == outcome(parse_time, cell, spec), cell
