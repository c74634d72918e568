"""Progress lines of publish and import-log where stderr is no terminal (ketenmonitor/progress.py).

A fake clock: what is asserted is the text a person reads and when it is printed.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

from ketenmonitor.domain.chain import load_chain
from ketenmonitor.progress import ProgressLines
from ketenmonitor.publish import PROGRESS_EVERY, check_and_send, read_jsonl


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_line_every_interval_with_count_rate_share_and_time_to_go() -> None:
    clock, out = Clock(), io.StringIO()
    lines = ProgressLines(
        "police.jsonl",
        total=1000,
        unit="B",
        every=10,
        stream=out,
        clock=clock,
        prefix="ketenmonitor publish: ",
    )
    lines.sent = 50_000
    lines.update(100)
    assert out.getvalue() == ""  # not before the first interval: short runs print nothing
    clock.now += 10
    lines.sent = 400_000
    lines.update(150)  # 250 of 1000 bytes after 10 s: 30 s to go
    assert out.getvalue().splitlines() == [
        "ketenmonitor publish: police.jsonl: 400,000 events sent in 10 s (40,000/s), 25% done, "
        "about 30 s to go"
    ]
    clock.now += 5
    lines.update(250)
    assert len(out.getvalue().splitlines()) == 1  # the next one 10 s after the last
    clock.now += 5
    lines.sent = 1_000_000
    lines.update(500)
    lines.close()
    assert out.getvalue().splitlines()[1:] == [
        "ketenmonitor publish: police.jsonl: 1,000,000 events sent in 20 s (50,000/s), 100% done",
        "ketenmonitor publish: police.jsonl: done, 1,000,000 events sent in 20 s (50,000/s)",
    ]


def test_the_reading_phase_counts_rows_then_publishing_counts_events_of_a_known_total() -> None:
    clock, out = Clock(), io.StringIO()
    lines = ProgressLines(
        "log.csv: reading",
        unit="rows",
        every=10,
        stream=out,
        clock=clock,
        prefix="ketenmonitor import-log: ",
    )
    clock.now += 12
    lines.update(60_000)
    lines.reset(total=40_000)
    lines.set_description("log.csv: publishing")
    clock.now += 10
    lines.update(10_000)
    assert out.getvalue().splitlines() == [
        "ketenmonitor import-log: log.csv: reading: 60,000 rows read in 12 s (5,000/s)",
        "ketenmonitor import-log: log.csv: publishing: 10,000 events sent in 10 s (1,000/s), "
        "25% done, about 30 s to go",
    ]


def test_check_and_send_tells_the_lines_how_many_events_were_sent(tmp_path: Path) -> None:
    chain = load_chain()
    path = tmp_path / "police.jsonl"
    event = {
        "schema_version": 1,
        "case_key": "PN-1",
        "organisation": "police",
        "milestone": "report_registered",
        "occurred_at": "2024-01-01T00:00:00+00:00",
        "case_type": "standard",
        "district": "den_haag",
    }
    rows = 2 * PROGRESS_EVERY + 5
    path.write_text("".join(json.dumps({**event, "event_id": f"e{i}"}) + "\n" for i in range(rows)))
    clock, out = Clock(), io.StringIO()
    lines = ProgressLines("police.jsonl", unit="B", every=0, stream=out, clock=clock)
    sent: list[bytes] = []
    report = check_and_send(
        read_jsonl(path), chain, lambda e, raw: sent.append(raw), "police", progress=lines
    )
    assert report.sent == len(sent) == rows
    counts = [
        int(line.split(": ")[1].split()[0].replace(",", "")) for line in out.getvalue().splitlines()
    ]
    # Told before the row that completes a step of PROGRESS_EVERY is checked; the total at the end.
    assert counts == [PROGRESS_EVERY - 1, 2 * PROGRESS_EVERY - 1, rows]
    assert lines.n == path.stat().st_size
