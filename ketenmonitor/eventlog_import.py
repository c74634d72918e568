"""Import an existing case event log (CSV or XES) as chain events, with their original times.

    ketenmonitor import-log examples/eventlog/sample_log.csv \\
        --mapping examples/eventlog/mapping.yaml
    ketenmonitor import-log log.csv --mapping mapping.yaml --output events.jsonl   # file, not Kafka

    mapping = load_mapping(Path("mapping.yaml"))
    rows = import_rows(Path("log.csv"), mapping, chain)   # publish.Row objects, in replay order

The mapping file (see examples/eventlog/mapping.yaml, documented in docs/partners.md) says which
column is the case key, the activity and the timestamp (its format and the timezone of timestamps
without an offset), which activity is which milestone (with outcome), which activities to ignore,
how ties between events of a case with the same timestamp are ordered, and which of several rows of
one case with the same milestone counts (`repeated_milestone: first | last`), or that every one is
an occurrence of its own (`all`: the second and later get `occurrence` "2", "3", ... in event time).

Each imported event gets the id `<event_id_prefix><line>` (the row's line in the log, or the event's
position in an XES file): re-importing the same log is harmless (the monitor ignores ids it has
seen), and the id carries nothing about the case. Events are replayed in order of event time, each
checked against the contract like `ketenmonitor publish` does; rows that cannot be mapped are
reported as `file:line: reason: detail` and not sent. The whole log is held in memory (compactly):
fine for logs of a few million rows.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import csv
import gc
import io
import os
import pickle
import re
import signal
import sys
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from pathlib import Path
from typing import Any, Literal, NamedTuple, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ketenmonitor.domain.chain import Chain
from ketenmonitor.publish import (
    PROGRESS_EVERY,
    Problem,
    PublishReport,
    Row,
    add_quiet,
    check_and_send,
    print_problems,
)
from ketenmonitor.schemas.events import EventRejected, check_event


class MappingError(ValueError):
    """The mapping file is invalid or does not fit the chain definition."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TimestampSpec(_Model):
    column: str
    format: str | None = None  # strptime format; None: ISO 8601
    timezone: str = "UTC"  # for timestamps without an offset

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {value!r}") from None
        return value


class AttributeSpec(_Model):
    """A case attribute: one fixed `value`, or a `column` whose cells are translated by `values`."""

    column: str | None = None
    values: dict[str, str] = Field(default_factory=dict)  # log value -> chain id; empty: as is
    value: str | None = None

    def resolve(self, row: dict[str, str]) -> str | None:
        if self.column is None:
            return self.value
        cell = (row.get(self.column) or "").strip()
        if not cell:
            return self.value
        return self.values.get(cell) if self.values else cell


class ActivitySpec(_Model):
    milestone: str
    outcome: str | None = None


class CsvOptions(_Model):
    delimiter: str = ","
    encoding: str = "utf-8"


class Mapping(_Model):
    format: Literal["csv", "xes"] = "csv"
    csv: CsvOptions = CsvOptions()
    case_key: str
    activity: str
    timestamp: TimestampSpec
    case_type: AttributeSpec
    district: AttributeSpec
    activities: dict[str, ActivitySpec | str]
    ignore: list[str] = Field(default_factory=list)
    unknown_activities: Literal["reject", "ignore"] = "reject"
    ties: Literal["file", "chain"] | list[str] = "chain"
    # first | last: one row per case and milestone counts; all: every row is an occurrence of its
    # milestone (an adjourned hearing, an instalment, a loop back), sent with an occurrence id.
    repeated_milestone: Literal["first", "last", "all"] = "first"
    event_id_prefix: str = Field(default="imp-", pattern=r"^[A-Za-z0-9._:-]{0,40}$")

    def activity_spec(self, name: str) -> ActivitySpec | None:
        spec = self.activities.get(name)
        return ActivitySpec(milestone=spec) if isinstance(spec, str) else spec

    def check_against(self, chain: Chain) -> None:
        for name in self.activities:
            spec = self.activity_spec(name)
            assert spec is not None
            m = chain.milestones.get(spec.milestone)
            if m is None:
                raise MappingError(
                    f"activity {name!r} maps to unknown milestone {spec.milestone!r}"
                )
            if m.outcomes and spec.outcome not in m.outcomes:
                raise MappingError(
                    f"activity {name!r}: milestone {spec.milestone!r} needs an outcome of "
                    f"{sorted(m.outcomes)}"
                )
            if not m.outcomes and spec.outcome is not None:
                raise MappingError(f"activity {name!r}: {spec.milestone!r} has no outcomes")
        for attr, known in (("case_type", chain.case_types), ("district", chain.districts)):
            spec = getattr(self, attr)
            for value in [*spec.values.values(), *([spec.value] if spec.value else [])]:
                if value not in known:
                    raise MappingError(f"{attr} maps to unknown {attr} {value!r}")
        if isinstance(self.ties, list):
            unknown = set(self.ties) - set(self.activities)
            if unknown:
                raise MappingError(f"ties names unmapped activities {sorted(unknown)}")


def load_mapping(path: Path, chain: Chain | None = None) -> Mapping:
    try:
        raw: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
        mapping = Mapping.model_validate(raw)
    except OSError as exc:
        raise MappingError(f"{path}: cannot read: {exc}") from exc
    except (yaml.YAMLError, ValidationError) as exc:
        raise MappingError(f"{path}: invalid mapping: {exc}") from None
    if chain is not None:
        try:
            mapping.check_against(chain)
        except MappingError as exc:
            raise MappingError(f"{path}: {exc}") from None
    return mapping


# -- reading logs -----------------------------------------------------------------------------
def read_csv_log(path: Path, mapping: Mapping) -> Iterator[tuple[int, dict[str, str]]]:
    with path.open("r", encoding=mapping.csv.encoding, newline="") as handle:
        reader = csv.DictReader(handle, delimiter=mapping.csv.delimiter)
        before = 1
        for row in reader:
            line, before = before + 1, reader.line_num
            yield line, {k: v for k, v in row.items() if isinstance(k, str)}


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _attributes(element: ET.Element, prefix: str = "") -> dict[str, str]:
    return {
        prefix + child.attrib["key"]: child.attrib.get("value", "")
        for child in element
        if "key" in child.attrib and _local(child.tag) not in ("trace", "event")
    }


def read_xes_log(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """XES: each event with its trace's attributes prefixed `case:` (as pm4py names them)."""
    number = 0
    for _, element in ET.iterparse(path, events=("end",)):
        if _local(element.tag) != "trace":
            continue
        case_attrs = _attributes(element, "case:")
        for event in element:
            if _local(event.tag) == "event":
                number += 1
                yield number, {**case_attrs, **_attributes(event)}
        element.clear()


# -- mapping rows to events -------------------------------------------------------------------
class _Mapped(NamedTuple):  # a named tuple: one per row, cheaper to make than a dataclass
    case_key: str
    milestone: str
    outcome: str | None
    at: datetime
    tie: int
    line: int
    case_type: str
    district: str


def parse_time(value: str, spec: TimestampSpec) -> datetime:
    text = value.strip()
    parsed = datetime.strptime(text, spec.format) if spec.format else datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=ZoneInfo(spec.timezone))
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # 0001-01-01 00:00 in Amsterdam is in year 0 in UTC
        raise ValueError(f"time data {text!r} lies outside the years 1-9999 in UTC") from None


_DIRECTIVE = re.compile(r"%(.)")
_FIELDS = (("Y", 1), ("m", 1), ("d", 1), ("H", 0), ("M", 0), ("S", 0))  # datetime's order


