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
import csv
import re
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ketenmonitor.domain.chain import Chain
from ketenmonitor.publish import (
    PROGRESS_EVERY,
    PublishReport,
    Row,
    add_quiet,
    check_and_send,
    print_problems,
)


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
    """

    def __init__(self, spec: TimestampSpec) -> None:
        self.spec = spec
        self.zone = ZoneInfo(spec.timezone)
        self._cache: dict[str, datetime] = {}
        self._offsets: dict[tuple[int, ...], timedelta] = {}  # local hour -> UTC offset
        self._regex = None
        directives = _DIRECTIVE.findall(spec.format or "")
        # Y, m, d and then H, M, S as far as given, each once: datetime(*those numbers).
        self._names = tuple(d for d, _ in _FIELDS if d in directives)
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
            try:
                parts = tuple(map(int, match.group(*self._names)))
                offset = self._offsets.get(parts[:4])
                if offset is None:
                    offset = self._offset_of(parts)
                return datetime(*parts, tzinfo=UTC) - offset
            except (ValueError, OverflowError):
                pass  # let parse_time say it
        return parse_time(value, self.spec)

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


_FALLBACK: Any = object()  # the fast CSV mapper is not sure: map the row as a dict instead


class _CsvRowMapper:
    """_map_row for a CSV row as csv.reader gives it (a list), with the mapping compiled once.

    It returns what _map_row would for an ordinary row, and _FALLBACK for anything else (a problem
    to report, an unexpected width, a column the header lacks): then the row is made into the dict
    csv.DictReader would make (as_dict) and goes through _map_row, so reports stay exactly those of
    the one definition. csv.DictReader and a dict per row cost ~3 us a row at 560k rows.
    """

    def __init__(
        self,
        mapping: Mapping,
        chain: Chain,
        header: list[str],
        tie_of: dict[str, int],
        parse: TimeParser,
    ) -> None:
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
        self.attributes = []
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

    def as_dict(self, row: list[str]) -> dict[str, Any]:
        """The row as csv.DictReader gives it, less the None key of surplus cells."""
        values: dict[str, Any] = dict(zip(self.header, row, strict=False))
        for name in self.header[len(row) :]:
            values[name] = None
        return values

    def __call__(self, line: int, row: list[str]) -> _Mapped | None:
        if not self.ok or len(row) != self.width:
            return _FALLBACK  # type: ignore[no-any-return]
        activity = row[self.activity].strip()
        if activity in self.ignore:
            return None
        known = self.activities.get(activity)
        case_key = row[self.case_key].strip()
        if known is None or not case_key:
            return _FALLBACK  # type: ignore[no-any-return]
        try:
            at = self.parse(row[self.timestamp])
        except ValueError:
            return _FALLBACK  # type: ignore[no-any-return]
        resolved = []
        for i, values, default in self.attributes:
            if i < 0:
                value = default
            else:
                cell = row[i].strip()
                value = default if not cell else (values.get(cell) if values else cell)
            if value is None:
                return _FALLBACK  # type: ignore[no-any-return]
            resolved.append(value)
        milestone, outcome, tie = known
        return _Mapped(case_key, milestone, outcome, at, tie, line, resolved[0], resolved[1])


def _read_csv_fast(
    path: Path, mapping: Mapping, chain: Chain, tie_of: dict[str, int], parse: TimeParser
) -> tuple[Iterator[tuple[int, list[str]]], _CsvRowMapper | None]:
    """Rows as read_csv_log numbers them (csv.reader, blank rows skipped), and their mapper."""
    handle = path.open("r", encoding=mapping.csv.encoding, newline="")
    reader = csv.reader(handle, delimiter=mapping.csv.delimiter)
    header = next(reader, None)
    if header is None:
        handle.close()
        return iter(()), None
    mapper = _CsvRowMapper(mapping, chain, header, tie_of, parse)

    def rows() -> Iterator[tuple[int, list[str]]]:
        with handle:
            before = 1  # as read_csv_log: a row's line is one after the previous row's last line
            for row in reader:
                if not row:
                    continue  # csv.DictReader skips blank rows
                yield before + 1, row
                before = reader.line_num

    return rows(), mapper


def import_rows(
    path: Path, mapping: Mapping, chain: Chain, progress: Any = None, *, compiled: bool = True
) -> Iterator[Row]:
    """The log's events as publish.Row objects: problems first, then events in replay order.

    `progress` (a tqdm bar, optional) counts the rows read, then is reset to the number of events
    to replay; each event Row has size 1, so check_and_send advances the same bar.
    `compiled=False` reads CSV with csv.DictReader and maps every row through _map_row: the
    definition the compiled CSV path is tested against.
    """
    source = str(path)
    tie_of = {a: i for i, a in enumerate(mapping.ties)} if isinstance(mapping.ties, list) else {}
    kept: dict[tuple[str, str], _Mapped] = {}
    parse = TimeParser(mapping.timestamp)
    specs: dict[str, ActivitySpec | None] = {}
    reader: Iterator[tuple[int, Any]]
    fast: _CsvRowMapper | None = None
    if mapping.format == "xes":
        reader = read_xes_log(path)
    elif not compiled:
        reader = read_csv_log(path, mapping)  # csv.DictReader, every row through _map_row
    else:
        reader, fast = _read_csv_fast(path, mapping, chain, tie_of, parse)
    every: list[_Mapped] = []
    keep_every = mapping.repeated_milestone == "all"
    keep_first = mapping.repeated_milestone == "first"
    for line, row in reader:
        if progress is not None and line % PROGRESS_EVERY == 0:
            progress.update(PROGRESS_EVERY)
        mapped = _FALLBACK if fast is None else fast(line, row)
        if mapped is _FALLBACK:
            if fast is not None:
                row = fast.as_dict(row)
            mapped = _map_row(mapping, chain, line, row, tie_of, parse, specs)
        if mapped is None:
            continue
        if not isinstance(mapped, _Mapped):  # (reason, detail)
            yield Row(source, line, None, mapped)
            continue
        if keep_every:
            every.append(mapped)
            continue
        key = (mapped.case_key, mapped.milestone)
        current = kept.setdefault(key, mapped)
        if current is mapped:  # the first row of this case and milestone
            continue
        earlier = (mapped.at, mapped.tie, mapped.line) < (current.at, current.tie, current.line)
        if earlier == keep_first:
            kept[key] = mapped
    if progress is not None:
        progress.reset(total=len(kept) + len(every))
        progress.set_description(f"{path.name}: publishing")
    times: dict[tuple[str, str], int] = {}  # occurrences so far per case and milestone
    for m in sorted([*kept.values(), *every], key=lambda m: (m.at, m.tie, m.line)):
        n = times[(m.case_key, m.milestone)] = times.get((m.case_key, m.milestone), 0) + 1
        event: dict[str, Any] = {
            "schema_version": 1,
            "event_id": f"{mapping.event_id_prefix}{m.line}",
            "case_key": m.case_key,
            "organisation": chain.milestones[m.milestone].organisation,
            "milestone": m.milestone,
            "occurred_at": m.at,  # orjson writes it as isoformat() does (checked in a test)
            "case_type": m.case_type,
            "district": m.district,
        }
        if m.outcome:
            event["outcome"] = m.outcome
        if n > 1:  # the second and later occurrences, in event time
            event["occurrence"] = str(n)
        yield Row(source, m.line, orjson.dumps(event), None, 1)  # compact, as json.dumps did


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
    add_quiet(p, lines=True)
    p.set_defaults(func=cmd_import)


def cmd_import(args: argparse.Namespace) -> int:
    from aiokafka.errors import KafkaError as AIOKafkaError
    from kafka.errors import KafkaError

    from ketenmonitor.batch_publish import BatchPublisher
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
    rows = import_rows(args.log, mapping, chain, progress=bar)
    report = PublishReport()
    try:
        with bar:
            if args.dry_run:
                check_and_send(rows, chain, lambda event, raw: None, report=report, progress=bar)
                where = "(dry run, nothing sent)"
            elif args.output:
                with args.output.open("wb") as out:
                    check_and_send(
                        rows,
                        chain,
                        lambda e, raw: out.write(raw + b"\n"),
                        report=report,
                        progress=bar,
                    )
                where = f"to {args.output}"
            else:
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
                where = f"to the partner topics {settings.partner_topic('<organisation>')}"
    except (PublishError, KafkaError, AIOKafkaError) as exc:
        print(f"ketenmonitor import-log: sending failed: {exc}", file=sys.stderr)
        return 3
    print_problems(report, args.max_report)
    print(f"{args.log}: {report.summary('valid' if args.dry_run else 'sent')} {where}")
    return 1 if report.rejected else 0
