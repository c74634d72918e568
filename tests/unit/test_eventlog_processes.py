"""import-log with a second process (--processes 2) sends exactly what one process sends.

The same messages (organisation, so topic; key; value), in the same order, and the same report
(rows, counts, every rejection with its line, in order), on test_eventlog_output's seeded log
(repeats, ties, both DST switches, rows that cannot be mapped) with rows the contract refuses
added; chunks made small so that the log is split into many, among both processes. And: a log
of a few rows forks nothing; a failing or vanished child ends the command with one line and a
non-zero status, without hanging.
"""

from __future__ import annotations

import csv
import json
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
    independent,
    mapping_for,
    write_log,
)

ROOT = Path(__file__).resolve().parents[2]
MAPPING_FILE = ROOT / "examples" / "eventlog" / "mapping.yaml"
# Rows the mapping accepts and the contract refuses (a case key with a space, one too long, a
# time in the future): rejected by the check, in replay order, by whichever process has them.
REFUSED = [
    ["zaak 12", "Aangifte opgenomen", "03-03-2024 10:00"],
    ["7" * 70, "Verdachte gehoord", "04-03-2024 11:00"],
    ["11-000001-24", "Aangifte opgenomen", "01-01-2099 09:00"],
]


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    """Chunks of 37 events: the fixture's ~2,000 events make ~50 chunks, forked for."""
    monkeypatch.setattr(ei, "CHUNK_EVENTS", 37)
    monkeypatch.setattr(ei, "DRAIN_EVERY", 5)
    monkeypatch.setattr(ei, "FORK_MIN_EVENTS", 74)


def write_refused_log(path: Path) -> None:
    write_log(path)
    with path.open("a", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter=";")
        for key, activity, stamp in REFUSED:
            writer.writerow([key, activity, stamp, "Politierechter", "Amsterdam"])


def one_process(log: Path, mapping: ei.Mapping) -> tuple[list, PublishReport]:
    sent: list[tuple[str, bytes, bytes]] = []
    report = check_and_send(
        ei.import_rows(log, mapping, CHAIN),
        CHAIN,
        lambda e, raw: sent.append((e.organisation, raw, e.event_id.encode())),
    )
    return sent, report


def processes(
    log: Path, mapping: ei.Mapping, n: int, child_chunks: int = 2
) -> tuple[list, PublishReport, int]:
    sent: list[tuple[str, bytes, bytes]] = []
    report = PublishReport()
    sorted_log = ei.read_sorted(log, mapping, CHAIN)
    with ei._Encoder(sorted_log, mapping, CHAIN, n, child_chunks) as encoder:
        children = encoder.children
        ei.send_chunks(sorted_log, encoder, lambda o, raw, key: sent.append((o, raw, key)), report)
    return sent, report, children


def same_report(a: PublishReport, b: PublishReport) -> None:
    assert (a.rows, a.sent, a.sent_by_organisation, a.rejected) == (
        b.rows, b.sent, b.sent_by_organisation, b.rejected,
    )
    assert a.problems == b.problems


@pytest.mark.parametrize(("repeated", "ties"), list(BEFORE))
def test_two_processes_send_what_one_sends_and_the_previous_output(tmp_path, repeated, ties):
    log = tmp_path / "log.csv"
    write_log(log)
    mapping = mapping_for(repeated, ties)
    assert digest(list(ei.import_rows(log, mapping, CHAIN))) == BEFORE[(repeated, ties)]
    single, single_report = one_process(log, mapping)
    for n, child_chunks in ((2, 2), (2, 3), (3, 1)):
        sent, report, children = processes(log, mapping, n, child_chunks)
        assert children == n - 1
        assert sent == single
        same_report(report, single_report)
    events, problems = independent(log, repeated, ties)
    assert [raw for _, raw, _ in sent] == events
    assert [(p.line, p.reason) for p in report.problems] == problems
    assert [key for _, _, key in sent] == [json.loads(e)["event_id"].encode() for e in events]
    assert all(key.startswith(MAPPING["event_id_prefix"].encode()) for _, _, key in sent)


@pytest.mark.parametrize("repeated", ["first", "all"])
def test_rows_the_contract_refuses_are_reported_in_order_by_either_process(tmp_path, repeated):
    log = tmp_path / "log.csv"
    write_refused_log(log)
    mapping = mapping_for(repeated, "chain")
    single, single_report = one_process(log, mapping)
    lines = {p.line: p.reason for p in single_report.problems}
    first_refused = max(lines) - len(REFUSED) + 1  # REFUSED are the log's last rows
    assert [lines.get(first_refused + n) for n in range(3)] == [
        "invalid_value", "invalid_value", "future_timestamp",
    ]
    assert sum(single_report.rejected.values()) == 6 + len(REFUSED)
    sent, report, _ = processes(log, mapping, 2)
    assert sent == single
    same_report(report, single_report)