class TimeParser:
    """parse_time for one TimestampSpec, fast: `parser(cell)` equals `parse_time(cell, spec)`.

    datetime.strptime runs ~10 us of Python per call (locale checks, its regex cache). A format
    of %Y %m %d [%H [%M [%S]]] (each once) is matched with the very regex strptime compiles, and
    the datetime built from the groups, less the zone's offset (looked up once per local hour);
    anything else, and every failure (for strptime's own
    message), goes to parse_time. Results are cached per cell: exports repeat timestamps.

    Most cells of a log are distinct (minutes), but their hours are not: once a time of a local
    hour (a day, for a format without hours) with one offset throughout has been built, that
    hour's start in UTC is kept under the cells' own digits for it, and the minutes and seconds
    under theirs, so the next time of that hour is one addition of the two (exact: the same
    datetime as building it; tested). Converting the digits and building the datetime cost
    ~4 us of the ~5 us a cell took.
    """

    def __init__(self, spec: TimestampSpec) -> None:
        self.spec = spec
        self.zone = ZoneInfo(spec.timezone)
        self._cache: dict[str, datetime] = {}
        self._offsets: dict[tuple[int, ...], timedelta] = {}  # local hour -> UTC offset
        # The digits of a local hour (Y, m, d[, H] as written) -> its start in UTC, for hours with
        # one offset throughout; the digits of the minutes and seconds -> their timedelta.
        self._hours: dict[tuple[str, ...], datetime] = {}
        self._within: dict[tuple[str, ...], timedelta] = {}
        self._regex = None
        directives = _DIRECTIVE.findall(spec.format or "")
        # Y, m, d and then H, M, S as far as given, each once: datetime(*those numbers).
        self._names = tuple(d for d, _ in _FIELDS if d in directives)
        self._hour = min(len(self._names), 4)  # the names that fix the hour (the day: 3)
        simple = self._names == tuple(d for d, _ in _FIELDS[: len(self._names)])
        if (
            spec.format
            and simple
            and len(self._names) >= 3
            and sorted(directives) == sorted(self._names)
            and "%%" not in spec.format
        ):
            from _strptime import _TimeRE_cache  # the compiler behind datetime.strptime

            self._regex = _TimeRE_cache.compile(spec.format)

    def __call__(self, value: str) -> datetime:
        found = self._cache.get(value)
        if found is None:
            found = self._parse(value)
            if len(self._cache) >= 200_000:
                self._cache.clear()
            self._cache[value] = found
        return found

    def _parse(self, value: str) -> datetime:
        text = value.strip()
        match = self._regex.match(text) if self._regex is not None else None
        if match is not None and match.end() == len(text):
            digits = match.group(*self._names)
            hour = self._hours.get(digits[: self._hour])
            if hour is not None:
                within = self._within.get(digits[self._hour :])
                if within is not None:
                    try:
                        return hour + within
                    except OverflowError:
                        pass  # let parse_time say it
            try:
                parts = tuple(map(int, digits))
                offset = self._offsets.get(parts[:4])
                if offset is None:
                    offset = self._offset_of(parts)
                at = datetime(*parts, tzinfo=UTC) - offset
            except (ValueError, OverflowError):
                return parse_time(value, self.spec)  # let parse_time say it
            self._keep_hour(digits, parts, offset)
            return at
        return parse_time(value, self.spec)

    def _keep_hour(
        self, digits: tuple[str, ...], parts: tuple[int, ...], offset: timedelta
    ) -> None:
        """Keep the start of the hour of `parts` in UTC and the time since it, after `parts` has
        made a valid datetime (so the minutes and seconds are in range): only for an hour whose
        offset _offset_of kept (one offset throughout), and only where the start is in range."""
        if self._offsets.get(parts[:4]) != offset:
            return
        n = self._hour
        try:
            start = datetime(*parts[:n], tzinfo=UTC) - offset
        except OverflowError:  # the hour starts before year 1 in UTC: build each time
            return
        if len(self._hours) >= 200_000:
            self._hours.clear()
        self._hours[digits[:n]] = start
        rest = parts[n:]
        if digits[n:] not in self._within:
            self._within[digits[n:]] = timedelta(
                minutes=rest[0] if rest else 0, seconds=rest[1] if len(rest) > 1 else 0
            )

    def _offset_of(self, parts: tuple[int, ...]) -> timedelta:
        """The zone's UTC offset at the local time `parts` (fold 0, as replace(tzinfo=) gives).

        Kept for the whole local hour (the day, for a format without hours) when the offset is
        the same at its first and last second: no zone changes its offset twice within an hour,
        so then every time in it has that offset. The offset of an hour with a change (a DST
        switch at half past, as some zones have) is found for each time again.
        """
        zone = self.zone
        offset = datetime(*parts).replace(tzinfo=zone).utcoffset()
        assert offset is not None
        first = datetime(*parts[:4]) if len(parts) >= 4 else datetime(*parts[:3])
        last = first + (timedelta(hours=1) if len(parts) >= 4 else timedelta(days=1))
        last -= timedelta(seconds=1)
        if first.replace(tzinfo=zone).utcoffset() == offset == last.replace(
            tzinfo=zone
        ).utcoffset():
            if len(self._offsets) >= 200_000:
                self._offsets.clear()
            self._offsets[parts[:4]] = offset
        return offset


def _map_row(
    mapping: Mapping,
    chain: Chain,
    line: int,
    row: dict[str, str],
    tie_of: dict[str, int],
    parse: TimeParser | None = None,
    specs: dict[str, ActivitySpec | None] | None = None,
) -> _Mapped | tuple[str, str] | None:
    """A mapped row, a (reason, detail) problem, or None for an ignored activity."""
    activity = (row.get(mapping.activity) or "").strip()
    if activity in mapping.ignore:
        return None
    if specs is None:
        spec = mapping.activity_spec(activity)
    elif activity in specs:
        spec = specs[activity]
    else:
        spec = specs[activity] = mapping.activity_spec(activity)
    if spec is None:
        if mapping.unknown_activities == "ignore":
            return None
        return ("unknown_activity", f"activity {activity!r} is neither mapped nor ignored")
    case_key = (row.get(mapping.case_key) or "").strip()
    if not case_key:
        return ("missing_value", f"no case key in column {mapping.case_key!r}")
    cell = row.get(mapping.timestamp.column) or ""
    try:
        at = parse_time(cell, mapping.timestamp) if parse is None else parse(cell)
    except ValueError as exc:
        return ("bad_timestamp", f"{cell!r}: {exc}")
    attrs = []
    for attr in ("case_type", "district"):
        aspec: AttributeSpec = getattr(mapping, attr)
        value = aspec.resolve(row)
        if value is None:
            cell = row.get(aspec.column or "", "")
            return ("unknown_value", f"{attr} {cell!r} in column {aspec.column!r} is not mapped")
        attrs.append(value)
    if mapping.ties == "file":
        tie = 0
    elif mapping.ties == "chain":
        tie = chain.milestones[spec.milestone].rank
    else:
        tie = tie_of.get(activity, len(tie_of))
    return _Mapped(case_key, spec.milestone, spec.outcome, at, tie, line, attrs[0], attrs[1])


