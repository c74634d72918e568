"""The fast domain core computes exactly what the plain definition of the facts says.

`reference_facts` below is the straightforward definition (the core as it was before it computed
only the facts an event can change): every stage and segment of the chain spec, looked up by name.
The core must agree with it fact for fact, event by event, and its totals must agree with a fold of
the reference facts and with the independent batch computation of tests/integration/batch_truth.py.
"""

from __future__ import annotations

import importlib.util
from collections import Counter
from pathlib import Path

import yaml
from core_fixtures import CHAIN, DAY, fold_live
from hypothesis import given, settings
from hypothesis import strategies as st
from ketenmonitor.streams.codec import decode_state, encode_state
from ketenmonitor.streams.processing import CaseProcessor, Ingestor, PartitionTotals, Rejected

from ketenmonitor.delivery import DeliveryPlanner, deliveries_in_order
from ketenmonitor.domain.case import (
    CaseClosed,
    CaseEvent,
    CaseState,
    SegmentCompleted,
    StageEntered,
    StageLeft,
    apply_event,
    apply_event_outlined,
    fact_tuples,
    facts_of,
    stage_outline,
)
from ketenmonitor.domain.chain import CLOSED, DEFAULT_CHAIN_FILE, Chain, chain_from_mapping
from ketenmonitor.domain.flow import NO_MARKS, apply_event_marked, facts_and_marks, marks_of
from ketenmonitor.domain.totals import ChainTotals, rebuild
from ketenmonitor.simulator import Faults, load_scenario, stream_cases

MILESTONES = list(CHAIN.milestones)


def reference_facts(chain: Chain, state: CaseState) -> set:
    """Every fact of a case, by the definition in the chain spec (no precomputed plan).

    The occurrences in event time (chain rank, then key, break ties); per stage, a visit from an
    entry reached while outside it to the next exit, or milestone outside the stage's ranks; per
    segment, the first start to the first end at or after it; closed while the latest occurrence
    closes the case.
    """
    rank = {m.id: n for n, m in enumerate(m for p in chain.spec.partners for m in p.milestones)}
    timeline = sorted(
        (r.occurred_at, rank[key.split("#")[0]], key, key.split("#")[0], r)
        for key, r in state.records.items()
        if not r.retracted
    )
    if not timeline:
        return set()
    last_t, _, _, last_m, top = timeline[-1]
    case_type, district = top.case_type, top.district
    facts: set = set()
    closed_at = None
    for closure in chain.spec.closures:
        if closure.milestone == last_m and top.outcome in closure.outcomes:
            closed_at = last_t
            facts.add(CaseClosed(top.outcome, last_m, case_type, district, last_t))
    for stage in chain.spec.stages:
        low = min(rank[m] for m in stage.enter)
        high = max(rank[m] for m in stage.exit)
        visits: list[list] = []
        inside = False
        for t, r, _, m, _ in timeline:
            if inside and (m in stage.exit or (m not in stage.enter and not low <= r <= high)):
                visits[-1][1] = t
                inside = False
            if not inside and m in stage.enter:
                if visits and visits[-1][1] == t:
                    visits[-1][1] = None  # left and entered at one instant: it never left
                else:
                    visits.append([t, None])
                inside = True
                if m in stage.exit:  # entered and left at once
                    visits[-1][1] = t
                    inside = False
        for entered_at, left_at in visits:
            facts.add(StageEntered(stage.id, case_type, district, entered_at))
            if left_at is not None:
                facts.add(StageLeft(stage.id, case_type, district, entered_at, left_at))
    for segment in chain.spec.segments:
        starts = [t for t, _, _, m, _ in timeline if m == segment.start]
        if not starts:
            continue
        started_at = min(starts)
        if segment.end == CLOSED:
            ends = [closed_at] if closed_at is not None else []
        else:
            ends = [t for t, _, _, m, _ in timeline if m == segment.end]
        ends = [t for t in ends if t >= started_at]
        if ends:
            facts.add(SegmentCompleted(
                segment.id, case_type, district, started_at, min(ends)
            ))
    return facts


# Events of one case: any milestone, in any order, with times that may tie or run backwards,
# attributes that may differ per partner, repeated occurrences, corrections, retractions and
# repeated event ids.
events = st.lists(
    st.builds(
        CaseEvent,
        event_id=st.sampled_from([f"e{i}" for i in range(12)]),
        case_key=st.just("case"),
        milestone=st.sampled_from(MILESTONES),
        occurred_at=st.sampled_from([0.0, 1.0, 2.0, 5.0, 30.0, 400.0]).map(lambda d: d * DAY),
        case_type=st.sampled_from(["standard", "youth"]),
        district=st.sampled_from(["amsterdam", "rotterdam"]),
        outcome=st.sampled_from([None, "dismissal", "summons", "acquittal", "conviction",
                                 "non_financial", "paid"]),
        revision=st.integers(0, 2),
        retracted=st.booleans(),
        occurrence=st.sampled_from([None, None, "1", "2"]),
    ),
    max_size=25,
)


