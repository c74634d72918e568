"""Dormant cases and rework in the live totals: the domain fold, and what /metrics exports.

The exported figures are compared with the independent batch computation of
tests/integration/batch_truth.py, which reads the chain definition as data and uses nothing from
ketenmonitor.domain.
"""

from __future__ import annotations

import importlib.util
from collections import Counter
from pathlib import Path

from core_fixtures import CHAIN, DAY
from hypothesis import given, settings
from hypothesis import strategies as st
from ketenmonitor.streams.metrics import ChainCollector
from ketenmonitor.streams.processing import CaseProcessor, Ingestor, PartitionTotals, Rejected
from ketenmonitor.streams.totals import LocalTotals
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest

from ketenmonitor.delivery import DeliveryPlanner, deliveries_in_order
from ketenmonitor.domain.case import CaseEvent, apply_event
from ketenmonitor.domain.flow import NO_MARKS, dormancy_counts, is_dormant, marks_of
from ketenmonitor.domain.totals import ChainTotals, rebuild
from ketenmonitor.infra.worker_process import parse_samples
from ketenmonitor.simulator import Faults, load_scenario, stream_cases

HOUR = 3600.0
KEY = ("court_trial", "standard", "amsterdam")
LIMIT = CHAIN.fact_plan.dormant_after["court_trial"]


def ev(n, milestone, at, outcome=None, occurrence=None, revision=0, retracted=False, key="case"):
    return CaseEvent(f"e{n}", key, milestone, at, "standard", "amsterdam", outcome, revision,
                     retracted, occurrence)


class Case:
    """One case folded into totals the way the worker does: facts, then marks before/after."""

    def __init__(self, totals: ChainTotals, key: str = "case") -> None:
        self.totals, self.key, self.state, self.n = totals, key, None, 0

    def send(self, milestone, at, **changes) -> None:
        self.n += 1
        before = None if self.state is None else marks_of(CHAIN, self.state)
        applied = apply_event(CHAIN, self.state, ev(f"{self.key}{self.n}", milestone, at,
                                                    key=self.key, **changes))
        self.totals.record(applied, new_case=self.state is None)
        self.totals.mark(before, marks_of(CHAIN, applied.state))
        self.state = applied.state


def open_and_dormant(totals: ChainTotals, at: float) -> tuple[int, int, int]:
    open_ = totals.backlog().get(KEY, 0)
    dormant = totals.dormant(at).get(KEY, 0)
    return open_, open_ - dormant, dormant


# -- the domain fold ----------------------------------------------------------------------------
def test_a_case_without_events_past_the_stage_limit_is_dormant_not_active_until_its_next_event():
    totals = ChainTotals(CHAIN)
    case = Case(totals)
    case.send("om_intake", 0.0)
    case.send("court_intake", 10 * DAY + 0.5 * HOUR)  # measured from 10 days, 0:00
    assert open_and_dormant(totals, 10 * DAY + LIMIT) == (1, 1, 0)  # exactly the limit: active
    assert open_and_dormant(totals, 10 * DAY + LIMIT + 1) == (1, 0, 1)
    case.send("first_hearing", 10 * DAY + LIMIT + DAY)  # an event wakes it up
    assert open_and_dormant(totals, 10 * DAY + LIMIT + 2 * DAY) == (1, 1, 0)
    assert open_and_dormant(totals, 11 * DAY + 2 * LIMIT + 1) == (1, 0, 1)
    case.send("judgment", 11 * DAY + 2 * LIMIT + 2 * DAY, outcome="acquittal")
    assert open_and_dormant(totals, 100 * 365 * DAY) == (0, 0, 0)  # closed: never dormant
    assert totals.waiting_by_hours[KEY] == Counter()


def test_a_late_event_in_event_time_wakes_a_case_only_if_it_is_its_latest():
    totals = ChainTotals(CHAIN)
    case = Case(totals)
    case.send("court_intake", 100 * DAY)
    case.send("om_intake", 50 * DAY)  # arrives late but happened before: still 100 days
    at = 100 * DAY + LIMIT + HOUR
    assert open_and_dormant(totals, at) == (1, 0, 1)
    case.send("first_hearing", 100 * DAY + LIMIT)  # the latest event now
    assert open_and_dormant(totals, at) == (1, 1, 0)
    case.send("first_hearing", 100 * DAY + LIMIT, revision=1, retracted=True)  # taken back
    assert open_and_dormant(totals, at) == (1, 0, 1)


