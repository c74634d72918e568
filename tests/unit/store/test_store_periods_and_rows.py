"""Reporting periods, percentiles and the rows of one case: pure functions, no database."""

from __future__ import annotations

from datetime import datetime
from types import MappingProxyType
from zoneinfo import ZoneInfo

import pytest

from ketenmonitor.domain.case import CaseState, MilestoneRecord
from ketenmonitor.domain.chain import load_chain
from ketenmonitor.store.periods import PeriodError, parse_period, parse_range
from ketenmonitor.store.report import nearest_rank
from ketenmonitor.store.rows import case_rows

AMS = ZoneInfo("Europe/Amsterdam")


@pytest.mark.parametrize(
    ("text", "first", "after"),
    [
        ("2026-10", (2026, 10), (2026, 11)),
        ("2026-12", (2026, 12), (2027, 1)),
        ("2026Q3", (2026, 7), (2026, 10)),
        ("2026q4", (2026, 10), (2027, 1)),
        ("2026", (2026, 1), (2027, 1)),
    ],
)
def test_periods_are_calendar_periods_in_amsterdam_time(text, first, after):
    period = parse_period(text)
    assert period.start == datetime(*first, 1, tzinfo=AMS).timestamp()
    assert period.end == datetime(*after, 1, tzinfo=AMS).timestamp()


def test_a_day_and_a_range_of_periods_are_periods_too():
    day = parse_period("2026-10-25")  # the day the clocks go back: 25 hours
    assert day.start == datetime(2026, 10, 25, tzinfo=AMS).timestamp()
    assert day.end - day.start == 25 * 3600
    span = parse_range("2026-01", "2026Q3")
    assert (span.start, span.end) == (parse_period("2026-01").start, parse_period("2026Q3").end)
    assert span.label == "2026-01..2026Q3"
    with pytest.raises(PeriodError, match="ends before it starts"):
        parse_range("2026Q3", "2026-01")


@pytest.mark.parametrize("text", ["2026-13", "2026Q5", "26-10", "oktober", "", "2026-02-30"])
def test_malformed_periods_are_refused(text):
    with pytest.raises(PeriodError):
        parse_period(text)


def test_unknown_time_zone_is_refused():
    with pytest.raises(PeriodError, match="time zone"):
        parse_period("2026-10", "Mars/Olympus")


def test_nearest_rank_percentiles_are_observed_values():
    values = [float(v) for v in range(1, 11)]
    assert [nearest_rank(values, p) for p in (50, 80, 90, 100)] == [5.0, 8.0, 9.0, 10.0]
    assert nearest_rank([7.0], 50) == 7.0
    with pytest.raises(ValueError):
        nearest_rank([], 50)


def _state(**records: MilestoneRecord) -> CaseState:
    return CaseState(MappingProxyType(records), frozenset(r.event_id for r in records.values()))


def test_rows_of_an_open_case_name_its_current_stage():
    chain = load_chain()
    state = _state(
        report_registered=MilestoneRecord("a", 100.0, "standard", "amsterdam"),
        file_sent_to_om=MilestoneRecord("b", 200.0, "standard", "amsterdam"),
        om_intake=MilestoneRecord("c", 250.0, "youth", "rotterdam"),
    )
    rows = case_rows(chain, "p1", state)
    assert rows.case is not None
    assert rows.case["current_stage"] == "om_assessment"
    assert (rows.case["case_type"], rows.case["district"]) == ("youth", "rotterdam")
    assert rows.case["last_milestone"] == "om_intake" and rows.case["closed_at"] is None
    stages = {r["stage"]: (r["entered_at"], r["left_at"]) for r in rows.children["case_stages"]}
    assert stages == {"police_investigation": (100.0, 200.0), "om_assessment": (250.0, None)}
    segments = {r["segment"]: r["lead_time_seconds"] for r in rows.children["case_segments"]}
    assert segments == {"police_report_to_file": 100.0, "police_file_to_om_intake": 50.0}


