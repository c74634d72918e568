"""Publish a partner's chain events from a JSON Lines or CSV file, checked against the contract.

    ketenmonitor publish events.jsonl --organisation police
    ketenmonitor publish events.csv --organisation om --dry-run      # validate only

    report = publish_file(Path("events.jsonl"), "police", chain, send)   # send(value, key)
    print(report.summary())

Every row is validated with schemas/events.py `check_event` (parse_event's verdict, as the
monitor will check it; no pydantic model built where the compiled path is sure) before anything is
sent: an invalid row is reported as `file:line: reason: detail` and never sent, the valid rows go to
the organisation's topic through batch_publish.BatchPublisher (idempotent, acks=all, retries;
whole record batches). A row whose event_id already occurred earlier in the same file is refused
too (`duplicate_in_file`): the monitor would ignore it, so it is almost always a mistake in the
export.

JSON Lines: one event object per line, sent byte for byte. CSV: a header with the contract's field
names; empty cells are left out, `schema_version` and `revision` are read as integers and
`retracted` as a boolean (true/false); the row is sent as compact JSON.
Exit status: 0 all rows sent, 1 some rows rejected, 2 usage error, 3 sending failed.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from ketenmonitor.domain.chain import Chain
from ketenmonitor.progress import PROGRESS_MIN_BYTES, progress_display
from ketenmonitor.schemas.events import EventRejected, check_event

Send = Callable[[bytes, bytes], None]  # (value, key)
PROGRESS_EVERY = 4096  # rows between progress-bar updates
INT_FIELDS = ("schema_version", "revision")
_INT = re.compile(r"^-?\d+$")
_BOOLS = {"true": True, "false": False, "1": True, "0": False}


class PublishUsageError(ValueError):
    """The file cannot be read as events at all (missing, unknown format, no CSV header)."""


class Row(NamedTuple):
    """One row of an input file: the raw event bytes, or why it could not even become them.

    A named tuple, not a frozen dataclass: one is made per row, and a frozen dataclass's
    __init__ costs a Python-level setattr per field (about 1.5 us a row at 50k rows/s).
    """

    source: str
    line: int
    raw: bytes | None
    problem: tuple[str, str] | None = None  # (reason, detail)
    size: int = 0  # bytes of input consumed, for the progress bar


@dataclass(frozen=True, slots=True)
class Problem:
    source: str
    line: int
    reason: str
    detail: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.reason}: {self.detail}"


@dataclass
class PublishReport:
    rows: int = 0
    sent: int = 0
    sent_by_organisation: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    problems: list[Problem] = field(default_factory=list)

    def summary(self, sent: str = "sent") -> str:
        reasons = ", ".join(f"{r} {n}" for r, n in sorted(self.rejected.items()))
        where = ", ".join(f"{o} {n}" for o, n in sorted(self.sent_by_organisation.items()))
        return (
            f"{self.rows} rows: {self.sent} {sent}"
            + (f" ({where})" if where else "")
            + f", {sum(self.rejected.values())} rejected"
            + (f" ({reasons})" if reasons else "")
        )


# -- reading ----------------------------------------------------------------------------------
def read_jsonl(path: Path) -> Iterator[Row]:
    source = str(path)
    with path.open("rb", buffering=1 << 20) as handle:
        for number, line in enumerate(handle, start=1):
            raw = line.rstrip(b"\r\n")
            if raw.strip():
                yield Row(source, number, raw, None, len(line))


def csv_row_to_event(row: dict[str, str]) -> dict[str, Any]:
    """A CSV row as an event object: empty cells left out, numbers and booleans converted."""
    event: dict[str, Any] = {}
    for name, value in row.items():
        if value is None or value == "":
            continue
        if name in INT_FIELDS and _INT.match(value.strip()):
            event[name] = int(value)
        elif name == "retracted" and value.strip().lower() in _BOOLS:
            event[name] = _BOOLS[value.strip().lower()]
        else:
            event[name] = value  # anything else stays text: the contract says what is wrong
    return event


def read_csv(path: Path) -> Iterator[Row]:
    with path.open("r", encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames:
            raise PublishUsageError(f"{path}: no CSV header")
        before = 1
        for row in reader:
            line = before + 1
            before = reader.line_num
            if None in row:
                yield Row(str(path), line, None, ("wrong_type", "more cells than header columns"))
                continue
            raw = json.dumps(csv_row_to_event(row), separators=(",", ":")).encode()
            yield Row(str(path), line, raw, size=sum(len(v or "") + 1 for v in row.values()))


def read_file(path: Path, fmt: str | None = None) -> Iterator[Row]:
    if not path.is_file():
        raise PublishUsageError(f"{path}: no such file")
    fmt = fmt or ("csv" if path.suffix.lower() == ".csv" else "jsonl")
    if fmt == "csv":
        return read_csv(path)
    if fmt == "jsonl":
        return read_jsonl(path)
    raise PublishUsageError(f"unknown format {fmt!r}: use jsonl or csv")


# -- checking and sending ---------------------------------------------------------------------
def check_and_send(
    rows: Iterable[Row],
    chain: Chain,
    send: Callable[[Any, bytes], None],
    organisation: str | None = None,
    report: PublishReport | None = None,
    progress: Any = None,
) -> PublishReport:
    """Validate each row; send the valid ones with `send(event, raw)`; report the others.

    Rows are checked with schemas/events.py `check_event`: parse_event's verdict, and an event
    whose event_id, case_key, organisation (and the other contract fields) `send` may read, not
    necessarily a ChainEventV1 (building the model for every row would cost a sixth of the run).

    `organisation`: the partner whose topic the rows go to (its events only); None lets every
    event go to its own organisation's topic (the event-log import does that).
    `progress`: a tqdm bar or progress.ProgressLines, advanced by the rows' sizes every
    PROGRESS_EVERY rows; one with a `sent` attribute is told the events sent so far too.
    """
    report = report or PublishReport()
    first_line: dict[str, int] = {}
    rejected, problems = report.rejected, report.problems
    by_organisation = report.sent_by_organisation
    rows_seen = sent = unreported = consumed = 0
    tells_sent = hasattr(progress, "sent")
    try:
        for row in rows:
            rows_seen += 1
            if progress is not None:
                consumed += row.size
                unreported += 1
                if unreported == PROGRESS_EVERY:  # tqdm.update costs ~1 us: not per row
                    if tells_sent:
                        progress.sent = report.sent + sent
                    progress.update(consumed)
                    unreported = consumed = 0
            problem = row.problem
            if problem is None and row.raw is not None:
                try:
                    event = check_event(row.raw, chain, organisation)
                except EventRejected as exc:
                    problem = (exc.reason, exc.detail)
                else:
                    earlier = first_line.setdefault(event.event_id, row.line)
                    if earlier != row.line:
                        detail = f"event_id {event.event_id!r} also on line {earlier}"
                        problem = ("duplicate_in_file", detail)
            if problem is not None:
                rejected[problem[0]] += 1
                problems.append(Problem(row.source, row.line, *problem))
                continue
            send(event, row.raw or b"")
            sent += 1
            by_organisation[event.organisation] += 1
    finally:
        report.rows += rows_seen
        report.sent += sent
        if tells_sent:
            progress.sent = report.sent
        if progress is not None and consumed:
            progress.update(consumed)
    return report


def publish_file(
    path: Path,
    organisation: str,
    chain: Chain,
    send: Send,
    fmt: str | None = None,
    progress: bool = False,
    key_by_case: bool = False,
    verb: str = "sent",
) -> PublishReport:
    """Validate every row of `path` and hand the valid ones to send(value, key): the key is the
    event id, or with `key_by_case` the case key (a partner on the one-hop path).

    `progress`: show it on stderr (progress.progress_display: a bar on a terminal, else a line
    every few seconds); `verb` says what the line counts ("sent", or "valid" in a dry run).
    """
    bar = progress_display(
        path,
        not progress,
        desc=path.name,
        total=path.stat().st_size if path.is_file() else None,
        unit="B",
        verb=verb,
        command="ketenmonitor publish",
    )
    with bar:
        return check_and_send(
            read_file(path, fmt),
            chain,
            (lambda event, raw: send(raw, event.case_key.encode()))
            if key_by_case
            else (lambda event, raw: send(raw, event.event_id.encode())),
            organisation,
            progress=bar,
        )


def print_problems(report: PublishReport, limit: int, stream: Any = None) -> None:
    stream = stream or sys.stderr
    for problem in report.problems[:limit]:
        print(problem, file=stream)
    if len(report.problems) > limit:
        print(f"... and {len(report.problems) - limit} more rejected rows", file=stream)


# -- command ----------------------------------------------------------------------------------
def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "publish", help="publish a partner's events from JSON Lines or CSV, validated first"
    )
    p.add_argument("file", type=Path)
    p.add_argument("--organisation", required=True, help="partner id, e.g. police")
    p.add_argument("--format", choices=("jsonl", "csv"), default=None, help="default: by suffix")
    p.add_argument("--dry-run", action="store_true", help="validate only, send nothing")
    p.add_argument("--bootstrap", default=None, help="Kafka bootstrap (default from settings)")
    p.add_argument("--max-report", type=int, default=1000, help="rejected rows to list")
    p.add_argument(
        "--key-by",
        choices=("event-id", "case-key"),
        default=None,
        help="message key: case-key puts each event in its case's partition (one hop, "
        "docs/partners.md); default: case-key for a partner in KETENMONITOR_ONE_HOP_PARTNERS",
    )
    add_quiet(p, lines=True)
    p.set_defaults(func=cmd_publish)


def default_key_by(settings: Any, organisation: str) -> str:
    """case-key for a partner the deployment lists as keying by case, else event-id."""
    return "case-key" if organisation in settings.one_hop_partner_ids else "event-id"


def add_quiet(parser: Any, lines: bool = False) -> None:
    """--quiet (alias --no-progress): no progress on stderr.

    `lines`: the command shows progress lines where stderr is no terminal (publish, import-log:
    progress.progress_display); otherwise only a bar on a terminal.
    """
    parser.add_argument(
        "--quiet",
        "--no-progress",
        dest="quiet",
        action="store_true",
        help=(
            "no progress on stderr (a bar on a terminal, else a line every 10 s on a long run)"
            if lines
            else "no progress bar on stderr (there is none either when stderr is not a terminal)"
        ),
    )


def show_progress(path: Path | None, quiet: bool) -> bool:
    """A progress bar on stderr: a terminal, not --quiet, and (for a file) worth one.

    (`simulate` asks this; `publish` and `import-log` use progress.progress_display, which shows
    lines where there is no terminal.)
    """
    large = path is None or (path.is_file() and path.stat().st_size >= PROGRESS_MIN_BYTES)
    return large and not quiet and sys.stderr.isatty()


def cmd_publish(args: argparse.Namespace) -> int:
    from aiokafka.errors import KafkaError as AIOKafkaError
    from kafka.errors import KafkaError

    from ketenmonitor.batch_publish import BatchPublisher
    from ketenmonitor.domain.chain import load_chain
    from ketenmonitor.gc_tuning import tune_garbage_collector
    from ketenmonitor.kafka_io import PublishError
    from ketenmonitor.partitioning import kafka_partition
    from ketenmonitor.settings import Settings

    settings = Settings()
    tune_garbage_collector(settings.gc_young_threshold)
    chain = load_chain(settings.chain_file)
    if args.organisation not in chain.partner_ids:
        print(
            f"ketenmonitor publish: unknown organisation {args.organisation!r}; "
            f"known: {', '.join(chain.partner_ids)}",
            file=sys.stderr,
        )
        return 2
    topic = settings.partner_topic(args.organisation)
    if not args.file.is_file():
        print(f"ketenmonitor publish: {args.file}: no such file", file=sys.stderr)
        return 2
    progress = not args.quiet
    key_by_case = (args.key_by or default_key_by(settings, args.organisation)) == "case-key"
    try:
        if args.dry_run:
            report = publish_file(
                args.file, args.organisation, chain, lambda v, k: None, args.format, progress,
                verb="valid",
            )
        else:
            with BatchPublisher(args.bootstrap or settings.kafka_bootstrap) as publisher:
                if key_by_case:  # the partition Kafka's default partitioner gives the case key
                    partitions = publisher.partition_count(topic)

                    def send(value: bytes, key: bytes) -> None:
                        publisher.send_raw(topic, value, key, kafka_partition(key, partitions))
                else:

                    def send(value: bytes, key: bytes) -> None:
                        publisher.send_raw(topic, value, key=key)

                report = publish_file(
                    args.file, args.organisation, chain, send, args.format, progress, key_by_case
                )
    except PublishUsageError as exc:
        print(f"ketenmonitor publish: {exc}", file=sys.stderr)
        return 2
    except (PublishError, KafkaError, AIOKafkaError) as exc:
        print(f"ketenmonitor publish: sending to {topic} failed: {exc}", file=sys.stderr)
        return 3
    print_problems(report, args.max_report)
    if args.dry_run:
        print(f"{args.file}: {report.summary('valid')} (dry run, nothing sent)")
    else:
        print(f"{args.file}: {report.summary()} to {topic}")
    return 1 if report.rejected else 0