def _chain_with_a_stage_of_no_duration() -> Chain:
    spec = yaml.safe_load(DEFAULT_CHAIN_FILE.read_text(encoding="utf-8"))
    spec["stages"].append(
        {"id": "triage", "label": "Triage", "enter": ["zsm_triage"], "exit": ["zsm_triage"]}
    )
    return chain_from_mapping(spec)


CHAINS = [CHAIN, _chain_with_a_stage_of_no_duration()]


@settings(max_examples=400, deadline=None)
@given(events, st.sampled_from(CHAINS))
def test_every_event_adds_and_withdraws_exactly_the_difference_of_the_reference_facts(
    sequence, chain
):
    state = None
    before: set = set()
    for event in sequence:
        applied = apply_event(chain, state, event)
        after = reference_facts(chain, applied.state)
        assert applied.added == after - before
        assert applied.removed == before - after
        assert facts_of(chain, applied.state) == after
        state, before = applied.state, after


@settings(max_examples=300, deadline=None)
@given(st.data(), st.sampled_from(CHAINS))
def test_events_in_time_order_take_the_short_path_to_the_same_facts(data, chain):
    # Mostly in order, as partners deliver: the core's path for an appended occurrence.
    sequence = sorted(data.draw(events), key=lambda e: e.occurred_at)
    state = None
    before: set = set()
    for event in sequence:
        applied = apply_event(chain, state, event)
        after = reference_facts(chain, applied.state)
        assert (applied.added, applied.removed) == (after - before, before - after)
        state, before = applied.state, after


def _stage_reading(outline):
    """An outline without the facts a reading of stages ignores (segments)."""
    if outline is None:
        return None
    stage_facts = {f for f in outline.stage_facts if f[-1] != "segment_completed"}
    return outline._replace(stage_facts=stage_facts)


@settings(max_examples=400, deadline=None)
@given(events, st.sampled_from(CHAINS), st.booleans())
def test_marks_read_from_the_facts_walk_equal_marks_of_the_states(sequence, chain, in_order):
    # The worker's one-walk step (apply_event_marked) against the definition (marks_of of the
    # state before and after), in any order and in time order (the short path).
    if in_order:
        sequence = sorted(sequence, key=lambda e: e.occurred_at)
    state = None
    for event in sequence:
        applied, marks = apply_event_marked(chain, state, event)
        reference = apply_event(chain, state, event)
        assert applied == reference
        _, outlines = apply_event_outlined(chain, state, event)
        before = None if state is None else marks_of(chain, state)
        after = marks_of(chain, applied.state)
        if marks is None:
            assert outlines is None
            assert (before or NO_MARKS) == after
            assert applied.state.present == (state.present if state else {})
        else:
            assert marks == (before, after)
            assert [_stage_reading(o) for o in outlines] == [
                None if state is None else _stage_reading(stage_outline(chain, state.records)),
                _stage_reading(stage_outline(chain, applied.state.records)),
            ]
        state = applied.state


@settings(max_examples=300, deadline=None)
@given(events, st.sampled_from(CHAINS))
def test_a_restore_reads_facts_and_marks_from_one_walk_as_from_two(sequence, chain):
    # ChainTotals.add_case (every stored case at a restore) against the two readings it replaced.
    state = None
    for event in sequence:
        state = apply_event(chain, state, event).state
        facts, marks = facts_and_marks(chain, state)
        assert facts == fact_tuples(chain, state.records)
        assert marks == marks_of(chain, state)


@settings(max_examples=200, deadline=None)
@given(events)
def test_the_codec_round_trips_every_state_and_keeps_the_wire_format(sequence):
    state = None
    for event in sequence:
        state = apply_event(CHAIN, state, event).state
        raw = encode_state(state)
        back = decode_state(raw)
        assert back == state
        assert encode_state(back) == raw


def test_state_written_by_the_first_codec_version_decodes():
    # Bytes as version 1 wrote them (no "v"; record fields as a list, superseded ids in "x").
    raw = (
        b'{"r":{"om_intake":["e1",100.0,"standard","amsterdam",null,0,false],'
        b'"om_decision":["e3",200.5,"youth","rotterdam","summons",1,true]},"x":["e2"],"d":2}'
    )
    state = decode_state(raw)
    assert state.records["om_decision"].outcome == "summons"
    assert state.records["om_decision"].retracted is True
    assert state.seen_event_ids == {"e1", "e2", "e3"}
    assert state.duplicates == 2 and state.corrections == 1
    rewritten = encode_state(state)
    assert rewritten[0] == 4 and decode_state(rewritten) == state  # rewritten as version 4
    short = decode_state(b'{"r":{"om_intake":["e1",100.0,"standard","amsterdam"]}}')
    assert short.records["om_intake"].revision == 0 and not short.records["om_intake"].retracted


