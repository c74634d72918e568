"""Publishing from files: every row is checked against the contract; bad rows are named, unsent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ketenmonitor.cli import main
from ketenmonitor.domain.chain import load_chain
from ketenmonitor.publish import csv_row_to_event, publish_file

CHAIN = load_chain()


def event(n: int, **changes) -> dict:
    return {
        "schema_version": 1,
        "event_id": f"pol-{n}",
        "case_key": f"PN-{n:06d}",
        "organisation": "police",
        "milestone": "report_registered",
        "occurred_at": "2024-03-01T10:00:00+01:00",
        "case_type": "standard",
        "district": "amsterdam",
        **changes,
    }


def line(obj: dict) -> str:
    return json.dumps(obj, separators=(",", ":"))


@pytest.fixture
def mixed_jsonl(tmp_path: Path) -> Path:
    lines = [
        line(event(1)),
        "",  # blank lines are skipped, but still counted as lines
        "{not json",
        line(event(2, remark="free text")),
        line(event(3, occurred_at="2024-03-01T10:00:00")),
        line(event(4, organisation="om", milestone="om_intake")),
        line(event(5)),
        line(event(1)),
        line(event(6, revision="two")),
    ]
    path = tmp_path / "police.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def collect(path: Path, organisation: str = "police"):
    sent: list[tuple[bytes, bytes]] = []
    report = publish_file(path, organisation, CHAIN, lambda v, k: sent.append((v, k)))
    return report, sent


def test_valid_jsonl_rows_are_sent_byte_for_byte_keyed_by_event_id(mixed_jsonl):
    report, sent = collect(mixed_jsonl)
    assert sent == [
        (line(event(1)).encode(), b"pol-1"),
        (line(event(5)).encode(), b"pol-5"),
    ]
    assert report.sent == 2 and report.rows == 8


def test_invalid_rows_are_reported_with_file_line_and_reason(mixed_jsonl):
    report, _ = collect(mixed_jsonl)
    where = [(p.line, p.reason) for p in report.problems]
    assert where == [
        (3, "not_json"),
        (4, "unknown_field"),
        (5, "naive_timestamp"),
        (6, "organisation_mismatch"),
        (8, "duplicate_in_file"),
        (9, "wrong_type"),
    ]
    assert str(report.problems[4]) == (
        f"{mixed_jsonl}:8: duplicate_in_file: event_id 'pol-1' also on line 1"
    )
    assert "8 rows: 2 sent (police 2), 6 rejected" in report.summary()


def test_csv_cells_become_typed_fields_and_empty_cells_are_left_out():
    row = {"schema_version": "1", "revision": "2", "retracted": "false", "outcome": "", "x": "y"}
    expected = {"schema_version": 1, "revision": 2, "retracted": False, "x": "y"}
    assert csv_row_to_event(row) == expected
    assert csv_row_to_event({"revision": "two"}) == {"revision": "two"}


def test_csv_rows_are_checked_with_their_line_numbers(tmp_path):
    header = (
        "schema_version,event_id,case_key,organisation,milestone,occurred_at,case_type,district,"
        "outcome,revision"
    )
    rows = [
        "1,om-1,PN-1,om,om_decision,2024-03-01T10:00:00Z,standard,rotterdam,summons,",
        # a quoted cell over two lines: the row after it starts on line 5
        '1,om-2,PN-2,om,om_decision,2024-03-01T10:00:00Z,standard,"rotter\ndam",summons,',
        "1,om-3,PN-3,om,om_decision,2024-03-01T10:00:00Z,standard,rotterdam,,",
        "1,om-4,PN-4,om,om_intake,2024-03-01T10:00:00Z,standard,rotterdam,,1",
        "1,om-5,PN-5,om,om_intake,2024-03-01T10:00:00Z,standard,rotterdam,,one",
        "1,om-6,PN-6,om,om_intake,2024-03-01T10:00:00Z,standard,rotterdam,,,extra",
    ]
    path = tmp_path / "om.csv"
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    report, sent = collect(path, "om")
    assert [json.loads(v)["event_id"] for v, _ in sent] == ["om-1", "om-4"]
    assert json.loads(sent[1][0])["revision"] == 1
    assert [(p.line, p.reason) for p in report.problems] == [
        (3, "invalid_value"),
        (5, "invalid_outcome"),
        (7, "wrong_type"),
        (8, "wrong_type"),
    ]


def test_a_progress_bar_does_not_change_the_result(mixed_jsonl):
    sent: list = []
    report = publish_file(mixed_jsonl, "police", CHAIN, lambda v, k: sent.append(v), progress=True)
    assert report.sent == 2 and len(sent) == 2


def test_the_command_exits_non_zero_when_a_row_is_rejected(mixed_jsonl, tmp_path, capsys):
    assert main(["publish", str(mixed_jsonl), "--organisation", "police", "--dry-run"]) == 1
    out = capsys.readouterr()
    assert f"{mixed_jsonl}:3: not_json:" in out.err
    assert "8 rows: 2 valid" in out.out
    clean = tmp_path / "clean.jsonl"
    clean.write_text(line(event(1)) + "\n")
    assert main(["publish", str(clean), "--organisation", "police", "--dry-run"]) == 0


def test_usage_errors_exit_with_2(tmp_path, capsys):
    assert main(["publish", str(tmp_path / "missing.jsonl"), "--organisation", "police"]) == 2
    assert "missing.jsonl: no such file" in capsys.readouterr().err  # before any broker check
    (tmp_path / "x.jsonl").write_text("{}\n")
    x = str(tmp_path / "x.jsonl")
    assert main(["publish", x, "--organisation", "nobody", "--dry-run"]) == 2
    assert "unknown organisation 'nobody'" in capsys.readouterr().err
