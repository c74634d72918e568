"""The report as cells, one layout for terminal table, CSV and HTML, with small-cell suppression.

    cells = ReportCells(report, suppress_below=10)
    cells.segment_header, cells.segment_rows()     # lists of strings
    cells.stage_header, cells.stage_rows()
    write_csv(report, out, suppress_below=10)

With `suppress_below=k`, a count of 1 to k-1 cases is shown as "<k", and so is every figure
computed from it (percentiles, shares, the oldest case's age): they would describe a handful of
identifiable cases. Zero is shown: it describes no one.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from typing import IO

from ketenmonitor.domain.chain import SECONDS_PER_DAY
from ketenmonitor.store.report import PERCENTILES, Report, SegmentRow, StageRow


def days(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds / SECONDS_PER_DAY:.1f}"


def percent(share: float | None) -> str:
    return "" if share is None else f"{100 * share:.1f}%"


class ReportCells:
    segment_header: tuple[str, ...] = (
        "segment", "case_type", "completed", *(f"p{p}_days" for p in PERCENTILES),
        "norm", "norm_days", "norm_target", "within_norm",
    )
    stage_header: tuple[str, ...] = (
        "stage", "inflow", "outflow", "backlog_end", "oldest_open_age_days"
    )

    def __init__(self, report: Report, suppress_below: int = 0) -> None:
        if suppress_below < 0:
            raise ValueError("suppress_below must be >= 0")
        self.report = report
        self.k = suppress_below

    def small(self, n: int) -> bool:
        return 0 < n < self.k

    def count(self, n: int) -> str:
        return f"<{self.k}" if self.small(n) else str(n)

    def segment_rows(self) -> Iterator[list[str]]:
        """One line per segment, case type and norm (a segment without norm: one line)."""
        for row in self.report.segments:
            yield from self._segment_lines(row)

    def _segment_lines(self, row: SegmentRow) -> Iterator[list[str]]:
        hidden = self.small(row.completed)
        stats = [
            f"<{self.k}" if hidden else days(row.percentiles.get(p)) for p in PERCENTILES
        ]
        base = [row.segment, row.case_type, self.count(row.completed), *stats]
        if not row.norms:
            yield [*base, "", "", "", ""]
        for n in row.norms:
            share = f"<{self.k}" if hidden else percent(n.share)
            yield [*base, n.norm, str(n.within_days), percent(n.target), share]

    def stage_rows(self) -> Iterator[list[str]]:
        end = self.report.period.end
        for row in self.report.stages:
            yield self._stage_line(row, end)

    def _stage_line(self, row: StageRow, end: float) -> list[str]:
        age = (
            f"<{self.k}" if self.small(row.backlog_end) else days(row.oldest_open_age_seconds(end))
        )
        return [
            row.stage,
            self.count(row.inflow),
            self.count(row.outflow),
            self.count(row.backlog_end),
            age,
        ]


def write_csv(report: Report, out: IO[str], suppress_below: int = 0) -> None:
    """One CSV table; the `table` column says whether a line is about a segment or a stage."""
    cells = ReportCells(report, suppress_below)
    seg_cols, stage_cols = cells.segment_header, cells.stage_header
    header = ["table", "period", *seg_cols, *stage_cols]
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    label = report.period.label
    for line in cells.segment_rows():
        writer.writerow(["segment", label, *line, *[""] * len(stage_cols)])
    for line in cells.stage_rows():
        writer.writerow(["stage", label, *[""] * len(seg_cols), *line])


def print_table(report: Report, suppress_below: int = 0, file: IO[str] | None = None) -> None:
    from rich.table import Table

    from ketenmonitor.cli_common import console as pipe_console

    cells = ReportCells(report, suppress_below)
    console = pipe_console(file=file, width=160)
    period = report.period
    title = (
        f"Ketenmonitor {period.label} ({period.start_date} to {period.end_date}, "
        f"{period.timezone})"
    )
    segments = Table(title=f"{title}: doorlooptijden per segment en zaaktype")
    for name in cells.segment_header:
        left = name in ("segment", "case_type", "norm")
        segments.add_column(name, justify="left" if left else "right")
    for line in cells.segment_rows():
        segments.add_row(*line)
    stages = Table(title=f"{title}: instroom, uitstroom en werkvoorraad per fase")
    for name in cells.stage_header:
        stages.add_column(name, justify="left" if name == "stage" else "right")
    for line in cells.stage_rows():
        stages.add_row(*line)
    console.print(segments)
    console.print(stages)
    if suppress_below:
        console.print(f"Cells under {suppress_below} cases are shown as <{suppress_below}.")