def test_the_live_fold_agrees_with_the_state_reading_of_domain_flow_at_any_reference_time():
    totals = ChainTotals(CHAIN)
    states = []
    for i, (start, gap) in enumerate([(0, 5), (3, 400), (7, 20), (30, 700), (31, 1), (90, 366)]):
        case = Case(totals, key=f"c{i}")
        case.send("om_intake", start * DAY)
        case.send("om_decision", (start + 5) * DAY, outcome="summons")
        case.send("court_intake", (start + 6) * DAY + 0.3 * HOUR)
        case.send("first_hearing", (start + 6 + gap) * DAY)
        states.append(case.state)
    for day in (10, 380, 400, 600, 1000, 5000):
        reading = dormancy_counts(CHAIN, states, day * DAY)
        expected = {k[:3]: n for k, n in reading.items() if k[3] == "dormant"}
        assert totals.dormant(day * DAY) == expected, day
        assert rebuild(CHAIN, states).dormant(day * DAY) == expected, day
    assert sum(totals.dormant(1000 * DAY).values()) > 0


def ages(totals: ChainTotals, at: float) -> dict[str, int]:
    """Age band -> active cases of KEY's stage at `at`."""
    return {k[3]: n for k, n in totals.backlog_by_age(at).items() if k[:3] == KEY and n}


def test_a_dormant_case_leaves_the_age_bands_and_the_oldest_age_and_comes_back_with_an_event():
    totals = ChainTotals(CHAIN)
    old, young = Case(totals, key="old"), Case(totals, key="young")
    old.send("court_intake", 0.5 * HOUR)  # entered in hour 0
    young.send("court_intake", 300 * DAY)
    at = LIMIT + HOUR  # the old case has been silent past the limit; the young one has not
    assert open_and_dormant(totals, at) == (2, 1, 1)
    assert ages(totals, at) == {"30-90d": 1}  # the young case only
    assert totals.oldest_active_entry(at) == {"court_trial": 300 * DAY}
    old.send("first_hearing", at)  # wakes up: back in the ages, at its age in the stage
    assert open_and_dormant(totals, at) == (2, 2, 0)
    assert ages(totals, at) == {"30-90d": 1, "365-730d": 1}
    assert totals.oldest_active_entry(at) == {"court_trial": 0}
    later = at + LIMIT + DAY  # both silent past the limit: no active case, no oldest age
    assert open_and_dormant(totals, later) == (2, 0, 2)
    assert ages(totals, later) == {} and "court_trial" not in totals.oldest_active_entry(later)
    # A stage without a limit keeps every open case in its ages.
    assert ages(totals, 10**12) == {}
    states = [old.state, young.state]
    for t in (at, later):
        assert rebuild(CHAIN, states).backlog_by_age(t) == totals.backlog_by_age(t)
        assert rebuild(CHAIN, states).oldest_active_entry(t) == totals.oldest_active_entry(t)


def _fold_with_marks(events, after_each=None) -> tuple[ChainTotals, dict]:
    totals, states = ChainTotals(CHAIN), {}
    for event in events:
        state = states.get(event.case_key)
        applied = apply_event(CHAIN, state, event)
        totals.record(applied, new_case=state is None)
        totals.mark(None if state is None else marks_of(CHAIN, state),
                    marks_of(CHAIN, applied.state))
        states[event.case_key] = applied.state
        if after_each is not None:
            after_each(totals)
    return totals, states