def run_cli(tmp_path: Path, log: Path, *options: str) -> tuple[int, bytes]:
    out = tmp_path / f"out{'-'.join(options)}.jsonl"
    status = main(
        ["import-log", str(log), "--mapping", str(MAPPING_FILE), "--output", str(out),
         "--quiet", *options]
    )
    return status, out.read_bytes() if out.exists() else b""


def test_the_command_writes_the_same_file_and_report_with_either(tmp_path, capsys):
    log = tmp_path / "log.csv"
    write_refused_log(log)
    one = run_cli(tmp_path, log, "--processes", "1")
    one_out = capsys.readouterr()
    two = run_cli(tmp_path, log, "--processes", "2")
    two_out = capsys.readouterr()
    assert one[0] == two[0] == 1  # rows rejected
    assert one[1] == two[1] and one[1].count(b"\n") > 1000
    assert one_out.err == two_out.err and "future_timestamp" in one_out.err
    assert one_out.out.replace("out--processes-1", "X") == two_out.out.replace(
        "out--processes-2", "X"
    )
    dry = main(["import-log", str(log), "--mapping", str(MAPPING_FILE), "--dry-run", "--quiet"])
    assert dry == 1 and capsys.readouterr().err == one_out.err


def test_a_log_of_a_few_rows_forks_nothing(tmp_path, capsys):
    log = MAPPING_FILE.parent / "sample_log.csv"
    mapping = ei.load_mapping(MAPPING_FILE, CHAIN)
    single, single_report = one_process(log, mapping)
    sent, report, children = processes(log, mapping, 2)
    assert children == 0 and sent == single and len(sent) == 41
    same_report(report, single_report)
    assert run_cli(tmp_path, log, "--processes", "2") == run_cli(tmp_path, log, "--processes", "1")


def test_an_empty_log_and_a_log_of_only_bad_rows(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text("zaaknummer;activiteit;tijdstip;zaaktype;arrondissement\n", encoding="utf-8")
    mapping = ei.load_mapping(MAPPING_FILE, CHAIN)
    sent, report, children = processes(log, mapping, 2)
    assert (sent, report.rows, report.problems, children) == ([], 0, [], 0)
    with log.open("a", encoding="utf-8") as handle:
        for n in range(200):  # all refused by the contract: chunks with nothing to send
            handle.write(f"zaak {n};Aangifte opgenomen;03-03-2024 10:00;Jeugd;Amsterdam\n")
    single, single_report = one_process(log, mapping)
    sent, report, children = processes(log, mapping, 2)
    assert children == 1 and sent == single == []
    same_report(report, single_report)
    assert report.rejected["invalid_value"] == 200


def _fail_in_child(parent: int, how: str):
    real = ei.check_event

    def check(raw, chain, organisation=None):
        if os.getpid() != parent:
            if how == "raise":
                raise RuntimeError("boom\nsecond line")
            os._exit(9)
        return real(raw, chain, organisation)

    return check


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
    status, _ = run_cli(tmp_path, log, "--processes", "2")
    err = capsys.readouterr().err
    assert status == 3
    assert err.count("\n") == 1 and err.startswith("ketenmonitor import-log: ") and message in err


def test_a_failure_in_the_parent_ends_the_children(tmp_path):
    log = tmp_path / "log.csv"
    write_log(log)
    mapping = mapping_for("first", "chain")
    sorted_log = ei.read_sorted(log, mapping, CHAIN)
    sent: list[bytes] = []

    def send(organisation: str, raw: bytes, key: bytes) -> None:
        if len(sent) == 100:
            raise OSError("disk full")
        sent.append(raw)

    encoder = ei._Encoder(sorted_log, mapping, CHAIN, 3)
    children = list(encoder._processes)
    assert len(children) == 2
    with pytest.raises(OSError, match="disk full"), encoder:
        ei.send_chunks(sorted_log, encoder, send, PublishReport())
    assert not any(p.is_alive() for p in children)


def test_processes_is_checked():
    with pytest.raises(SystemExit):
        main(["import-log", str(MAPPING_FILE), "--mapping", str(MAPPING_FILE), "--processes", "0"])
