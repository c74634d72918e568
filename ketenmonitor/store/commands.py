"""Subcommands of the case-fact store.

    ketenmonitor store upgrade                                  # migrations to the newest revision
    ketenmonitor report --period 2026-10 | 2026Q3 | --from 2026-01 --to 2026Q3
                        [--format table|csv|html] [--output F] [--suppress-below K]
                        [--timezone Europe/Amsterdam]
    ketenmonitor stuck --stage court_trial --top 20 [--at 2026-11-01T00:00:00+00:00] [--format csv]
    ketenmonitor stuck --organisation om --dormant     # a partner's dormant cases, oldest first
    ketenmonitor replay --from-file events.jsonl | --from-topics [--known-at T] [--no-progress]

The store is KETENMONITOR_STORE_URL (or --store-url), e.g. sqlite:///var/ketenmonitor/store.db.
`report` and `stuck` only read an existing store: a mistyped URL is refused with one line instead
of creating an empty database that reports zeros.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from ketenmonitor.cli_common import ServiceUnreachableError, console, fail
from ketenmonitor.domain.chain import load_chain
from ketenmonitor.settings import Settings
from ketenmonitor.store.errors import StoreError
from ketenmonitor.store.periods import DEFAULT_TIMEZONE, PeriodError, parse_period, parse_range

if TYPE_CHECKING:
    from sqlalchemy import Engine

# SQLAlchemy and Alembic (ketenmonitor.store.engine) are imported by the commands that use them:
# registering these commands must not cost every other command most of a second.


class UsageError(ValueError):
    pass


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("store", help="case-fact store maintenance")
    store_sub = p.add_subparsers(dest="store_command", required=True)
    up = store_sub.add_parser("upgrade", help="create the store or apply its migrations")
    _store_url_option(up)
    up.set_defaults(func=_guarded(cmd_store_upgrade))

    p = subparsers.add_parser("report", help="event-time report of a period or a range")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--period", help="YYYY-MM-DD, YYYY-MM, YYYYQn or YYYY")
    which.add_argument("--from", dest="range_from", metavar="PERIOD",
                       help="start of a range (with --to): the first period it covers")
    p.add_argument("--to", dest="range_to", metavar="PERIOD",
                   help="end of a range (with --from): the last period it covers")
    p.add_argument("--format", choices=("table", "csv", "html"), default="table",
                   help="a table for the terminal, CSV, or one self-contained HTML page")
    p.add_argument("--output", type=Path, default=None, help="file to write (default: stdout)")
    p.add_argument("--suppress-below", type=int, default=0, metavar="K",
                   help='show counts of 1..K-1 cases (and figures from them) as "<K"')
    p.add_argument("--timezone", default=DEFAULT_TIMEZONE, help="time zone of the period bounds")
    _store_url_option(p)
    p.set_defaults(func=_guarded(cmd_report))

    p = subparsers.add_parser(
        "stuck", help="oldest open cases of a stage or partner (pseudonymous)"
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--stage", help="stage id from the chain definition")
    which.add_argument("--organisation",
                       help="partner id: the cases in every stage it owns (its feedback list)")
    p.add_argument("--dormant", action="store_true",
                   help="only dormant cases (no event past the stage's dormant_after_days)")
    p.add_argument("--top", type=int, default=20, help="how many cases to list, oldest first")
    p.add_argument("--at", default=None,
                   help="list the cases open at this moment (ISO 8601 + offset) and age them"
                        " to it (default: $KETENMONITOR_AGE_REFERENCE_TIME, else now)")
    p.add_argument("--format", choices=("table", "csv"), default="table", help="output format")
    _store_url_option(p)
    p.set_defaults(func=_guarded(cmd_stuck))

    p = subparsers.add_parser("replay", help="rebuild the store from the partner topics or a file")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--from-topics", action="store_true", help="partner topics, from the start")
    source.add_argument("--from-file", type=Path, help="JSON Lines of raw partner messages")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--bootstrap", default=None, metavar="HOST:PORT",
                   help="Kafka bootstrap servers for --from-topics "
                   "(default: $KETENMONITOR_KAFKA_BOOTSTRAP, else 127.0.0.1:9092)")
    p.add_argument("--known-at", default=None,
                   help="with --from-topics: only messages published at or before this moment"
                        " (ISO 8601 + offset): the store as the monitor knew it then")
    _store_url_option(p)
    p.set_defaults(func=_guarded(cmd_replay), needs_kafka=lambda a: a.from_topics)


def _store_url_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store-url", default=None,
                   help="store URL, sqlite:///FILE or postgresql://USER@HOST/DB "
                   "(default: $KETENMONITOR_STORE_URL)")


def _guarded(func: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            return int(func(args))
        except (ValidationError, BrokenPipeError, ServiceUnreachableError):
            raise  # reported by the command line's main (cli.py) with their own status
        except (StoreError, PeriodError, UsageError, ValueError, OSError) as exc:
            return fail(args.command, exc)

    return run


def _store_url(args: argparse.Namespace, settings: Settings) -> str:
    url = args.store_url or settings.store_url
    if not url:
        raise UsageError("no store: set KETENMONITOR_STORE_URL or pass --store-url")
    return str(url)


def existing_store(url: str) -> Engine:
    """An engine on a store that exists and holds Ketenmonitor's tables (brought to the newest
    migration); never creates a database, so a mistyped URL cannot report an empty store."""
    from alembic.migration import MigrationContext
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from ketenmonitor.store.engine import make_engine, upgrade

    hint = ("check --store-url / KETENMONITOR_STORE_URL; a store is created by a worker, "
            "`ketenmonitor replay` or `ketenmonitor store upgrade`")
    try:
        parsed = make_url(url)
    except Exception:
        raise UsageError(f"not a database URL: {_safe(url)} (e.g. sqlite:///store.db)") from None
    file = parsed.database if parsed.get_backend_name() == "sqlite" else None
    if file not in (None, "", ":memory:") and not Path(str(file)).is_file():
        raise UsageError(f"no store at {file}: {hint}")
    engine = make_engine(url)
    where = engine.url.render_as_string(hide_password=True)
    try:
        with engine.connect() as connection:
            revision = MigrationContext.configure(connection).get_current_revision()
    except SQLAlchemyError as exc:
        first = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise ServiceUnreachableError(f"cannot open the store at {where}: {first}") from None
    if revision is None:
        raise UsageError(f"{where} holds no Ketenmonitor store: {hint}")
    upgrade(engine)
    return engine


def _safe(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "the given URL"


def cmd_store_upgrade(args: argparse.Namespace) -> int:
    from ketenmonitor.store.engine import make_engine, upgrade

    engine = make_engine(_store_url(args, Settings()))
    upgrade(engine)
    print(f"store at {engine.url.render_as_string(hide_password=True)} is up to date")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from ketenmonitor.store.engine import upgrade
    from ketenmonitor.store.html_report import render_html
    from ketenmonitor.store.render import print_table, write_csv
    from ketenmonitor.store.report import build_report

    settings = Settings()
    chain = load_chain(settings.chain_file)
    if args.period is not None:
        if args.range_to is not None:
            raise UsageError("--to goes with --from, not with --period")
        period = parse_period(args.period, args.timezone)
    else:
        if args.range_to is None:
            raise UsageError("--from needs --to")
        period = parse_range(args.range_from, args.range_to, args.timezone)
    engine = existing_store(_store_url(args, settings))
    upgrade(engine)  # an existing store gets the newest migrations (0002: occurrences)
    report = build_report(engine, chain, period)
    k = args.suppress_below
    out = args.output.open("w", encoding="utf-8", newline="") if args.output else sys.stdout
    try:
        if args.format == "csv":
            write_csv(report, out, k)
        elif args.format == "html":
            out.write(render_html(report, chain, k))
        else:
            print_table(report, k, file=out)
    finally:
        if args.output:
            out.close()
    if args.output:
        print(f"wrote the {args.format} report of {period.label} to {args.output}")
    return 0


def cmd_stuck(args: argparse.Namespace) -> int:
    from ketenmonitor.store.engine import upgrade
    from ketenmonitor.store.stuck import stuck_cases

    settings = Settings()
    chain = load_chain(settings.chain_file)
    at = settings.age_reference_timestamp(time.time()) if args.at is None else (
        _aware(args.at).timestamp()
    )
    engine = existing_store(_store_url(args, settings))
    upgrade(engine)
    cases = stuck_cases(engine, chain, args.stage, args.top, at,
                        organisation=args.organisation, dormant_only=args.dormant)
    header = ["pseudonym", "stage", "entered_at", "age_days", "last_milestone",
              "last_milestone_at", "case_type", "district", "dormant"]
    lines = [
        [c.pseudonym, c.stage, _iso(c.entered_at), f"{c.age_seconds / 86400:.1f}",
         c.last_milestone, _iso(c.last_milestone_at), c.case_type, c.district,
         "yes" if c.dormant else "no"]
        for c in cases
    ]
    if args.format == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(lines)
        return 0
    from rich.table import Table

    where = args.stage or f"the stages of {args.organisation}"
    kind = "dormant" if args.dormant else "open"
    table = Table(title=f"Oldest {kind} cases in {where} at {_iso(at)}")
    for name in header:
        table.add_column(name)
    for line in lines:
        table.add_row(*line)
    console(width=180).print(table)
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from ketenmonitor.store.replay import Replayer, replay_file, replay_topics
    from ketenmonitor.store.sink import CaseFactSink

    settings = Settings()
    chain = load_chain(settings.chain_file)
    sink = CaseFactSink.from_url(_store_url(args, settings), chain)
    sink.start()
    replayer = Replayer(chain, settings.pseudonym_secret(), settings.partitions, sink)
    progress = not args.no_progress
    known_at = None if args.known_at is None else _aware(args.known_at).timestamp()
    if known_at is not None and args.from_file is not None:
        raise UsageError("--known-at needs --from-topics (a file has no publication times)")
    try:
        if args.from_file is not None:
            replay_file(args.from_file, replayer, progress=progress)
        else:
            topics = {settings.partner_topic(p): p for p in chain.partner_ids}
            replay_topics(settings.kafka_bootstrap, topics, replayer, progress=progress,
                          known_at=known_at)
    finally:
        sink.close()
    print(json.dumps(replayer.summary()))
    return 0


def _aware(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise UsageError(f"--at {text!r} needs a UTC offset, e.g. 2026-11-01T00:00:00+01:00")
    return moment


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")