class _CsvRowMapper:
    """_map_row for the rows csv.reader gives (lists), with the mapping compiled once.

    `map_rows` maps a whole log in one loop: an ordinary row becomes the _Mapped that _map_row
    would make; anything else (a problem to report, an unexpected width, a column the header
    lacks) is made into the dict csv.DictReader would make (as_dict) and goes through _map_row, so
    reports stay exactly those of the one definition. csv.DictReader and a dict per row cost
    ~3 us a row at 560k rows; a call per row to a mapper and a generator ~1 us more.
    """

    def __init__(
        self,
        mapping: Mapping,
        chain: Chain,
        header: list[str],
        tie_of: dict[str, int],
        parse: TimeParser,
    ) -> None:
        self.mapping, self.chain, self.tie_of = mapping, chain, tie_of
        self.header = header
        self.width = len(header)
        index = {name: i for i, name in enumerate(header)}  # a repeated name: the last, as a dict
        self.ok = True

        def column(name: str | None) -> int:
            if name is None or name not in index:
                self.ok = False
                return -1
            return index[name]

        self.activity = column(mapping.activity)
        self.case_key = column(mapping.case_key)
        self.timestamp = column(mapping.timestamp.column)
        self.attributes: list[tuple[int, dict[str, str] | None, str | None]] = []
        for aspec in (mapping.case_type, mapping.district):
            if aspec.column is None:
                self.attributes.append((-1, None, aspec.value))
            else:
                self.attributes.append((column(aspec.column), aspec.values or None, aspec.value))
        self.ignore = frozenset(mapping.ignore)
        self.activities: dict[str, tuple[str, str | None, int]] = {}
        for name in mapping.activities:
            spec = mapping.activity_spec(name)
            assert spec is not None
            if mapping.ties == "file":
                tie = 0
            elif mapping.ties == "chain":
                tie = chain.milestones[spec.milestone].rank
            else:
                tie = tie_of.get(name, len(tie_of))
            self.activities[name] = (spec.milestone, spec.outcome, tie)
        self.parse = parse
        self.last_row: list[str] = []

    def as_dict(self, row: list[str]) -> dict[str, Any]:
        """The row as csv.DictReader gives it, less the None key of surplus cells."""
        values: dict[str, Any] = dict(zip(self.header, row, strict=False))
        for name in self.header[len(row) :]:
            values[name] = None
        return values

    def map_rows(
        self,
        reader: Any,
        mapped: list[_Mapped],
        specs: dict[str, ActivitySpec | None],
        progress: Any = None,
        before: int = 1,
        offset: int = 0,
    ) -> Iterator[tuple[int, tuple[str, str]]]:
        """Map the rows of `reader` (a csv.reader past the header) into `mapped`, numbered as
        read_csv_log numbers them; yield (line, (reason, detail)) for each row with a problem.

        A part of a log (_SplitPlan): `offset` lines before the reader's first, `before` the
        last line of the row before its first. The last row read is kept in `self.last_row`.
        """
        mapping, chain, tie_of, parse = self.mapping, self.chain, self.tie_of, self.parse
        ok, width, ignore, activities = self.ok, self.width, self.ignore, self.activities
        a_col, k_col, t_col = self.activity, self.case_key, self.timestamp
        (ct_col, ct_values, ct_default), (d_col, d_values, d_default) = self.attributes
        append = mapped.append
        # As read_csv_log: a row's line is one after the previous row's last line.
        row: list[str] = []
        for row in reader:
            if not row:
                continue  # csv.DictReader skips blank rows
            line = before + 1
            before = offset + reader.line_num
            if progress is not None and line % PROGRESS_EVERY == 0:
                progress.update(PROGRESS_EVERY)
            if ok and len(row) == width:
                activity = row[a_col].strip()
                if activity in ignore:
                    continue
                known = activities.get(activity)
                case_key = row[k_col].strip()
                if known is not None and case_key:
                    try:
                        at: datetime | None = parse(row[t_col])
                    except ValueError:
                        at = None
                    if ct_col < 0:
                        case_type = ct_default
                    else:
                        cell = row[ct_col].strip()
                        if not cell:
                            case_type = ct_default
                        else:
                            case_type = ct_values.get(cell) if ct_values else cell
                    if d_col < 0:
                        district = d_default
                    else:
                        cell = row[d_col].strip()
                        if not cell:
                            district = d_default
                        else:
                            district = d_values.get(cell) if d_values else cell
                    if at is not None and case_type is not None and district is not None:
                        milestone, outcome, tie = known
                        append(
                            _Mapped(
                                case_key, milestone, outcome, at, tie, line, case_type, district
                            )
                        )
                        continue
            # Not sure: map the row as csv.DictReader would give it, by the one definition.
            found = _map_row(mapping, chain, line, self.as_dict(row), tie_of, parse, specs)
            if isinstance(found, _Mapped):
                append(found)
            elif found is not None:
                yield line, found
        self.last_row = row


def _map_dict_rows(
    reader: Iterator[tuple[int, dict[str, str]]],
    mapping: Mapping,
    chain: Chain,
    tie_of: dict[str, int],
    parse: TimeParser,
    specs: dict[str, ActivitySpec | None],
    mapped: list[_Mapped],
    progress: Any = None,
) -> Iterator[tuple[int, tuple[str, str]]]:
    """Every row through _map_row into `mapped`; yield (line, (reason, detail)) for problems."""
    for line, row in reader:
        if progress is not None and line % PROGRESS_EVERY == 0:
            progress.update(PROGRESS_EVERY)
        found = _map_row(mapping, chain, line, row, tie_of, parse, specs)
        if isinstance(found, _Mapped):
            mapped.append(found)
        elif found is not None:
            yield line, found


def _map_csv_compiled(
    path: Path,
    mapping: Mapping,
    chain: Chain,
    tie_of: dict[str, int],
    parse: TimeParser,
    specs: dict[str, ActivitySpec | None],
    mapped: list[_Mapped],
    progress: Any = None,
) -> Iterator[tuple[int, tuple[str, str]]]:
    """The CSV log by csv.reader and _CsvRowMapper, as _map_dict_rows over read_csv_log."""
    with path.open("r", encoding=mapping.csv.encoding, newline="") as handle:
        reader = csv.reader(handle, delimiter=mapping.csv.delimiter)
        header = next(reader, None)
        if header is None:
            return
        mapper = _CsvRowMapper(mapping, chain, header, tie_of, parse)
        yield from mapper.map_rows(reader, mapped, specs, progress)


_AT, _TIE, _LINE = itemgetter(3), itemgetter(4), itemgetter(5)  # _Mapped's at, tie, line


class SortedLog(NamedTuple):
    """A log read, mapped and put in replay order: what is left is checking and encoding."""

    source: str
    problems: list[tuple[int, tuple[str, str]]]  # (line, (reason, detail)), in the log's order
    events: list[_Mapped]  # in replay order
    keep_every: bool  # repeated_milestone "all": the second and later get an occurrence


def read_sorted(
    path: Path, mapping: Mapping, chain: Chain, progress: Any = None, *, compiled: bool = True
) -> SortedLog:
    """Read and map the log, keep the rows repeated_milestone says, sort into replay order.

    `progress` counts the rows read, then is reset to the number of events to replay.
    `compiled=False`: csv.DictReader and _map_row for every row (see import_rows).
    """
    tie_of = {a: i for i, a in enumerate(mapping.ties)} if isinstance(mapping.ties, list) else {}
    parse = TimeParser(mapping.timestamp)
    specs: dict[str, ActivitySpec | None] = {}
    mapped: list[_Mapped] = []  # in the order of the log
    if mapping.format == "xes":
        found = _map_dict_rows(
            read_xes_log(path), mapping, chain, tie_of, parse, specs, mapped, progress
        )
    elif not compiled:  # csv.DictReader, every row through _map_row
        found = _map_dict_rows(
            read_csv_log(path, mapping), mapping, chain, tie_of, parse, specs, mapped, progress
        )
    else:
        found = _map_csv_compiled(path, mapping, chain, tie_of, parse, specs, mapped, progress)
    problems = list(found)
    events = _keep_and_sort(mapped, mapping)
    del mapped
    if progress is not None:
        progress.reset(total=len(events))
        progress.set_description(f"{path.name}: publishing")
    return SortedLog(str(path), problems, events, mapping.repeated_milestone == "all")


