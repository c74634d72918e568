"""The report as one self-contained HTML page for a briefing: tables plus inline SVG charts.

    Path("rapport-2026Q3.html").write_text(render_html(report, chain, suppress_below=10))

No scripts, fonts or style sheets from elsewhere (the page must open on a machine without
internet and be mailable as one file). Suppressed cells are not drawn: their bar is left out and
the value reads "<k".

The page is Dutch: stages, segments, case types and norms appear with their labels from the chain
definition, never their English ids (the CSV keeps the ids, for machines). Chart labels are never
cut off: the label column is as wide as the longest label. The chain definition is named by its
file name only; the page does not reveal the server's folders.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path

from ketenmonitor.domain.chain import Chain
from ketenmonitor.store.render import ReportCells, percent
from ketenmonitor.store.report import Report

COLOURS = {"inflow": "#1f77b4", "outflow": "#2ca02c", "backlog": "#d62728", "share": "#6a51a3"}
BAR_HEIGHT = 14
LABEL_WIDTH = 330  # at least; wider when a label needs it
CHAR_WIDTH = 6.6  # generous average width of a character at font-size 11 (system-ui)
PLOT_WIDTH = 420
SEGMENT_HEADER = (
    "Segment", "Zaaktype", "Voltooid", "p50 (dagen)", "p80 (dagen)", "p90 (dagen)", "Norm",
    "Norm (dagen)", "Streefwaarde", "Binnen de norm",
)
STAGE_HEADER = ("Fase", "Instroom", "Uitstroom", "Werkvoorraad einde", "Oudste open zaak (dagen)")

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1100px; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 2em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1.5em; }
th, td { border-bottom: 1px solid #ddd; padding: 3px 8px; text-align: right; }
th:first-child, td:first-child, td.text { text-align: left; }
figure { margin: 1em 0; } figcaption { font-size: 0.85em; color: #555; }
.note { font-size: 0.85em; color: #555; }
"""


@dataclass(frozen=True, slots=True)
class Bar:
    value: float | None  # None: suppressed, not drawn
    colour: str
    text: str


def render_html(report: Report, chain: Chain, suppress_below: int = 0) -> str:
    cells = ReportCells(report, suppress_below)
    period = report.period
    stage_label = {s.id: s.label for s in chain.spec.stages}
    labels = Labels(chain)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="nl"><head><meta charset="utf-8">',
        f"<title>Ketenmonitor {escape(period.label)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>Ketenmonitor: doorlooptijden en werkvoorraad, {escape(period.label)}</h1>",
        f'<p class="note">Periode {period.start_date} tot {period.end_date} '
        f"({escape(period.timezone)}), in gebeurtenistijd. Ketendefinitie: "
        f"{escape(Path(report.chain_source).name)}.</p>",
        "<h2>Aandeel binnen de norm</h2>",
        _norm_chart(report, cells, labels),
        "<h2>Instroom en uitstroom per fase</h2>",
        _flow_chart(report, cells, stage_label),
        "<h2>Werkvoorraad aan het einde van de periode</h2>",
        _backlog_chart(report, cells, stage_label),
        "<h2>Doorlooptijden per segment en zaaktype (dagen)</h2>",
        _table(SEGMENT_HEADER, labels.segment_rows(cells), text_columns=(0, 1, 6)),
        "<h2>Fasen</h2>",
        _table(STAGE_HEADER, labels.stage_rows(cells), text_columns=(0,)),
        '<p class="note">Voltooid: het eindmijlpaal van het segment valt in de periode. '
        "Percentielen volgens de nearest-rank-methode. Werkvoorraad: ingestroomd voor het einde "
        "van de periode en toen nog niet uitgestroomd."
        + (f" Cellen onder {suppress_below} zaken tonen &lt;{suppress_below}." if suppress_below
           else "")
        + "</p>",
        "</body></html>",
    ]
    return "\n".join(parts)


class Labels:
    """Dutch labels for the ids in the report's cells (an unknown id is shown as it is)."""

    def __init__(self, chain: Chain) -> None:
        spec = chain.spec
        self.stage = {s.id: s.label for s in spec.stages}
        self.segment = {s.id: s.label for s in spec.segments}
        self.norm = {n.id: n.label for n in spec.norms}
        self.case_type = dict(spec.case_types)

    def segment_rows(self, cells: ReportCells) -> Iterable[list[str]]:
        for row in cells.segment_rows():
            segment, case_type, *middle, norm = row[:7]
            yield [
                self.segment.get(segment, segment), self.case_type.get(case_type, case_type),
                *middle, self.norm.get(norm, norm), *row[7:],
            ]

    def stage_rows(self, cells: ReportCells) -> Iterable[list[str]]:
        for stage, *rest in cells.stage_rows():
            yield [self.stage.get(stage, stage), *rest]