# Three cases of the court stage (limit 365 days) and one that stays at the OM; a late event, a
# corrected time that makes a case dormant earlier, a retraction that takes a waking event back.
ORDER_EVENTS = [
    ev(1, "court_intake", 10 * DAY, key="a"),
    ev(2, "first_hearing", 200 * DAY, key="a"),
    ev(3, "first_hearing", 600 * DAY, occurrence="2", key="a"),
    ev(4, "om_intake", 0.0, key="b"),
    ev(5, "om_decision", 20 * DAY, outcome="summons", key="b"),
    ev(6, "court_intake", 30 * DAY + 0.7 * HOUR, key="b"),
    ev(7, "first_hearing", 500 * DAY, key="b"),
    ev(8, "first_hearing", 100 * DAY, revision=1, key="b"),
    ev(9, "court_intake", 400 * DAY, key="c"),
    ev(10, "first_hearing", 900 * DAY, key="c"),
    ev(11, "first_hearing", 900 * DAY, revision=1, retracted=True, key="c"),
    ev(12, "om_intake", 50 * DAY, key="d"),
]


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_arrival_order_never_changes_dormant_cases_the_ages_or_the_oldest_age(data):
    kept = data.draw(st.lists(st.sampled_from(ORDER_EVENTS), min_size=1,
                              max_size=len(ORDER_EVENTS) + 3))
    shuffled = data.draw(st.permutations(kept))
    a, states = _fold_with_marks(kept)
    b, _ = _fold_with_marks(shuffled)
    restored = rebuild(CHAIN, states.values())
    for day in (100, 380, 500, 800, 1000, 1300, 5000):
        t = day * DAY
        figures = [(x.dormant(t), x.backlog_by_age(t), x.oldest_active_entry(t))
                   for x in (a, b, restored)]
        assert figures[0] == figures[1] == figures[2], day
        # The ages are those of the backlog gauge: open - dormant, per stage and label.
        per_key = Counter()
        for (stage, ct, d, _), n in a.backlog_by_age(t).items():
            assert n > 0
            per_key[(stage, ct, d)] += n
        dormant = a.dormant(t)
        assert +per_key == +Counter({k: n - dormant.get(k, 0) for k, n in a.backlog().items()})


# Reference times around band limits and the dormancy limit of the court stage, on and off the
# hour: some in one reading phase (the kept readings are updated), some across phases.
READ_AT = [t for day in (100, 380, 420, 500, 766, 800, 1000, 1300) for t in
           (day * DAY, day * DAY + 1, day * DAY + 0.5 * HOUR, day * DAY + HOUR - 1)] + \
          [10 * DAY + 7 * DAY + 0.7 * HOUR, 30 * DAY + 0.7 * HOUR + LIMIT]


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_kept_backlog_readings_equal_the_scans_whatever_the_order_of_events_and_reads(data):
    # A publication reads backlog_readings (kept up to date between reads); the scans read every
    # open visit. Reads between events, at times in the same phase and across phases.
    events = data.draw(st.lists(st.sampled_from(ORDER_EVENTS), min_size=1,
                                max_size=len(ORDER_EVENTS) + 3))

    def read_both_ways(totals: ChainTotals) -> None:
        for t in data.draw(st.lists(st.sampled_from(READ_AT), max_size=3)):
            by_age, oldest, dormant = totals.backlog_readings(t)
            assert by_age == {k: n for k, n in totals.backlog_by_age(t).items() if n}, t
            assert oldest == totals.oldest_active_entry(t), t
            assert dormant == {k: n for k, n in totals.dormant(t).items() if n}, t

    _fold_with_marks(data.draw(st.permutations(events)), after_each=read_both_ways)


def test_a_reading_phase_holds_the_limits_offsets_within_the_hour():
    totals = ChainTotals(CHAIN)
    Case(totals).send("court_intake", 10 * DAY)
    totals.backlog_readings(400 * DAY + 1)
    readings = totals._readings
    assert readings is not None
    assert readings.phase_of(400 * DAY + 1) == readings.phase_of(400 * DAY + HOUR - 1)
    assert readings.phase_of(400 * DAY) != readings.phase_of(400 * DAY + 1)  # limits end on 0:00
    assert readings.phase_of(400 * DAY + HOUR) != readings.phase_of(400 * DAY + 1)


def test_is_dormant_counts_from_the_start_of_the_hour_of_the_latest_event():
    assert not is_dormant(None, 0.0, 10**12)
    assert not is_dormant(DAY, 0.5 * HOUR, DAY)
    assert is_dormant(DAY, 0.5 * HOUR, DAY + 1)  # 0.5 h after the event, but a day after 0:00


def test_rework_items_count_repeats_and_reentries_and_their_withdrawal():
    totals = ChainTotals(CHAIN)
    case = Case(totals)
    case.send("court_intake", 0.0)
    case.send("first_hearing", 10 * DAY)
    case.send("first_hearing", 40 * DAY, occurrence="2")  # adjourned and held again
    case.send("first_hearing", 70 * DAY, occurrence="3")
    assert totals.rework[("milestone", "first_hearing")] == 2
    assert marks_of(CHAIN, case.state).rework == {
        ("milestone", "first_hearing", 1, "rework"),
        ("milestone", "first_hearing", 2, "rework"),
    }
    case.send("first_hearing", 70 * DAY, occurrence="3", revision=1, retracted=True)
    assert totals.rework[("milestone", "first_hearing")] == 1
    assert totals.rework_withdrawn[("milestone", "first_hearing")] == 1
    # Back at the OM after the court stage, then at court again: re-entries of two stages.
    case.send("om_intake", 100 * DAY, occurrence="2")
    case.send("court_intake", 120 * DAY, occurrence="2")
    assert totals.rework[("stage", "court_trial")] == 1
    assert totals.rework[("milestone", "court_intake")] == 1
    assert marks_of(CHAIN, None) == NO_MARKS


