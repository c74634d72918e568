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
            "",
        ]
    ),
)


@settings(max_examples=1500, deadline=None)
@given(fmt=st.sampled_from(FORMATS), zone=st.sampled_from(["Europe/Amsterdam", "UTC"]), cell=cells)
def test_the_fast_parser_equals_strptime(fmt, zone, cell):
    spec = TimestampSpec(column="t", format=fmt, timezone=zone)
    parser = TimeParser(spec)
    expected = outcome(parse_time, cell, spec)
    assert outcome(parser, cell) == expected
    assert outcome(parser, cell) == expected  # and again, from its cache


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