def _norm_chart(report: Report, cells: ReportCells, labels: Labels) -> str:
    rows: list[tuple[str, list[Bar], float | None]] = []
    for seg in report.segments:
        for n in seg.norms:
            hidden = cells.small(seg.completed)
            if hidden:
                text = f"<{cells.k}"
            elif n.share is None:
                text = "geen voltooide zaken"
            else:
                text = f"{percent(n.share)} van {seg.completed}"
            value = None if hidden or n.share is None else 100 * n.share
            rows.append(
                (f"{labels.case_type.get(seg.case_type, seg.case_type)}: {n.label}",
                 [Bar(value, COLOURS["share"], text)],
                 100 * n.target)
            )
    return _hbar_chart("norm-shares", rows, 100.0, "% binnen de norm; streep: streefwaarde")


def _flow_chart(report: Report, cells: ReportCells, labels: dict[str, str]) -> str:
    rows = [
        (
            labels[s.stage],
            [
                _count_bar(cells, s.inflow, "inflow", "instroom"),
                _count_bar(cells, s.outflow, "outflow", "uitstroom"),
            ],
            None,
        )
        for s in report.stages
    ]
    top = max([max(s.inflow, s.outflow) for s in report.stages] + [1])
    return _hbar_chart("stage-flows", rows, float(top), "zaken; blauw instroom, groen uitstroom")


def _backlog_chart(report: Report, cells: ReportCells, labels: dict[str, str]) -> str:
    rows = [
        (labels[s.stage], [_count_bar(cells, s.backlog_end, "backlog", "")], None)
        for s in report.stages
    ]
    top = max([s.backlog_end for s in report.stages] + [1])
    return _hbar_chart("stage-backlog", rows, float(top), "open zaken aan het einde")


def _count_bar(cells: ReportCells, n: int, colour: str, word: str) -> Bar:
    text = cells.count(n) + (f" {word}" if word else "")
    return Bar(None if cells.small(n) else float(n), COLOURS[colour], text)


def _hbar_chart(
    chart_id: str, rows: Sequence[tuple[str, list[Bar], float | None]], top: float, caption: str
) -> str:
    if not rows:
        return '<p class="note">Geen gegevens in deze periode.</p>'
    group = max(len(bars) for _, bars, _ in rows) * (BAR_HEIGHT + 2) + 8
    height = len(rows) * group + 10
    label_width = max(LABEL_WIDTH, round(12 + CHAR_WIDTH * max(len(r[0]) for r in rows)))
    width = label_width + PLOT_WIDTH + 140
    out = [
        f'<figure><svg id="{chart_id}" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(caption)}" font-size="11">'
    ]
    for i, (label, bars, marker) in enumerate(rows):
        y0 = 5 + i * group
        out.append(
            f'<text x="{label_width - 6}" y="{y0 + BAR_HEIGHT - 3}" text-anchor="end">'
            f"{escape(label)}</text>"
        )
        for j, bar in enumerate(bars):
            y = y0 + j * (BAR_HEIGHT + 2)
            length = 0.0 if bar.value is None else PLOT_WIDTH * min(bar.value / top, 1.0)
            if bar.value is not None:
                out.append(
                    f'<rect x="{label_width}" y="{y}" width="{length:.1f}" '
                    f'height="{BAR_HEIGHT}" fill="{bar.colour}"/>'
                )
            out.append(
                f'<text x="{label_width + length + 4:.1f}" y="{y + BAR_HEIGHT - 3}">'
                f"{escape(bar.text)}</text>"
            )
        if marker is not None:
            x = label_width + PLOT_WIDTH * min(marker / top, 1.0)
            out.append(
                f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y0 - 2}" y2="{y0 + group - 8}" '
                'stroke="#000" stroke-width="2"/>'
            )
    out.append(
        f'<line x1="{label_width}" x2="{label_width}" y1="0" y2="{height}" stroke="#999"/>'
    )
    out.append(f"</svg><figcaption>{escape(caption)}</figcaption></figure>")
    return "".join(out)


def _table(
    header: Sequence[str], rows: Iterable[Sequence[str]], text_columns: tuple[int, ...]
) -> str:
    out = ["<table><thead><tr>"]
    out.extend(f"<th>{escape(h)}</th>" for h in header)
    out.append("</tr></thead><tbody>")
    for line in rows:
        out.append("<tr>")
        for i, cell in enumerate(line):
            cls = ' class="text"' if i in text_columns else ""
            out.append(f"<td{cls}>{escape(cell)}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)