def _keep_and_sort(
    mapped: list[_Mapped], mapping: Mapping, kept: dict[tuple[str, str], _Mapped] | None = None
) -> list[_Mapped]:
    """The rows repeated_milestone keeps (`mapped` in the log's order), in replay order;
    `kept` (first | last): filled with (case key, milestone) -> the event kept."""
    events: list[_Mapped]
    if mapping.repeated_milestone == "all":
        events = mapped
    else:
        keep_first = mapping.repeated_milestone == "first"
        if kept is None:
            kept = {}
        for m in mapped:
            key = (m.case_key, m.milestone)
            current = kept.setdefault(key, m)
            if current is m:  # the first row of this case and milestone
                continue
            earlier = (m.at, m.tie, m.line) < (current.at, current.tie, current.line)
            if earlier == keep_first:
                kept[key] = m
        events = list(kept.values())
    # In replay order: by (at, tie, line), as three stable sorts on one field each (C key
    # functions, no tuple per event: half the time of one sort by a tuple key).
    events.sort(key=_LINE)
    events.sort(key=_TIE)
    events.sort(key=_AT)
    return events


def import_rows(
    path: Path, mapping: Mapping, chain: Chain, progress: Any = None, *, compiled: bool = True
) -> Iterator[Row]:
    """The log's events as publish.Row objects: problems first, then events in replay order.

    `progress` (a tqdm bar, optional) counts the rows read, then is reset to the number of events
    to replay; each event Row has size 1, so check_and_send advances the same bar.
    `compiled=False` reads CSV with csv.DictReader and maps every row through _map_row: the
    definition the compiled CSV path is tested against.
    """
    log = read_sorted(path, mapping, chain, progress, compiled=compiled)
    yield from sorted_rows(log, mapping, chain)


def sorted_rows(log: SortedLog, mapping: Mapping, chain: Chain) -> Iterator[Row]:
    """import_rows of a log read_sorted has read: problems first, then the events as Rows."""
    source = log.source
    for line, problem in log.problems:
        yield Row(source, line, None, problem)
    keep_every = log.keep_every
    organisation_of = {name: m.organisation for name, m in chain.milestones.items()}
    prefix = mapping.event_id_prefix
    times: dict[tuple[str, str], int] = {}  # occurrences so far per case and milestone ("all")
    for m in log.events:
        event: dict[str, Any] = {
            "schema_version": 1,
            "event_id": f"{prefix}{m.line}",
            "case_key": m.case_key,
            "organisation": organisation_of[m.milestone],
            "milestone": m.milestone,
            "occurred_at": m.at,  # orjson writes it as isoformat() does (checked in a test)
            "case_type": m.case_type,
            "district": m.district,
        }
        if m.outcome:
            event["outcome"] = m.outcome
        if keep_every:  # first | last: one event per case and milestone, never a second
            key = (m.case_key, m.milestone)
            n = times[key] = times.get(key, 0) + 1
            if n > 1:  # the second and later occurrences, in event time
                event["occurrence"] = str(n)
        yield Row(source, m.line, orjson.dumps(event), None, 1)  # compact, as json.dumps did


# -- checking and encoding in a second process ------------------------------------------------
CHUNK_EVENTS = 2000  # events a process checks and encodes at a time (~0.5 MB encoded)
DRAIN_EVERY = 500  # events the parent encodes between looks for the children's finished chunks
# Of every 1 + child_chunks chunks, the parent does the first (see _Encoder._owner). The parent
# sends every event, ~1 us each to a file, ~4 us to Kafka (its client thread included), and
# checks and encodes its own chunks (~10 us an event): measured, 2 and 3 share the work evenly.
CHILD_CHUNKS_TO_FILE = 2
CHILD_CHUNKS_TO_KAFKA = 3
FORK_MIN_EVENTS = 2 * CHUNK_EVENTS  # fewer events: no second process
_EXIT_CHILD_FAILED = 3  # as a failed send: some events may have been sent already


class SecondProcessError(Exception):
    """import-log's second process failed: a one-line reason, for cmd_import to print."""


class _Chunk(NamedTuple):
    """Events [lo, hi) of the replay order, checked and encoded: what is sent, in order."""

    raws: list[bytes]  # the accepted events' JSON, in replay order
    keys: list[bytes]  # their event ids (the message keys)
    organisations: list[str]  # their organisations (whose topic)
    problems: list[tuple[int, str, str]]  # (line, reason, detail) of the rejected, in order


class _Children:
    """The forked processes of an import and the pipes they send through, one each, in order:
    messages are pickled; a str is a child's failure in one line (_failures_to_parent)."""

    def __init__(self) -> None:
        self._processes: list[Any] = []
        self._pipes: list[Any] = []
        self._received: list[deque[bytes]] = []

    def _drain(self) -> None:
        """Take in what the children have sent so far, so that they need not wait for us."""
        for pipe, received in zip(self._pipes, self._received, strict=True):
            while pipe.poll():
                try:
                    received.append(pipe.recv_bytes())
                except (EOFError, OSError):
                    break  # the child is gone: _message says so when its message is due

    def _message(self, child: int) -> Any:
        """Child `child`'s next message (1: the first child); its failure raises."""
        received = self._received[child - 1]
        try:
            data = received.popleft() if received else self._pipes[child - 1].recv_bytes()
            message = pickle.loads(data)
        except (EOFError, OSError):
            process = self._processes[child - 1]
            process.join(timeout=5)
            raise SecondProcessError(
                f"the second process ended unexpectedly (exit code {process.exitcode})"
            ) from None
        if isinstance(message, str):
            raise SecondProcessError(f"the second process failed: {message}")
        return message

    def close(self) -> None:
        """End the children (at once if they are not done) and close the pipes."""
        for pipe in self._pipes:
            pipe.close()
        for process in self._processes:
            process.join(timeout=0.5)
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)
        self._pipes, self._processes = [], []

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def _failures_to_parent(pipe: Any) -> Iterator[None]:
    """In a child: any failure is one line to the parent (which says it), then exit 1."""
    try:
        yield
    except BrokenPipeError:
        sys.exit(1)  # the parent is gone or gave up: nothing to tell
    except BaseException as exc:
        reason = (f"{type(exc).__name__}: {exc}".splitlines() or [""])[0]
        with contextlib.suppress(OSError):
            pipe.send_bytes(pickle.dumps(reason))
        sys.exit(1)