def _faulty_log(seed: int, cases: int) -> list[tuple[str, bytes]]:
    scenario = load_scenario()
    end = 1_767_225_600.0  # 2026-01-01
    start = end - 2 * 365 * DAY
    faults = Faults(duplicate_rate=0.05, out_of_order_rate=0.2, late_rate=0.05,
                    correction_rate=0.1, malformed_rate=0.02)
    planner = DeliveryPlanner(CHAIN, scenario.publish_delay, faults, start, end, seed=seed)
    sims = stream_cases(scenario, cases, start, end, seed=seed)
    return [(d.organisation, d.value) for d in deliveries_in_order(sims, planner, start, end)]


def _reference_totals(states: list[CaseState]) -> ChainTotals:
    totals = ChainTotals(CHAIN)
    for state in states:
        totals.cases += 1
        totals.apply(reference_facts(CHAIN, state), ())
    return totals


def _figures(totals: ChainTotals) -> dict:
    return {
        "inflow": +totals.inflow,
        "outflow": +totals.outflow,
        "closed": +totals.closed,
        "open": {k: +h for k, h in totals.open_entries_by_hour.items() if +h},
        "lead": {k: (h.counts, h.total_seconds) for k, h in totals.lead_times.items() if h.count},
        "cases": totals.cases,
    }


def test_totals_of_a_faulty_simulated_log_equal_a_fold_of_the_reference_facts():
    processor = CaseProcessor(CHAIN)
    totals = PartitionTotals(CHAIN)
    ingestor = Ingestor(CHAIN, b"equivalence-test-key", 3)
    table: dict[str, bytes] = {}
    partition_of: dict[str, int] = {}
    for organisation, value in _faulty_log(seed=11, cases=600):
        routed = ingestor.route(value, organisation)
        if isinstance(routed, Rejected):
            continue
        key = routed.pseudonym
        step = processor.apply(key, routed.payload, table.get(key))
        totals.fold(routed.partition, [step])
        table[key] = step.stored
        partition_of[key] = routed.partition
    assert len(table) > 500
    for partition, live in totals.by_partition.items():
        states = [decode_state(v) for k, v in table.items() if partition_of[k] == partition]
        reference = _figures(_reference_totals(states))
        assert _figures(live) == reference
        assert _figures(rebuild(CHAIN, states)) == reference
    corrections = sum(t.corrections for t in totals.by_partition.values())
    duplicates = sum(t.duplicates for t in totals.by_partition.values())
    assert corrections > 0 and duplicates > 0  # the log exercised both


def _batch_truth():
    path = Path(__file__).resolve().parents[1] / "integration" / "batch_truth.py"
    spec = importlib.util.spec_from_file_location("equivalence_batch_truth", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_totals_of_a_simulated_log_match_the_independent_batch_computation():
    truth = _batch_truth()
    scenario = load_scenario()
    end = 1_767_225_600.0
    cases = list(stream_cases(scenario, 800, end - 2 * 365 * DAY, end, seed=5))
    live, _ = fold_live(
        CaseEvent(f"{case.case_key}-{n}", case.case_key, step.milestone, step.occurred_at,
                  case.case_type, case.district, step.outcome)
        for case in cases
        for n, step in enumerate(case.steps)
    )
    expected = truth.expected_samples(CHAIN, cases, end)

    def series(name: str) -> Counter:
        out: Counter = Counter()
        for (metric, labels), value in expected.items():
            if metric == name and value:
                d = dict(labels)
                out[(d.get("stage") or d.get("outcome"), d["case_type"], d["district"])] += value
        return out

    assert +live.inflow == series("ketenmonitor_stage_inflow_cases_total")
    assert +live.outflow == series("ketenmonitor_stage_outflow_cases_total")
    # Open cases: the truth's active backlog plus its dormant cases (fold_live folds facts only;
    # dormancy is checked in test_dormancy_and_rework.py).
    open_cases = series("ketenmonitor_backlog_cases") + series("ketenmonitor_dormant_cases")
    assert +Counter(live.backlog()) == open_cases
    assert +live.closed == series("ketenmonitor_cases_closed_total")
    counts = Counter()
    for (metric, labels), value in expected.items():
        if metric == "ketenmonitor_segment_lead_time_seconds_count":
            d = dict(labels)
            counts[(d["segment"], d["case_type"], d["district"])] = value
    assert {k: h.count for k, h in live.lead_times.items() if h.count} == +counts
    assert sum(live.inflow.values()) > 1000
