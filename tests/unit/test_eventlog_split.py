"""import-log with the CSV log split among processes (plan_split, _SplitImport) sends exactly
what one process sends: the same messages in the same order and the same report.

Each part is mapped, kept (repeated_milestone first | last), sorted, checked and encoded by its
own process, and merged here. On test_eventlog_output's seeded log (repeats across parts, ties,
both DST switches, rows that cannot be mapped, rows the contract refuses), at many cut points;
with CRLF and LF line ends, blank lines, quoted cells holding newlines and delimiters; a cut that
parity puts inside a quoted cell (read as one instead); a failing child: one line, exit 3.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

from ketenmonitor import eventlog_import as ei
from ketenmonitor.cli import main
from ketenmonitor.publish import PublishReport, check_and_send
from tests.unit.test_eventlog_output import (
    BEFORE,
    CHAIN,
    MAPPING,
    digest,
    mapping_for,
    write_log,
)
from tests.unit.test_eventlog_processes import REFUSED, _fail_in_child, write_refused_log

ROOT = Path(__file__).resolve().parents[2]
MAPPING_FILE = ROOT / "examples" / "eventlog" / "mapping.yaml"
HEADER = ["zaaknummer", "activiteit", "tijdstip", "zaaktype", "arrondissement"]


@pytest.fixture(autouse=True)
def split_small_logs(monkeypatch):
    """Every log is split, into chunks of 37 events when sent."""
    monkeypatch.setattr(ei, "SPLIT_MIN_BYTES", 0)
    monkeypatch.setattr(ei, "CHUNK_EVENTS", 37)


def one_process(log: Path, mapping: ei.Mapping) -> tuple[list, PublishReport]:
    sent: list[tuple[str, bytes, bytes]] = []
    report = check_and_send(
        ei.import_rows(log, mapping, CHAIN),
        CHAIN,
        lambda e, raw: sent.append((e.organisation, raw, e.event_id.encode())),
    )
    return sent, report


def split(log: Path, mapping: ei.Mapping, n: int) -> tuple[list, PublishReport, int]:
    """What _import_in_processes sends when the log is split; the number of parts (0: not
    split, or read as one after a cut in a quoted cell)."""
    sent: list[tuple[str, bytes, bytes]] = []
    report = PublishReport()
    plan = ei.plan_split(log, mapping, n)
    if plan is None:
        return sent, report, 0
    with ei._SplitImport(log, plan, mapping, CHAIN) as parts:
        sorted_log = parts.run()
        if sorted_log is None:
            return sent, report, 0
        ei.send_chunks(sorted_log, parts, lambda o, raw, key: sent.append((o, raw, key)), report)
    return sent, report, len(plan.parts)


def same_report(a: PublishReport, b: PublishReport) -> None:
    assert (a.rows, a.sent, a.sent_by_organisation, a.rejected) == (
        b.rows, b.sent, b.sent_by_organisation, b.rejected,
    )
    assert a.problems == b.problems


@pytest.mark.parametrize(("repeated", "ties"), [k for k in BEFORE if k[0] != "all"])
def test_split_sends_what_one_process_sends_at_many_cuts(tmp_path, monkeypatch, repeated, ties):
    log = tmp_path / "log.csv"
    write_refused_log(log)
    mapping = mapping_for(repeated, ties)
    single, single_report = one_process(log, mapping)
    assert sum(single_report.rejected.values()) == 6 + len(REFUSED)
    for n, share in ((2, 0.5), (2, 0.1), (2, 0.93), (3, 0.5), (4, 0.3)):
        monkeypatch.setattr(ei, "FIRST_SHARE", share)
        sent, report, parts = split(log, mapping, n)
        assert parts == n
        assert sent == single
        same_report(report, single_report)


@pytest.mark.parametrize(("repeated", "ties"), [k for k in BEFORE if k[0] != "all"])
def test_split_equals_the_previous_output(tmp_path, repeated, ties):
    log = tmp_path / "log.csv"
    write_log(log)
    mapping = mapping_for(repeated, ties)
    assert digest(list(ei.import_rows(log, mapping, CHAIN))) == BEFORE[(repeated, ties)]
    single, _ = one_process(log, mapping)
    sent, _, parts = split(log, mapping, 2)
    assert parts == 2 and sent == single and len(sent) > 1000


def test_all_is_not_split(tmp_path):
    log = tmp_path / "log.csv"
    write_log(log)
    assert ei.plan_split(log, mapping_for("all", "chain"), 2) is None
    assert ei.plan_split(log, mapping_for("first", "chain"), 1) is None


def rewrite(source: Path, target: Path, newline: str, every: int, extra) -> None:
    """The rows of `source` written again with `newline` line ends, `extra(n, row)` after every
    `every`-th row (blank lines, rows with quoted cells)."""
    with source.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle, delimiter=";"))
    with target.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter=";", lineterminator=newline)
        for n, row in enumerate(rows):
            writer.writerow(row)
            if n and n % every == 0:
                handle.write(extra(n, row, newline))


def _quoted(n: int, row: list[str], newline: str) -> str:
    # A known activity and a district cell with a newline and a delimiter inside quotes (not
    # mapped: reported), and a quoted case key (mapped as usual).
    return (
        f'"{row[0]}";Betaald;{row[2]};Jeugd;"Noord-{newline}Holland;{n}"{newline}'
        f'"q{n:05d}";"Aangifte opgenomen";"{row[2]}";Jeugd;Amsterdam{newline}'
    )


@pytest.mark.parametrize("newline", ["\r\n", "\n"])
@pytest.mark.parametrize(
    "extra",
    [
        lambda n, row, newline: newline * (1 + n % 3),  # blank lines
        _quoted,
    ],
    ids=["blank-lines", "quoted-cells"],
)
def test_line_ends_blank_lines_and_quoted_cells(tmp_path, monkeypatch, newline, extra):
    source, log = tmp_path / "source.csv", tmp_path / "log.csv"
    write_refused_log(source)
    rewrite(source, log, newline, 7, extra)
    mapping = mapping_for("first", "chain")
    single, single_report = one_process(log, mapping)
    split_at_least_once = False
    for share in (0.2, 0.35, 0.5, 0.61, 0.77):
        monkeypatch.setattr(ei, "FIRST_SHARE", share)
        for n in (2, 3):
            sent, report, parts = split(log, mapping, n)
            split_at_least_once |= parts > 1
            assert sent == single
            same_report(report, single_report)
    assert split_at_least_once


def stray_quote_log(tmp_path: Path, row_31: str) -> Path:
    """40 rows, the fourth with a quote inside an unquoted cell, the 31st `row_31`."""
    log = tmp_path / "log.csv"
    rows = [f"{n:02d}-000{n:03d}-24;Aangifte opgenomen;03-03-2024 10:{n:02d};Jeugd;Amsterdam"
            for n in range(40)]
    rows[3] = 'ab"c;Verdachte gehoord;03-03-2024 11:00;Jeugd;Amsterdam'  # a stray quote
    rows[30] = row_31
    log.write_text(";".join(HEADER) + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return log


def test_a_cut_inside_a_quoted_cell_reads_the_log_as_one(tmp_path, monkeypatch):
    """A quote inside an unquoted cell makes the quotes' parity wrong: the only line end with
    an even number of quotes before it is inside a quoted cell; the part before it then ends
    in that cell, and the log is read as one, with the same result."""
    log = stray_quote_log(tmp_path, '31-000031-24;Betaald;03-03-2024 12:00;Jeugd;"Noord-\nHolland"')
    monkeypatch.setattr(ei, "FIRST_SHARE", 0.2)
    mapping = mapping_for("first", "chain")
    plan = ei.plan_split(log, mapping, 2)
    assert plan is not None
    cut = plan.parts[1][0]
    assert plan.text[cut - 7 : cut] == "Noord-\n"  # inside the quoted cell
    with ei._SplitImport(log, plan, mapping, CHAIN) as parts:
        assert parts.run() is None
    single, single_report = one_process(log, mapping)
    assert len(single) == 38 and len(single_report.problems) == 2
    out1, out2 = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    for out, n in ((out1, "1"), (out2, "2")):
        status = main(["import-log", str(log), "--mapping", str(MAPPING_FILE), "--output",
                       str(out), "--quiet", "--processes", n])
        assert status == 1
    assert out1.read_bytes() == out2.read_bytes() == b"".join(raw + b"\n" for _, raw, _ in single)


def test_a_child_that_fails_after_a_cut_inside_a_quoted_cell_reads_the_log_as_one(
    tmp_path, monkeypatch
):
    """The same stray quote, and the cut right after a line end inside the first cell of a row:
    the child's part starts with that cell's closing quote, opens a quoted field that runs to
    the end, and fails (here on a small field limit; in a large log on the 128 KiB one). The
    part before did not end cleanly, so the log is read as one instead of the command failing."""
    log = stray_quote_log(tmp_path, '"31-000031-24\n";Betaald;03-03-2024 12:00;Jeugd;Amsterdam')
    monkeypatch.setattr(ei, "FIRST_SHARE", 0.2)
    mapping = mapping_for("first", "chain")
    plan = ei.plan_split(log, mapping, 2)
    assert plan is not None
    cut = plan.parts[1][0]
    assert plan.text[cut - 14 : cut + 2] == '"31-000031-24\n";'  # inside the quoted cell
    limit = csv.field_size_limit(200)
    try:
        with ei._SplitImport(log, plan, mapping, CHAIN) as parts:
            assert parts.run() is None
        single, _ = one_process(log, mapping)
        out1, out2 = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
        statuses = [
            main(["import-log", str(log), "--mapping", str(MAPPING_FILE), "--output",
                  str(out), "--quiet", "--processes", n])
            for out, n in ((out1, "1"), (out2, "2"))
        ]
    finally:
        csv.field_size_limit(limit)
    assert statuses[0] == statuses[1] == 1  # the stray-quoted row's case key is rejected
    assert single and out1.read_bytes() == out2.read_bytes() == b"".join(
        raw + b"\n" for _, raw, _ in single
    )


def test_repeated_ties_entries_keep_the_replay_order_of_one_process(tmp_path):
    """A tie is an index into `ties`: with an activity listed more than once, the index can
    exceed the number of activities, and the order key must still have room for it."""
    log = tmp_path / "log.csv"
    rows = [f"{n:02d}-000{n:03d}-24;Sepot;2024-03-03T10:00:00.000000+01:00;Jeugd;Amsterdam"
            if n % 2 else
            f"{n:02d}-000{n:03d}-24;Aangifte opgenomen;2024-03-03T10:00:00.000001+01:00;Jeugd;"
            "Amsterdam" for n in range(40)]
    log.write_text(";".join(HEADER) + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    mapping = ei.Mapping.model_validate(dict(
        MAPPING, repeated_milestone="first", timestamp={"column": "tijdstip"},  # ISO 8601
        ties=["Aangifte opgenomen"] * (len(MAPPING["activities"]) + 40) + ["Sepot"],
    ))
    single, single_report = one_process(log, mapping)
    assert single
    sent, report, n = split(log, mapping, 2)
    assert n == 2
    assert sent == single
    same_report(report, single_report)


def test_the_command_writes_the_same_file_and_report_split(tmp_path, capsys):
    log = tmp_path / "log.csv"
    write_refused_log(log)
    outputs = []
    for n in ("1", "2", "3"):
        out = tmp_path / f"out{n}.jsonl"
        status = main(["import-log", str(log), "--mapping", str(MAPPING_FILE), "--output",
                       str(out), "--quiet", "--processes", n])
        printed = capsys.readouterr()
        summary = printed.out.replace(f"out{n}.jsonl", "out.jsonl")
        outputs.append((status, out.read_bytes(), printed.err, summary))
    assert outputs[0] == outputs[1] == outputs[2]
    assert outputs[0][0] == 1 and "future_timestamp" in outputs[0][2]


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("raise", "the second process failed: RuntimeError: boom; stopped"),
        ("exit", "the second process ended unexpectedly (exit code 9); stopped"),
    ],
)
def test_a_failing_child_ends_the_command_with_one_line(
    tmp_path, capsys, monkeypatch, how, message
):
    log = tmp_path / "log.csv"
    write_log(log)
    monkeypatch.setattr(ei, "check_event", _fail_in_child(os.getpid(), how))
    out = tmp_path / "out.jsonl"
    status = main(["import-log", str(log), "--mapping", str(MAPPING_FILE), "--output", str(out),
                   "--quiet", "--processes", "2"])
    err = capsys.readouterr().err
    assert status == 3
    assert err.count("\n") == 1 and err.startswith("ketenmonitor import-log: ") and message in err