def test_a_case_whose_milestones_are_all_retracted_has_no_case_row():
    chain = load_chain()
    state = _state(
        report_registered=MilestoneRecord("a", 100.0, "standard", "amsterdam", None, 1, True)
    )
    rows = case_rows(chain, "p1", state)
    assert rows.case is None
    assert all(not children for children in rows.children.values())


def test_rows_hold_every_occurrence_and_every_stage_visit():
    from ketenmonitor.domain.case import CaseEvent, apply_event

    chain = load_chain()
    state = None
    for n, (milestone, at, outcome, occurrence) in enumerate([
        ("om_intake", 100.0, None, None), ("om_decision", 200.0, "summons", None),
        ("court_intake", 300.0, None, None), ("om_intake", 400.0, None, "2"),
    ]):
        event = CaseEvent(f"e{n}", "k", milestone, at, "standard", "amsterdam", outcome, 0, False,
                          occurrence)
        state = apply_event(chain, state, event).state
    rows = case_rows(chain, "p1", state)
    occurrences = [(r["milestone"], r["occurrence"]) for r in rows.children["case_milestones"]]
    assert sorted(occurrences) == [("court_intake", ""), ("om_decision", ""), ("om_intake", ""),
                                   ("om_intake", "2")]
    visits = [(r["stage"], r["entered_at"], r["left_at"]) for r in rows.children["case_stages"]]
    assert visits == [("court_trial", 300.0, 400.0), ("om_assessment", 100.0, 200.0),
                      ("om_assessment", 400.0, None)]
    assert rows.case is not None
    assert (rows.case["last_milestone"], rows.case["last_milestone_at"]) == ("om_intake", 400.0)
    assert rows.case["current_stage"] == "om_assessment"


def test_stuck_ages_cases_to_the_reference_time_and_lists_those_open_then(
    tmp_path, monkeypatch, capsys
):
    from ketenmonitor.cli import main
    from ketenmonitor.domain.case import CaseEvent, apply_event
    from ketenmonitor.store.sink import CaseFactSink

    chain = load_chain()
    day = 86_400.0
    url = f"sqlite:///{tmp_path / 'store.db'}"
    t0 = datetime(2025, 1, 1, tzinfo=AMS).timestamp()
    with CaseFactSink.from_url(url, chain) as sink:
        sink.start()
        for key, steps in {
            "still-open": [("court_intake", 0)],
            "left-later": [("court_intake", 10), ("judgment", 100)],
            "entered-later": [("court_intake", 50)],
        }.items():
            state = None
            for n, (milestone, days) in enumerate(steps):
                outcome = "conviction" if milestone == "judgment" else None
                event = CaseEvent(f"{key}-{n}", key, milestone, t0 + days * day, "standard",
                                  "amsterdam", outcome)
                state = apply_event(chain, state, event).state
            sink.add(key, state)

    def listed(*extra):
        assert main(["stuck", "--stage", "court_trial", "--format", "csv", "--store-url", url,
                     *extra]) == 0
        rows = capsys.readouterr().out.splitlines()[1:]
        return [(r.split(",")[0], float(r.split(",")[3])) for r in rows]

    monkeypatch.setenv("KETENMONITOR_AGE_REFERENCE_TIME",
                       datetime.fromtimestamp(t0 + 30 * day, AMS).isoformat())
    assert listed() == [("still-open", 30.0), ("left-later", 20.0)]
    at_60 = datetime.fromtimestamp(t0 + 60 * day, AMS).isoformat()
    assert listed("--at", at_60) == [("still-open", 60.0), ("left-later", 50.0),
                                     ("entered-later", 10.0)]
    # what each case had reached then: left-later's judgment (day 100) came after day 60
    assert main(["stuck", "--stage", "court_trial", "--format", "csv", "--store-url", url,
                 "--at", at_60]) == 0
    rows = [r.split(",") for r in capsys.readouterr().out.splitlines()[1:]]
    assert {r[0]: r[4] for r in rows} == {
        "still-open": "court_intake", "left-later": "court_intake", "entered-later": "court_intake"
    }
    monkeypatch.delenv("KETENMONITOR_AGE_REFERENCE_TIME")
    assert [p for p, _ in listed()] == ["still-open", "entered-later"]  # now: left-later left