class _Encoder(_Children):
    """What check_and_send does to sorted_rows' rows, by chunks of CHUNK_EVENTS events, split
    between this process and `processes - 1` forked ones; chunks come back in replay order.

    The children are forked when the encoder is made: after the log is read and sorted (they
    inherit the events, nothing is pickled) and before any Kafka client thread exists (forking a
    process with a running client thread is unsafe). Chunk k is the parent's when _owner(k) is 0,
    else child _owner(k)'s; a child sends its chunks through its own pipe, in order, as a pickled
    (raws joined by newlines, keys likewise, organisation indices, problems): orjson writes no
    newline and an event id has none. The parent sends every event, so the children take
    `child_chunks` of every 1 + child_chunks chunks; while encoding its own, the parent takes in
    the chunks the children have finished (DRAIN_EVERY), so that they need not wait for it.

    Rejections are the contract's (schemas.events.check_event) as in check_and_send; its
    `duplicate_in_file` cannot occur here (each event id is the prefix and its own line).
    """

    def __init__(
        self,
        log: SortedLog,
        mapping: Mapping,
        chain: Chain,
        processes: int,
        child_chunks: int = CHILD_CHUNKS_TO_FILE,
    ) -> None:
        self.log, self.chain, self.child_chunks = log, chain, child_chunks
        self.organisation_of = {name: m.organisation for name, m in chain.milestones.items()}
        self.names = sorted(set(self.organisation_of.values()))
        self.prefix = mapping.event_id_prefix
        self.occurrences: list[int] | None = None
        if log.keep_every:  # the n-th occurrence of each event's case and milestone, in order
            times: dict[tuple[str, str], int] = {}
            occurrences = self.occurrences = []
            for m in log.events:
                key = (m.case_key, m.milestone)
                n = times[key] = times.get(key, 0) + 1
                occurrences.append(n)
        self.chunks = -(-len(log.events) // CHUNK_EVENTS)
        self.children = max(0, processes - 1) if len(log.events) >= FORK_MIN_EVENTS else 0
        super().__init__()
        self._received = [deque() for _ in range(self.children)]
        if self.children:
            self._fork()

    def _owner(self, k: int) -> int:
        """0: the parent checks and encodes chunk k; i > 0: child i does."""
        if not self.children:
            return 0
        position = k % (1 + self.children * self.child_chunks)
        return 0 if position == 0 else 1 + (position - 1) % self.children

    def encode(self, k: int, drain: bool = False) -> _Chunk:
        """Check and encode chunk k; `drain`: take in the children's finished chunks meanwhile
        (a child blocks once its pipe is full)."""
        events, chain, prefix = self.log.events, self.chain, self.prefix
        organisation_of, occurrences = self.organisation_of, self.occurrences
        raws: list[bytes] = []
        keys: list[bytes] = []
        organisations: list[str] = []
        problems: list[tuple[int, str, str]] = []
        lo = k * CHUNK_EVENTS
        for i in range(lo, min(lo + CHUNK_EVENTS, len(events))):
            if drain and i % DRAIN_EVERY == 0:
                self._drain()
            m = events[i]
            event: dict[str, Any] = {  # exactly as sorted_rows
                "schema_version": 1,
                "event_id": f"{prefix}{m.line}",
                "case_key": m.case_key,
                "organisation": organisation_of[m.milestone],
                "milestone": m.milestone,
                "occurred_at": m.at,
                "case_type": m.case_type,
                "district": m.district,
            }
            if m.outcome:
                event["outcome"] = m.outcome
            if occurrences is not None and occurrences[i] > 1:
                event["occurrence"] = str(occurrences[i])
            raw = orjson.dumps(event)
            try:
                checked = check_event(raw, chain, None)
            except EventRejected as exc:
                problems.append((m.line, exc.reason, exc.detail))
                continue
            raws.append(raw)
            keys.append(checked.event_id.encode())
            organisations.append(checked.organisation)
        return _Chunk(raws, keys, organisations, problems)

    # -- the children
    def _fork(self) -> None:
        import multiprocessing

        context = multiprocessing.get_context("fork")
        gc.freeze()  # the inherited objects: out of both processes' collections (fewer copies)
        try:
            for index in range(1, self.children + 1):
                reader, writer = context.Pipe(duplex=False)
                process = context.Process(
                    target=self._child, args=(index, writer), name=f"import-log-{index}",
                    daemon=True,
                )
                process.start()
                writer.close()  # the child's end: the parent sees EOF when the child is gone
                self._processes.append(process)
                self._pipes.append(reader)
        except BaseException:
            self.close()
            raise

    def _child(self, index: int, pipe: Any) -> None:
        """In child `index`: encode its chunks, in order, into `pipe`; a failure: one line."""
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the parent ends us
        for other in self._pipes:
            other.close()
        _grow_pipe(pipe.fileno())
        with _failures_to_parent(pipe):
            number = {name: i for i, name in enumerate(self.names)}
            for k in range(self.chunks):
                if self._owner(k) != index:
                    continue
                chunk = self.encode(k)
                pipe.send_bytes(
                    pickle.dumps(
                        (
                            b"\n".join(chunk.raws),
                            b"\n".join(chunk.keys),
                            bytes([number[o] for o in chunk.organisations]),
                            chunk.problems,
                        ),
                        protocol=pickle.HIGHEST_PROTOCOL,
                    )
                )

    def _receive(self, owner: int) -> _Chunk:
        raws, keys, numbers, problems = self._message(owner)
        count = len(numbers)
        names = self.names
        return _Chunk(
            raws.split(b"\n") if count else [],
            keys.split(b"\n") if count else [],
            [names[n] for n in numbers],
            problems,
        )

    def __iter__(self) -> Iterator[_Chunk]:
        for k in range(self.chunks):
            owner = self._owner(k)
            yield self.encode(k, drain=self.children > 0) if owner == 0 else self._receive(owner)


def _grow_pipe(fd: int) -> None:
    """A pipe of 1 MiB (Linux; 64 KiB by default) lets a child encode further ahead."""
    try:
        import fcntl

        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, 1 << 20)
    except (ImportError, AttributeError, OSError):
        pass


def send_chunks(
    log: SortedLog,
    encoder: _Encoder,
    send: Callable[[str, bytes, bytes], None],
    report: PublishReport,
    progress: Any = None,
) -> PublishReport:
    """check_and_send(sorted_rows(log)) by chunks: `send(organisation, raw, key)` for each valid
    event in replay order, the same report (rows, sent, rejections in order)."""
    source = log.source
    for line, (reason, detail) in log.problems:
        report.rejected[reason] += 1
        report.problems.append(Problem(source, line, reason, detail))
    report.rows += len(log.problems)
    tells_sent = hasattr(progress, "sent")
    try:
        for chunk in encoder:
            for raw, key, organisation in zip(
                chunk.raws, chunk.keys, chunk.organisations, strict=True
            ):
                send(organisation, raw, key)
            report.sent += len(chunk.raws)
            report.sent_by_organisation.update(chunk.organisations)
            report.rows += len(chunk.raws) + len(chunk.problems)
            for line, reason, detail in chunk.problems:
                report.rejected[reason] += 1
                report.problems.append(Problem(source, line, reason, detail))
            if progress is not None:
                if tells_sent:
                    progress.sent = report.sent
                progress.update(len(chunk.raws) + len(chunk.problems))
    finally:
        if tells_sent:
            progress.sent = report.sent
    return report


# -- a CSV log in parts, each mapped, sorted, checked and encoded by its own process ----------
SPLIT_MIN_BYTES = 2 << 20  # smaller CSV logs: read and sorted here, then _Encoder
# The first process's share of the log's characters (the others' shares are equal). It also
# merges the parts and sends every event, ~1 us an event to a file, ~4 us to Kafka (its client
# thread included), so to Kafka it takes less; the children encode while it sends (a probe on
# the benchmark log to Kafka: at 0.4 it waited ~1.5 s for the child, at 0.5 ~0.1 s).
FIRST_SHARE = 0.5
FIRST_SHARE_TO_KAFKA = 0.45
_SPLIT_TRIES = 10_000  # line ends looked at for a part's start before giving up on splitting


class _SplitPlan(NamedTuple):
    """A CSV log cut at record boundaries: part 0 (with the header) here, each other part in a
    forked process. Each part is (start, end, lines before start) in characters of `text`."""

    text: str  # the whole log, decoded
    header: list[str]
    parts: list[tuple[int, int, int]]


def _line_ends(text: str, end: int) -> int:
    """The lines that end before `end`, as a file read with newline="" splits them."""
    return text.count("\n", 0, end) + text.count("\r", 0, end) - text.count("\r\n", 0, end)


