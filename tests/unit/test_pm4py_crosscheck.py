"""Cross-check of the case model with PM4Py on a simulated log with loops, repeats and open cases.

The log is the default scenario (Wahv objections that go back to the CJIB, adjourned hearings,
second reminders, instalments, fines never followed up), delivered to the domain core in shuffled
order with duplicates. Three computations must agree exactly:
- the product: the domain core's final states (`timeline`, `facts_of`);
- PM4Py (a process-mining library) on the same events as an event log;
- an independent batch computation here, from the simulator's ground truth (no domain code).
What is compared: work in progress at several moments with hindsight (a case is open at t when its
first event is at or before t and its last event after t; also as the case-fact store answers it,
with the stage visits open then), case durations, directly-follows
durations, and outcome shares against PM4Py's end-activity shares for end activities that the
chain maps to a closure.
"""

from __future__ import annotations

import importlib.util
import itertools
import random
import statistics
import sys
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pm4py
import pytest
import yaml
from core_fixtures import CHAIN, DAY

from ketenmonitor.domain.case import CaseClosed, CaseEvent, apply_event, facts_of, timeline
from ketenmonitor.domain.chain import DEFAULT_CHAIN_FILE
from ketenmonitor.domain.flow import rework_counts
from ketenmonitor.simulator import load_scenario, occurrence_of, simulate_cases
from ketenmonitor.store.asof import open_cases_at, open_visits_at
from ketenmonitor.store.engine import make_engine
from ketenmonitor.store.sink import CaseFactSink