def test_stuck_marks_cases_without_an_event_past_the_stage_limit_as_dormant(tmp_path):
    from ketenmonitor.domain.case import CaseEvent, apply_event
    from ketenmonitor.store.engine import make_engine
    from ketenmonitor.store.sink import CaseFactSink
    from ketenmonitor.store.stuck import stuck_cases

    chain = load_chain()
    limit = chain.fact_plan.dormant_after["court_trial"]
    day = 86_400.0
    url = f"sqlite:///{tmp_path / 'store.db'}"
    with CaseFactSink.from_url(url, chain) as sink:
        sink.start()
        state = None
        for n, (milestone, at, occurrence) in enumerate([
            ("court_intake", 0.0, None), ("first_hearing", 10 * day, None),
            ("first_hearing", limit + 100 * day, "2"),
        ]):
            event = CaseEvent(f"e{n}", "k", milestone, at, "standard", "amsterdam", None, 0,
                              False, occurrence)
            state = apply_event(chain, state, event).state
        sink.add("k", state)
    engine = make_engine(url)
    dormant_at = lambda at: [c.dormant for c in stuck_cases(engine, chain, "court_trial", 5, at)]  # noqa: E731
    assert dormant_at(10 * day + limit) == [False]  # exactly the limit: still active
    assert dormant_at(10 * day + limit + 1) == [True]  # then dormant, though a hearing came later
    assert dormant_at(limit + 100 * day) == [False]  # the adjourned hearing woke it up
    engine.dispose()


def test_stuck_lists_a_partners_dormant_cases_across_its_stages(tmp_path):
    from ketenmonitor.domain.case import CaseEvent, apply_event
    from ketenmonitor.store.engine import make_engine
    from ketenmonitor.store.sink import CaseFactSink
    from ketenmonitor.store.stuck import UnknownStageError, stuck_cases

    chain = load_chain()
    day = 86_400.0
    at = 2000 * day
    url = f"sqlite:///{tmp_path / 'store.db'}"
    cases = {  # pseudonym -> its events (milestone, day)
        "asleep-om": [("om_intake", 10)],  # OM assessment, no event for ~5 years
        "awake-om": [("om_intake", 20), ("om_intake", 1990, "2")],  # repeated intake: active
        "asleep-court": [("court_intake", 5)],  # dormant, but in a court stage
        "edge-om": [("om_intake", 2000 - 365)],  # exactly the limit: still active
    }
    with CaseFactSink.from_url(url, chain) as sink:
        sink.start()
        for pseudonym, events in cases.items():
            state = None
            for n, (milestone, d, *occurrence) in enumerate(events):
                event = CaseEvent(f"{pseudonym}{n}", pseudonym, milestone, d * day, "standard",
                                  "amsterdam", None, 0, False, *occurrence)
                state = apply_event(chain, state, event).state
            sink.add(pseudonym, state)
    engine = make_engine(url)
    listed = lambda **kw: [(c.pseudonym, c.stage, c.dormant)  # noqa: E731
                           for c in stuck_cases(engine, chain, None, 10, at, **kw)]
    assert listed(organisation="om") == [
        ("asleep-om", "om_assessment", True),
        ("awake-om", "om_assessment", False),
        ("edge-om", "om_assessment", False),
    ]
    assert listed(organisation="om", dormant_only=True) == [("asleep-om", "om_assessment", True)]
    assert listed(organisation="courts", dormant_only=True) == [
        ("asleep-court", "court_trial", True)
    ]
    # One hour later the edge case's limit has passed (from the start of its event's hour).
    later = [c.pseudonym for c in stuck_cases(engine, chain, None, 10, at + 3600,
                                              organisation="om", dormant_only=True)]
    assert later == ["asleep-om", "edge-om"]
    with pytest.raises(UnknownStageError, match="owns no stage"):
        stuck_cases(engine, chain, None, 10, at, organisation="nobody")
    engine.dispose()