def plan_split(
    path: Path, mapping: Mapping, processes: int, first_share: float | None = None
) -> _SplitPlan | None:
    """Where to cut the log for `processes` processes, or None: read it as one.

    Only a CSV log of SPLIT_MIN_BYTES or more with repeated_milestone first or last (with `all`,
    an event's occurrence depends on every other part). A part starts after a line end that is
    not inside a quoted cell as far as the quotes before it tell (an even number of them), and
    not after a blank line (a row's line number counts from the last row before it). Whether
    the cut really was at a record's end is known once the part before it is read
    (_PartResult.clean_end); if not, the log is read again as one (read_sorted).
    """
    if processes < 2 or mapping.format != "csv" or mapping.repeated_milestone == "all":
        return None
    try:
        if path.stat().st_size < SPLIT_MIN_BYTES:
            return None
        text = path.read_bytes().decode(mapping.csv.encoding)
    except (OSError, UnicodeError, LookupError):
        return None  # read as one, which says what is wrong
    handle = io.StringIO(text, newline="")
    try:
        header = next(csv.reader(handle, delimiter=mapping.csv.delimiter), None)
    except (csv.Error, TypeError):
        return None
    if header is None:
        return None
    body = handle.tell()
    quoted = '"' in text
    share = FIRST_SHARE if first_share is None else first_share
    weights = [share] + [1.0 - share] * (processes - 1)
    total, reached = sum(weights), 0.0
    starts = [body]
    quotes, counted = 0, 0  # quote characters in text[:counted]
    for weight in weights[:-1]:
        reached += weight
        at = text.find("\n", max(int(body + (len(text) - body) * reached / total), starts[-1]))
        for _ in range(_SPLIT_TRIES):
            if at < 0 or at + 1 >= len(text):
                at = -1
                break
            cut = at + 1
            if quoted:
                quotes += text.count('"', counted, cut)
                counted = cut
            last = at - 2 if text[at - 1] == "\r" else at - 1  # the line's last character
            if text[last] not in "\r\n" and quotes % 2 == 0:
                starts.append(cut)
                break
            at = text.find("\n", cut)
        else:
            at = -1
        if at < 0:
            break
    if len(starts) < 2:
        return None
    ends = [*starts[1:], len(text)]
    parts = [(0, ends[0], 0)]
    parts += [
        (start, end, _line_ends(text, start))
        for start, end in zip(starts[1:], ends[1:], strict=True)
    ]
    return _SplitPlan(text, header, parts)


_INDEX_BITS = 32  # an event's index in the merged log: the low bits of its order key
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_CASE_KEY, _MILESTONE = itemgetter(0), itemgetter(1)


def _tie_bits(mapping: Mapping, chain: Chain) -> int:
    """Bits for any tie of `mapping` in an order key."""
    ties = len(mapping.ties) if isinstance(mapping.ties, list) else 0  # indices into the list
    most = max([len(mapping.activities), ties, *(m.rank for m in chain.milestones.values())])
    return max(most, 1).bit_length()


class _Part(NamedTuple):
    """One part of a split log, mapped, kept (repeated_milestone) and sorted: what the merge
    needs. Its events are then checked and encoded by chunks (_encode_part), in that order."""

    problems: list[tuple[int, tuple[str, str]]]  # the rows that could not be mapped, in order
    rows: int  # lines read (for progress)
    clean_end: bool  # the part ended at a record's end (else the cut before the next was wrong)
    # Of the kept events, in replay order: (at, tie) as one integer << _INDEX_BITS | the event's
    # index in the part.
    orders: list[int]
    case_keys: list[str]
    milestones: list[str]
    lines: list[int]