def _load_flow_truth():
    # The independent reading of a case of tests/integration (no domain code), loaded by path.
    path = Path(__file__).resolve().parents[1] / "integration" / "flow_truth.py"
    spec = importlib.util.spec_from_file_location("crosscheck_flow_truth", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module.case_flow


case_flow = _load_flow_truth()

END = 1_767_225_600.0  # 2026-01-01
START = END - 3 * 365 * DAY
# Moments between whole seconds: no event lies exactly on one, so "last event after t" and
# PM4Py's closed interval [first, last] agree without a boundary convention.
MOMENTS = [START + f * (END - START) + 0.5 for f in (0.1, 0.35, 0.6, 0.85, 0.99)]


def label(milestone: str, outcome: str | None) -> str:
    return f"{milestone}:{outcome}" if outcome else milestone


@pytest.fixture(scope="module")
def log():
    cases = simulate_cases(load_scenario(), 2500, START, END, seed=15)
    events = [
        CaseEvent(f"{c.case_key}-{n}", c.case_key, s.milestone, s.occurred_at, c.case_type,
                  c.district, s.outcome, 0, False, occurrence_of(c, n))
        for c in cases
        for n, s in enumerate(c.steps)
    ]
    rng = random.Random(15)
    delivered = events + rng.sample(events, len(events) // 20)  # duplicates
    rng.shuffle(delivered)  # any arrival order
    states: dict = {}
    for event in delivered:
        states[event.case_key] = apply_event(CHAIN, states.get(event.case_key), event).state
    frame = pd.DataFrame(
        {
            "case": [e.case_key for e in events],
            "activity": [label(e.milestone, e.outcome) for e in events],
            "time": [datetime.fromtimestamp(e.occurred_at, UTC) for e in events],
        }
    )
    frame = pm4py.format_dataframe(
        frame, case_id="case", activity_key="activity", timestamp_key="time"
    )
    return cases, states, frame


def _product(states):
    """What the core's states say: per case its timeline as (time, label)."""
    return {
        key: [(t, label(m, r.outcome)) for t, m, r in timeline(CHAIN, state)]
        for key, state in states.items()
    }


def _truth(cases):
    """The simulator's ground truth, path order = time order (no domain code)."""
    return {c.case_key: [(s.occurred_at, label(s.milestone, s.outcome)) for s in c.steps]
            for c in cases}


def test_the_log_has_loops_repeats_and_cases_that_never_close(log):
    cases, states, _ = log
    rework = rework_counts(CHAIN, states.values())
    assert rework[("stage", "cjib_collection")] > 0  # Wahv: back to the CJIB after an objection
    assert rework[("milestone", "first_hearing")] > 0  # adjourned hearings
    assert rework[("milestone", "instalment_paid")] > 0
    never = [c for c in cases if c.complete and not any(
        isinstance(f, CaseClosed) for f in facts_of(CHAIN, states[c.case_key]))]
    assert len(never) > 10


@pytest.fixture(scope="module")
def store(log, tmp_path_factory):
    """The case-fact store (SQLite) written from the core's states, as the worker writes it."""
    _, states, _ = log
    url = f"sqlite:///{tmp_path_factory.mktemp('store') / 'store.db'}"
    with CaseFactSink.from_url(url, CHAIN) as sink:
        sink.start()
        for key, state in states.items():
            sink.add(key, state)
    return make_engine(url)


def test_work_in_progress_at_several_moments_equals_pm4py(log, store):
    cases, states, frame = log
    product, truth = _product(states), _truth(cases)
    for moment in MOMENTS:
        at = datetime.fromtimestamp(moment, UTC)
        open_cases = pm4py.filter_time_range(frame, at, at, mode="traces_intersecting")
        expected = open_cases["case:concept:name"].nunique()
        ours = sum(1 for tl in product.values() if tl[0][0] <= moment < tl[-1][0])
        independent = sum(1 for tl in truth.values() if tl[0][0] <= moment < tl[-1][0])
        assert open_cases_at(store, moment) == ours == independent == expected
        assert expected > 20


def test_stage_visits_open_at_a_moment_in_the_store_equal_the_independent_computation(
    log, store
):
    cases, _, _ = log
    spec = yaml.safe_load(DEFAULT_CHAIN_FILE.read_text(encoding="utf-8"))
    flows = [case_flow(spec, [(s.milestone, s.outcome, s.occurred_at) for s in c.steps])
             for c in cases]
    for moment in MOMENTS:
        expected = Counter(
            stage
            for flow in flows
            for stage, visits in flow.visits.items()
            for entered, left in visits
            if entered <= moment and (left is None or left > moment)
        )
        assert open_visits_at(store, moment) == dict(expected)


def test_case_durations_equal_pm4py(log):
    cases, states, frame = log
    expected = sorted(pm4py.get_all_case_durations(frame))
    ours = sorted(tl[-1][0] - tl[0][0] for tl in _product(states).values())
    independent = sorted(tl[-1][0] - tl[0][0] for tl in _truth(cases).values())
    assert ours == independent == expected


def _directly_follows(timelines):
    out = defaultdict(list)
    for tl in timelines.values():
        for (t1, a), (t2, b) in itertools.pairwise(tl):
            out[(a, b)].append(t2 - t1)
    return {pair: sorted(durations) for pair, durations in out.items()}


def test_directly_follows_durations_equal_pm4py(log):
    cases, states, frame = log
    performance, _, _ = pm4py.discover_performance_dfg(frame)
    frequency, _, _ = pm4py.discover_dfg(frame)
    ours, independent = _directly_follows(_product(states)), _directly_follows(_truth(cases))
    assert ours == independent
    assert set(ours) == set(performance) == set(frequency)
    loops = [pair for pair in ours if pair[0] == pair[1]]
    assert ("first_hearing", "first_hearing") in loops
    for pair, durations in ours.items():
        stats = performance[pair]
        assert len(durations) == frequency[pair]
        assert (min(durations), max(durations)) == (stats["min"], stats["max"])
        assert sum(durations) == stats["sum"]
        assert statistics.median(durations) == stats["median"]


def test_outcome_shares_equal_pm4py_end_activity_shares(log):
    cases, states, frame = log
    end_activities = pm4py.get_end_activities(frame)
    total = sum(end_activities.values())
    assert total == len(cases)
    closures = {label(c.milestone, o) for c in CHAIN.spec.closures for o in c.outcomes}
    closed = Counter(
        label(f.closing_milestone, f.outcome)
        for state in states.values()
        for f in facts_of(CHAIN, state)
        if isinstance(f, CaseClosed)
    )
    truth_closed = Counter(tl[-1][1] for tl in _truth(cases).values() if tl[-1][1] in closures)
    mapped = {a: n for a, n in end_activities.items() if a in closures}
    assert closed == truth_closed == Counter(mapped)
    for activity, n in mapped.items():
        assert closed[activity] / len(states) == n / total
    # Every other end activity is a case the model holds open.
    assert sum(closed.values()) == sum(mapped.values()) < total
