"""The report and the stuck list, on SQLite and PostgreSQL, against an independent computation."""

from __future__ import annotations

import csv
import io
import re
from zoneinfo import ZoneInfo

import pytest
from report_truth import case_facts, chain_data, expected_report
from store_helpers import SIM_END, TEST_SECRET, write_log

from ketenmonitor.cli import main
from ketenmonitor.domain.pseudonym import pseudonymise
from ketenmonitor.store import CaseFactSink
from ketenmonitor.store.periods import parse_period, parse_range
from ketenmonitor.store.replay import Replayer, replay_file
from ketenmonitor.store.report import build_report
from ketenmonitor.store.stuck import stuck_cases
from tests.integration.chromium import chromium_dump_dom

PERIODS = ["2024-11", "2024Q4", "2025-03"]


@pytest.fixture
def filled_store(store_url, chain, simulated_cases, tmp_path):
    log = write_log(simulated_cases, chain, tmp_path / "events.jsonl")
    with CaseFactSink.from_url(store_url, chain) as sink:
        sink.start()
        replayer = Replayer(chain, TEST_SECRET, 6, sink)
        replay_file(log, replayer, progress=False)
        assert replayer.summary()["rejected"] == {}
    return store_url


def _bounds(label: str) -> tuple[float, float]:
    """Period bounds computed here, independently of ketenmonitor.store.periods."""
    zone = ZoneInfo("Europe/Amsterdam")
    from datetime import datetime

    if "Q" in label:
        year, q = int(label[:4]), int(label[-1])
        first, last = (year, 3 * q - 2), (year + (q == 4), 1 if q == 4 else 3 * q + 1)
    else:
        year, month = int(label[:4]), int(label[5:])
        first, last = (year, month), (year + (month == 12), 1 if month == 12 else month + 1)
    return (
        datetime(*first, 1, tzinfo=zone).timestamp(),
        datetime(*last, 1, tzinfo=zone).timestamp(),
    )


def test_report_numbers_equal_an_independent_batch_computation(
    filled_store, chain, simulated_cases
):
    from ketenmonitor.store import make_engine

    engine = make_engine(filled_store)
    try:
        for label in PERIODS:
            period = parse_period(label)
            start, end = _bounds(label)
            assert (period.start, period.end) == (start, end)
            _check_report(
                build_report(engine, chain, period), expected_report(simulated_cases, start, end)
            )
        # A range: from the start of one period to the end of another.
        period = parse_range(PERIODS[0], PERIODS[-1])
        start, end = _bounds(PERIODS[0])[0], _bounds(PERIODS[-1])[1]
        assert (period.start, period.end) == (start, end)
        _check_report(
            build_report(engine, chain, period), expected_report(simulated_cases, start, end)
        )
    finally:
        engine.dispose()


def _check_report(report, expected) -> None:
    got_segments = {
        (r.segment, r.case_type): {
            "completed": r.completed,
            "percentiles": r.percentiles,
            "norms": {n.norm: n.share for n in r.norms},
        }
        for r in report.segments
        if r.completed
    }
    assert got_segments == expected["segments"]
    assert sum(s["completed"] for s in expected["segments"].values()) > 100
    # Rows without completions appear only to show a norm with nothing to measure.
    assert all(r.norms and all(n.share is None for n in r.norms)
               for r in report.segments if not r.completed)

    got_stages = {
        r.stage: {
            "inflow": r.inflow,
            "outflow": r.outflow,
            "backlog": r.backlog_end,
            "oldest": r.oldest_open_entered_at,
        }
        for r in report.stages
    }
    assert got_stages == expected["stages"]
    # The rarer stages (appeal, the Wahv objection and sub-district appeal) may see no inflow in a
    # month of this small log; the main ones always do.
    main = ("police_investigation", "om_assessment", "court_trial", "cjib_collection")
    assert all(got_stages[s]["inflow"] > 0 for s in main)


def test_small_cells_are_suppressed_in_the_csv_report(filled_store, capsys):
    k = 20
    assert main(["report", "--period", "2024-11", "--format", "csv",
                 "--suppress-below", str(k), "--store-url", filled_store]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    counts = [r[c] for r in rows for c in ("completed", "inflow", "outflow", "backlog_end") if r[c]]
    assert f"<{k}" in counts and any(c.isdigit() and int(c) >= k for c in counts)
    assert not [c for c in counts if c.isdigit() and 0 < int(c) < k]
    for r in rows:
        if r["completed"] == f"<{k}":
            assert r["p50_days"] == r["p90_days"] == f"<{k}"
            assert r["within_norm"] in ("", f"<{k}")


def test_html_report_shows_its_charts_in_headless_chromium(filled_store, tmp_path):
    page = tmp_path / "report.html"
    assert main(["report", "--period", "2024Q4", "--format", "html", "--output", str(page),
                 "--suppress-below", "5", "--store-url", filled_store]) == 0
    html = page.read_text(encoding="utf-8")
    # Self-contained: nothing is fetched (the only URL is the SVG namespace).
    assert set(re.findall(r"https?://[^\"' >]+", html)) == {"http://www.w3.org/2000/svg"}
    assert "<script" not in html and "<link" not in html

    dom = chromium_dump_dom(page)
    charts = re.findall(r'<svg id="([a-z-]+)".*?</svg>', dom, flags=re.S)
    assert charts == ["norm-shares", "stage-flows", "stage-backlog"]
    for chart_id in charts:
        svg = re.search(rf'<svg id="{chart_id}".*?</svg>', dom, flags=re.S).group(0)
        widths = [float(w) for w in re.findall(r'<rect[^>]* width="([0-9.]+)"', svg)]
        assert widths and max(widths) > 0, chart_id


def test_stuck_lists_the_oldest_open_cases_a_key_holder_can_match(
    filled_store, chain, simulated_cases
):
    spec = chain_data()
    stage = "court_trial"
    def open_at(at):
        return sorted(
            (entered, case.case_key)
            for case in simulated_cases
            if case.steps
            for entered, left in case_facts(spec, case)["stages"].get(stage, ())
            if entered <= at and (left is None or left > at)
        )

    open_entries = open_at(SIM_END)
    assert len(open_entries) > 5

    from ketenmonitor.store import make_engine

    engine = make_engine(filled_store)
    stuck = stuck_cases(engine, chain, stage, top=5, at=SIM_END)
    # At a moment in the past: the cases that waited then, with hindsight (docs/store.md).
    past = SIM_END - 200 * 86400
    then = stuck_cases(engine, chain, stage, top=1000, at=past)
    engine.dispose()
    own_then = {pseudonymise(TEST_SECRET, key): key for _, key in open_at(past)}
    assert [own_then[c.pseudonym] for c in then] == [key for _, key in open_at(past)]
    assert [c.age_seconds for c in then] == [past - t for t, _ in open_at(past)]
    assert len(then) > 5 and {c.pseudonym for c in then} != {c.pseudonym for c in stuck}

    # The holder of the key pseudonymises its own case numbers and matches.
    own = {pseudonymise(TEST_SECRET, key): key for _, key in open_entries}
    assert [own[c.pseudonym] for c in stuck] == [key for _, key in open_entries[:5]]
    assert [c.age_seconds for c in stuck] == [SIM_END - t for t, _ in open_entries[:5]]
    assert all(c.last_milestone in ("court_intake", "first_hearing") for c in stuck)