def read_part(
    plan: _SplitPlan, number: int, mapping: Mapping, chain: Chain, progress: Any = None
) -> tuple[_Part, list[_Mapped], dict[tuple[str, str], _Mapped]]:
    """Part `number` of `plan` as read_sorted reads a log: the part, its events in replay order,
    and (case key, milestone) -> the event kept."""
    start, end, offset = plan.parts[number]
    tie_of = {a: i for i, a in enumerate(mapping.ties)} if isinstance(mapping.ties, list) else {}
    parse = TimeParser(mapping.timestamp)
    mapped: list[_Mapped] = []
    reader = csv.reader(
        io.StringIO(plan.text[start:end], newline=""), delimiter=mapping.csv.delimiter
    )
    if number == 0:
        next(reader)  # the header
    mapper = _CsvRowMapper(mapping, chain, plan.header, tie_of, parse)
    before = 1 if number == 0 else offset
    problems = list(mapper.map_rows(reader, mapped, {}, progress, before, offset))
    last = mapper.last_row
    clean_end = not (last and last[-1].endswith(("\n", "\r")))
    kept: dict[tuple[str, str], _Mapped] = {}
    events = _keep_and_sort(mapped, mapping, kept)
    del mapped
    tie_bits = _tie_bits(mapping, chain)
    epoch, microsecond = _EPOCH, _MICROSECOND
    orders = [
        ((((m.at - epoch) // microsecond) << tie_bits | m.tie) << _INDEX_BITS) | i
        for i, m in enumerate(events)
    ]
    part = _Part(
        problems,
        reader.line_num,
        clean_end,
        orders,
        list(map(_CASE_KEY, events)),
        list(map(_MILESTONE, events)),
        list(map(_LINE, events)),
    )
    return part, events, kept


def _encode_part(
    events: list[_Mapped], lo: int, hi: int, chain: Chain, prefix: str, drain: Any = None
) -> tuple[bytes, bytes, dict[int, tuple[str, str]]]:
    """Check and encode events[lo:hi] as check_and_send would sorted_rows' rows: their JSON
    joined by newlines (b"" for one the contract refused), likewise their event ids, and
    {index: (reason, detail)} of the refused. `drain`: called every DRAIN_EVERY events.

    Joined at once: orjson's buffers are kept whole until freed, so events kept one by one
    would each hold a fresh page (a page fault and ~4 KiB an event)."""
    organisation_of = {name: m.organisation for name, m in chain.milestones.items()}
    raws: list[bytes] = []
    keys: list[bytes] = []
    refused: dict[int, tuple[str, str]] = {}
    for i in range(lo, hi):
        if drain is not None and i % DRAIN_EVERY == 0:
            drain()
        m = events[i]
        event: dict[str, Any] = {  # exactly as sorted_rows
            "schema_version": 1,
            "event_id": f"{prefix}{m.line}",
            "case_key": m.case_key,
            "organisation": organisation_of[m.milestone],
            "milestone": m.milestone,
            "occurred_at": m.at,
            "case_type": m.case_type,
            "district": m.district,
        }
        if m.outcome:
            event["outcome"] = m.outcome
        raw = orjson.dumps(event)
        try:
            checked = check_event(raw, chain, None)
        except EventRejected as exc:
            refused[i] = (exc.reason, exc.detail)
            raws.append(b"")
            keys.append(b"")
            continue
        raws.append(raw)
        keys.append(checked.event_id.encode())
    return b"\n".join(raws), b"\n".join(keys), refused  # orjson writes no newline, nor an id


def _part_child(plan: _SplitPlan, number: int, mapping: Mapping, chain: Chain, pipe: Any) -> None:
    """In a forked process: read part `number`, send the _Part, then its events checked and
    encoded, CHUNK_EVENTS at a time, in order, into `pipe`; a failure: one line."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the parent ends us
    _grow_pipe(pipe.fileno())
    with _failures_to_parent(pipe):
        part, events, _ = read_part(plan, number, mapping, chain)
        names = {name: i for i, name in enumerate(chain.milestones)}
        head = (*part[:-2], bytes([names[m] for m in part.milestones]), part.lines)
        pipe.send_bytes(pickle.dumps(head, protocol=pickle.HIGHEST_PROTOCOL))
        if not part.clean_end:
            return  # the parent reads the log as one
        gc.freeze()  # what stays until the end: out of the collections while encoding
        for lo in range(0, len(events), CHUNK_EVENTS):
            hi = min(lo + CHUNK_EVENTS, len(events))
            encoded = _encode_part(events, lo, hi, chain, mapping.event_id_prefix)
            pipe.send_bytes(pickle.dumps(encoded, protocol=pickle.HIGHEST_PROTOCOL))


class _SplitImport(_Children):
    """A split log (plan_split) read by `len(plan.parts)` processes: this one reads part 0 while
    forked ones read the others, each keeping and sorting its own events (read_part); the
    children send their parts' order keys first, and this one merges them into replay order
    (one event per case and milestone across parts, as repeated_milestone says) while they go
    on checking and encoding their events, which they send in their own order, CHUNK_EVENTS at
    a time. Iterating yields _Encoder's chunks in replay order: this process encodes part 0's
    events as they are due, takes in the children's as they come, and sends.

    Fork before any Kafka client thread exists. `run` returns None when a cut turned out not to
    be at a record's end: the caller reads the log as one then.
    """

    def __init__(
        self, path: Path, plan: _SplitPlan, mapping: Mapping, chain: Chain, progress: Any = None
    ) -> None:
        self.path, self.plan, self.mapping, self.chain = path, plan, mapping, chain
        self.progress = progress
        super().__init__()
        self._events: list[_Mapped] = []  # part 0's
        self._order: list[int] = []
        self._bases: list[int] = []  # the merged index of each part's first event, and the end
        self._ready: list[int] = []  # each part's events encoded (here) or received so far
        self._raws: list[bytes] = []  # by merged index
        self._keys: list[bytes] = []
        self._organisations: list[str] = []
        self._refused: dict[int, tuple[int, str, str]] = {}
        self._lines: list[int] = []
        # Part 0's chunks encoded before the merge: (first index, raws, keys, refused).
        self._ahead: list[tuple[int, bytes, bytes, dict[int, tuple[str, str]]]] = []
        self._ahead_done = 0

    def run(self) -> SortedLog | None:
        import multiprocessing

        context = multiprocessing.get_context("fork")
        gc.freeze()  # the inherited objects: out of both processes' collections (fewer copies)
        try:
            for number in range(1, len(self.plan.parts)):
                reader, writer = context.Pipe(duplex=False)
                process = context.Process(
                    target=_part_child,
                    args=(self.plan, number, self.mapping, self.chain, writer),
                    name=f"import-log-{number}",
                    daemon=True,
                )
                process.start()
                writer.close()
                self._processes.append(process)
                self._pipes.append(reader)
                self._received.append(deque())
        except BaseException:
            self.close()
            raise
        part, self._events, kept = read_part(self.plan, 0, self.mapping, self.chain, self.progress)
        self.plan = self.plan._replace(text="")  # read (the children have their own copies)
        parts = [part]
        names = list(self.chain.milestones)
        for number in range(1, len(self.plan.parts)):
            # Until a child's part has come, this process encodes its own events ahead.
            while not (self._received[number - 1] or self._pipes[number - 1].poll()):
                if not part.clean_end or not self._encode_ahead():
                    break
            try:
                head = self._message(number)
            except SecondProcessError:
                if parts[-1].clean_end:
                    raise
                # The cut before this part lay inside a quoted cell (a stray quote fooled the
                # count): the child read from the middle of a cell, and its failure says only
                # that. The log is read as one, which reports what is really there.
                self.close()
                return None
            parts.append(_Part(*head[:-2], [names[n] for n in head[-2]], head[-1]))
            if self.progress is not None:
                self.progress.update(parts[-1].rows)
        if not all(part.clean_end for part in parts[:-1]):
            self.close()
            return None
        gc.freeze()  # what stays until the end: out of the collections while encoding
        return self._merge(parts, kept)

    def _encode_ahead(self) -> bool:
        """Before the merge: check and encode part 0's next chunk; False if none is left."""
        lo = self._ahead_done
        if lo >= len(self._events):
            return False
        if not self._ahead:
            gc.freeze()  # part 0's events: out of the collections while encoding
        hi = min(lo + CHUNK_EVENTS, len(self._events))
        prefix = self.mapping.event_id_prefix
        self._ahead.append((lo, *_encode_part(self._events, lo, hi, self.chain, prefix)))
        self._ahead_done = hi
        return True

    def _merge(self, parts: list[_Part], kept0: dict[tuple[str, str], _Mapped]) -> SortedLog:
        keep_first = self.mapping.repeated_milestone == "first"
        orders: list[int] = []
        lines: list[int] = []
        milestones: list[str] = []
        problems: list[tuple[int, tuple[str, str]]] = []
        # One event per case and milestone across parts: part 0's are in `kept0`; an event of a
        # later part with a key seen before is compared with the one kept so far.
        later: dict[tuple[str, str], tuple[int, int, int]] = {}  # key -> (rank, line, index)
        dropped: set[int] = set()
        bases = []
        for number, part in enumerate(parts):
            base = len(lines)
            bases.append(base)
            problems += part.problems
            orders += [k + base for k in part.orders] if base else part.orders
            lines += part.lines
            milestones += part.milestones
            if not number:
                continue
            remember = number < len(parts) - 1
            for j, key in enumerate(zip(part.case_keys, part.milestones, strict=True)):
                if key not in kept0 and key not in later:
                    if remember:
                        later[key] = (part.orders[j] >> _INDEX_BITS, part.lines[j], base + j)
                    continue
                mine = (part.orders[j] >> _INDEX_BITS, part.lines[j], base + j)
                current = later.get(key)
                if current is None:  # part 0's
                    i = self._index_in(parts[0], kept0[key])
                    current = (parts[0].orders[i] >> _INDEX_BITS, parts[0].lines[i], i)
                if ((mine[0], mine[1]) < (current[0], current[1])) == keep_first:
                    dropped.add(current[2])
                    later[key] = mine
                else:
                    dropped.add(mine[2])
                    later[key] = current
        del later
        bases.append(len(lines))
        # Replay order, (at, tie, line): each part's orders ascend, and an event's index in the
        # merged log orders those of the same (at, tie) by line (parts are in the log's order).
        orders.sort()
        mask = (1 << _INDEX_BITS) - 1
        order = [k & mask for k in orders]
        del orders
        if dropped:
            order = [i for i in order if i not in dropped]
        organisation_of = {name: m.organisation for name, m in self.chain.milestones.items()}
        self._organisations = list(map(organisation_of.__getitem__, milestones))
        self._order, self._bases, self._lines = order, bases, lines
        self._ready = [0] * len(parts)
        self._raws = [b""] * len(lines)
        self._keys = [b""] * len(lines)
        for lo, raws, keys, refused in self._ahead:
            self._store(0, lo, raws, keys, refused)
        self._ahead = []
        if self.progress is not None:
            self.progress.reset(total=len(order))
            self.progress.set_description(f"{self.path.name}: publishing")
        return SortedLog(str(self.path), problems, [], False)

    def _index_in(self, part: _Part, m: _Mapped) -> int:
        """The index of part 0's event `m` in its replay order (`part`: part 0)."""
        rank = ((m.at - _EPOCH) // _MICROSECOND) << _tie_bits(self.mapping, self.chain) | m.tie
        i = bisect.bisect_left(part.orders, rank << _INDEX_BITS)
        while part.lines[i] != m.line:  # among the events of the same (at, tie)
            i += 1
        return i

    def _ensure(self, number: int, upto: int) -> None:
        """Events [0, upto) of part `number` encoded (part 0, here) or received."""
        while self._ready[number] < upto:
            lo = self._ready[number]
            if number == 0:
                hi = min(lo + CHUNK_EVENTS, len(self._events))
                raws, keys, refused = _encode_part(
                    self._events, lo, hi, self.chain, self.mapping.event_id_prefix, self._drain
                )
            else:
                raws, keys, refused = self._message(number)
            self._store(number, lo, raws, keys, refused)

    def _store(
        self, number: int, lo: int, raws: bytes, keys: bytes, refused: dict[int, tuple[str, str]]
    ) -> None:
        """Keep part `number`'s events from `lo` on, encoded (_encode_part)."""
        base = self._bases[number]
        raw_list = raws.split(b"\n")
        hi = lo + len(raw_list)
        self._raws[base + lo : base + hi] = raw_list
        self._keys[base + lo : base + hi] = keys.split(b"\n")
        for i, (reason, detail) in refused.items():
            self._refused[base + i] = (self._lines[base + i], reason, detail)
        self._ready[number] = hi

    def __iter__(self) -> Iterator[_Chunk]:
        raws, keys, organisations = self._raws, self._keys, self._organisations
        order, refused, bases = self._order, self._refused, self._bases
        for lo in range(0, len(order), CHUNK_EVENTS):
            chunk = order[lo : lo + CHUNK_EVENTS]
            ascending = sorted(chunk)
            for number in range(len(bases) - 1):
                first = bisect.bisect_left(ascending, bases[number])
                end = bisect.bisect_left(ascending, bases[number + 1])
                if end > first:
                    self._ensure(number, ascending[end - 1] - bases[number] + 1)
            problems: list[tuple[int, str, str]] = []
            if refused and not refused.keys().isdisjoint(chunk):
                problems = [refused[i] for i in chunk if i in refused]
                chunk = [i for i in chunk if i not in refused]
            yield _Chunk(
                list(map(raws.__getitem__, chunk)),
                list(map(keys.__getitem__, chunk)),
                list(map(organisations.__getitem__, chunk)),
                problems,
            )



# -- command ----------------------------------------------------------------------------------
def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "import-log", help="import a case event log (CSV/XES) with a mapping file, to Kafka"
    )
    p.add_argument("log", type=Path)
    p.add_argument("--mapping", type=Path, required=True)
    p.add_argument("--output", type=Path, default=None, help="write JSON Lines instead of Kafka")
    p.add_argument("--dry-run", action="store_true", help="map and validate only")
    p.add_argument("--bootstrap", default=None, help="Kafka bootstrap (default from settings)")
    p.add_argument("--max-report", type=int, default=1000, help="rejected rows to list")
    p.add_argument(
        "--processes",
        type=_processes,
        default=None,
        metavar="N",
        help="processes that read, check and encode the log (a CSV log of 2 MiB or more, "
        "repeated_milestone first or last, cut into parts; else they check and encode once it "
        "is read and sorted): the same messages, in the same order; 1: one process (default: 2 "
        "where two CPUs are available, else 1)",
    )
    add_quiet(p, lines=True)
    p.set_defaults(func=cmd_import)


def _processes(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 8:
        raise argparse.ArgumentTypeError(f"expected a number from 1 to 8, got {text!r}")
    return value


def default_processes() -> int:
    """2 where this process may run on two CPUs or more, else 1."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return 2 if cpus >= 2 else 1


def cmd_import(args: argparse.Namespace) -> int:
    from aiokafka.errors import KafkaError as AIOKafkaError
    from kafka.errors import KafkaError

    from ketenmonitor.domain.chain import load_chain
    from ketenmonitor.gc_tuning import tune_garbage_collector
    from ketenmonitor.kafka_io import PublishError
    from ketenmonitor.progress import progress_display
    from ketenmonitor.settings import Settings

    settings = Settings()
    tune_garbage_collector(settings.gc_young_threshold)
    chain = load_chain(settings.chain_file)
    try:
        mapping = load_mapping(args.mapping, chain)
        if not args.log.is_file():
            raise MappingError(f"{args.log}: no such file")
    except MappingError as exc:
        print(f"ketenmonitor import-log: {exc}", file=sys.stderr)
        return 2
    bar = progress_display(
        args.log,
        args.quiet,
        desc=f"{args.log.name}: reading",
        unit="rows",
        verb="valid" if args.dry_run else "written" if args.output else "sent",
        command="ketenmonitor import-log",
    )
    processes = args.processes or default_processes()
    report = PublishReport()
    try:
        if processes > 1:
            where = _import_in_processes(args, settings, chain, mapping, processes, bar, report)
        else:
            where = _import_in_one_process(args, settings, chain, mapping, bar, report)
    except (PublishError, KafkaError, AIOKafkaError) as exc:
        print(f"ketenmonitor import-log: sending failed: {exc}", file=sys.stderr)
        return 3
    except UnicodeDecodeError as exc:  # read before anything is sent: nothing was
        print(f"ketenmonitor import-log: {args.log}: not UTF-8 text ({exc}); nothing sent",
              file=sys.stderr)
        return 2
    except ET.ParseError as exc:
        print(f"ketenmonitor import-log: {args.log}: not well-formed XES XML ({exc}); "
              "nothing sent", file=sys.stderr)
        return 2
    except csv.Error as exc:  # a NUL byte, a cell over csv's field limit (an unclosed quote)
        print(f"ketenmonitor import-log: {args.log}: not a readable CSV log ({exc}); "
              "nothing sent", file=sys.stderr)
        return 2
    except SecondProcessError as exc:
        print(
            f"ketenmonitor import-log: {exc}; stopped (what was sent before stays sent; "
            "--processes 1 imports in one process)",
            file=sys.stderr,
        )
        return _EXIT_CHILD_FAILED
    print_problems(report, args.max_report)
    print(f"{args.log}: {report.summary('valid' if args.dry_run else 'sent')} {where}")
    return 1 if report.rejected else 0


def _import_in_one_process(
    args: argparse.Namespace,
    settings: Any,
    chain: Chain,
    mapping: Mapping,
    bar: Any,
    report: PublishReport,
) -> str:
    """--processes 1: check_and_send over import_rows, the log read as the first row is asked."""
    from ketenmonitor.batch_publish import BatchPublisher

    rows = import_rows(args.log, mapping, chain, progress=bar)
    with bar:
        if args.dry_run:
            check_and_send(rows, chain, lambda event, raw: None, report=report, progress=bar)
            return "(dry run, nothing sent)"
        if args.output:
            with args.output.open("wb") as out:
                check_and_send(
                    rows,
                    chain,
                    lambda e, raw: out.write(raw + b"\n"),
                    report=report,
                    progress=bar,
                )
            return f"to {args.output}"
        topics = {p: settings.partner_topic(p) for p in chain.partner_ids}
        with BatchPublisher(args.bootstrap or settings.kafka_bootstrap) as publisher:
            send = publisher.send_raw
            check_and_send(
                rows,
                chain,
                lambda e, raw: send(topics[e.organisation], raw, e.event_id.encode()),
                report=report,
                progress=bar,
            )
        return f"to the partner topics {settings.partner_topic('<organisation>')}"


def _import_in_processes(
    args: argparse.Namespace,
    settings: Any,
    chain: Chain,
    mapping: Mapping,
    processes: int,
    bar: Any,
    report: PublishReport,
) -> str:
    """--processes 2 or more: a CSV log cut into parts (plan_split) read, checked and encoded
    by as many processes (_SplitImport); else read and sort here, then fork the processes that
    check and encode most chunks (_Encoder). Forked before any Kafka client thread exists;
    this process sends in order."""
    from ketenmonitor.batch_publish import BatchPublisher

    with bar, contextlib.ExitStack() as stack:
        log: SortedLog | None = None
        encoder: Any = None
        to_kafka = not args.dry_run and not args.output
        share = FIRST_SHARE_TO_KAFKA if to_kafka else FIRST_SHARE
        plan = plan_split(args.log, mapping, processes, share)
        if plan is not None:
            encoder = stack.enter_context(_SplitImport(args.log, plan, mapping, chain, bar))
            log = encoder.run()
            del plan
        if log is None:  # not split, or a cut was not at a record's end: read as one
            log = read_sorted(args.log, mapping, chain, progress=bar)
            child_chunks = CHILD_CHUNKS_TO_KAFKA if to_kafka else CHILD_CHUNKS_TO_FILE
            encoder = stack.enter_context(
                _Encoder(log, mapping, chain, processes, child_chunks)
            )
        if args.dry_run:
            send_chunks(log, encoder, lambda organisation, raw, key: None, report, bar)
            return "(dry run, nothing sent)"
        if args.output:
            with args.output.open("wb") as out:
                send_chunks(
                    log,
                    encoder,
                    lambda organisation, raw, key: out.write(raw + b"\n"),
                    report,
                    bar,
                )
            return f"to {args.output}"
        topics = {p: settings.partner_topic(p) for p in chain.partner_ids}
        with BatchPublisher(args.bootstrap or settings.kafka_bootstrap) as publisher:
            send = publisher.send_raw
            send_chunks(
                log,
                encoder,
                lambda organisation, raw, key: send(topics[organisation], raw, key),
                report,
                bar,
            )
        return f"to the partner topics {settings.partner_topic('<organisation>')}"