# -- what /metrics exports, against the independent computation ----------------------------------
def _batch_truth():
    path = Path(__file__).resolve().parents[1] / "integration" / "batch_truth.py"
    spec = importlib.util.spec_from_file_location("dormancy_batch_truth", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_exported_dormant_active_and_rework_figures_equal_the_independent_computation():
    """A faulty delivery (duplicates, out of order, late, corrected times) of simulated cases
    through the worker's steps, exported by its collector from the published records, and read
    again after a restore from the stored case values."""
    truth = _batch_truth()
    scenario = load_scenario()
    end = 1_767_225_600.0  # 2026-01-01
    start = end - 3 * 365 * DAY
    sims = list(stream_cases(scenario, 1500, start, end, seed=23))
    faults = Faults(duplicate_rate=0.05, out_of_order_rate=0.2, late_rate=0.05,
                    correction_rate=0.1)
    planner = DeliveryPlanner(CHAIN, scenario.publish_delay, faults, start, end, seed=23)
    ingestor = Ingestor(CHAIN, b"dormancy-test-key", 3)
    processor, live = CaseProcessor(CHAIN), PartitionTotals(CHAIN)
    table: dict[str, tuple[int, bytes]] = {}
    for delivery in deliveries_in_order(sims, planner, start, end):
        routed = ingestor.route(delivery.value, delivery.organisation, now=end)
        if isinstance(routed, Rejected):
            continue
        stored = table.get(routed.pseudonym)
        step = processor.apply(routed.pseudonym, routed.payload, stored and stored[1])
        live.fold(routed.partition, [step])
        table[routed.pseudonym] = (routed.partition, step.stored)
    reference = end + 30 * DAY
    names = truth.CASE_METRICS - {"ketenmonitor_events_accepted_total"}
    expected = truth.comparable(truth.expected_samples(CHAIN, sims, reference), names)

    def exported(partition_totals: PartitionTotals) -> dict:
        registry = CollectorRegistry()
        source = LocalTotals(lambda: partition_totals.by_partition.values(), list,
                             lambda: reference)
        registry.register(ChainCollector(CHAIN, source, {}, reference_time=lambda: reference))
        return parse_samples(generate_latest(registry).decode())

    restored = PartitionTotals(CHAIN)
    for partition, raw in table.values():
        restored.add_stored(partition, [raw])
    for totals in (live, restored):
        samples = exported(totals)
        actual = truth.comparable(truth.net_samples(samples), names)
        wrong, extra = truth.differences(actual, expected)
        assert not wrong and not extra, (list(wrong.items())[:5], list(extra.items())[:5])
    for name in ("ketenmonitor_dormant_cases", "ketenmonitor_backlog_cases",
                 "ketenmonitor_milestone_repeats_total",
                 "ketenmonitor_stage_reentries_cases_total"):
        assert sum(v for k, v in expected.items() if k[0] == name) > 10, name
    # The restore found what the live fold had withdrawn (the corrected times withdrew facts;
    # withdrawn rework and its restore are checked in test_totals_and_codecs.py).
    withdrawn = {k: v for k, v in samples.items() if "withdrawn" in k[0]}
    assert withdrawn == {k: v for k, v in exported(live).items() if "withdrawn" in k[0]}
    assert sum(withdrawn.values()) > 0
    # Every open case is either active backlog or dormant, per stage and label.
    open_cases = Counter()
    for p in live.by_partition.values():
        open_cases.update(p.backlog())
    for (stage, ct, d), n in open_cases.items():
        labels = {("stage", stage), ("organisation", CHAIN.stage_organisation[stage]),
                  ("case_type", ct), ("district", d)}
        active = samples.get(("ketenmonitor_backlog_cases", frozenset(labels)), 0)
        dormant = samples.get(("ketenmonitor_dormant_cases", frozenset(labels)), 0)
        assert active + dormant == n
    assert table[next(iter(table))][1][0] == 4  # the case-value version (streams/codec.py)
