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

from core_fixtures import CHAIN, DAY, fold_live
from hypothesis import given, settings
from hypothesis import strategies as st

from ketenmonitor.delivery import DeliveryPlanner, deliveries_in_order
from ketenmonitor.domain.case import (
    CaseClosed,
    CaseEvent,
    CaseState,
    SegmentCompleted,
    StageEntered,
    StageLeft,
    apply_event,
    facts_of,
)
from ketenmonitor.domain.chain import CLOSED, Chain
from ketenmonitor.domain.totals import ChainTotals, rebuild
from ketenmonitor.simulator import Faults, load_scenario, stream_cases
from streams.codec import decode_state, encode_state
from streams.processing import CaseProcessor, Ingestor, PartitionTotals, Rejected

MILESTONES = list(CHAIN.milestones)


def reference_facts(chain: Chain, state: CaseState) -> set:
    """Every fact of a case, by the definition in the chain spec (no precomputed plan)."""
    present = {m: r for m, r in state.records.items() if not r.retracted}
    if not present:
        return set()
    rank = {m: chain.milestones[m].rank for m in present}
    furthest = max(present, key=rank.__getitem__)
    top = present[furthest]
    case_type, district = top.case_type, top.district
    facts: set = set()
    closed_at = None
    closing = chain.closures.get(furthest)
    if closing is not None and top.outcome in closing:
        closed_at = top.occurred_at
        facts.add(CaseClosed(top.outcome, furthest, case_type, district, closed_at))
    for stage in chain.spec.stages:
        entries = [present[m].occurred_at for m in stage.enter if m in present]
        if not entries:
            continue
        entered_at = min(entries)
        facts.add(StageEntered(stage.id, case_type, district, entered_at))
        exits = [present[m].occurred_at for m in stage.exit if m in present]
        last_exit = max(chain.milestones[m].rank for m in stage.exit)
        later = [r.occurred_at for m, r in present.items() if rank[m] > last_exit]
        left_at = min(exits) if exits else min(later) if later else None
        if left_at is not None:
            facts.add(StageLeft(stage.id, case_type, district, entered_at, left_at))
    for segment in chain.spec.segments:
        start = present.get(segment.start)
        if start is None:
            continue
        if segment.end == CLOSED:
            end_at = closed_at
        else:
            end = present.get(segment.end)
            end_at = end.occurred_at if end is not None else None
        if end_at is not None and end_at >= start.occurred_at:
            facts.add(SegmentCompleted(
                segment.id, case_type, district, start.occurred_at, end_at
            ))
    return facts


# Events of one case: any milestone, in any order, with times that may tie or run backwards,
# attributes that may differ per partner, corrections, retractions and repeated event ids.
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
    ),
    max_size=25,
)


@settings(max_examples=400, deadline=None)
@given(events)
def test_every_event_adds_and_withdraws_exactly_the_difference_of_the_reference_facts(sequence):
    state = None
    before: set = set()
    for event in sequence:
        applied = apply_event(CHAIN, state, event)
        after = reference_facts(CHAIN, applied.state)
        assert applied.added == after - before
        assert applied.removed == before - after
        assert facts_of(CHAIN, applied.state) == after
        state, before = applied.state, after


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
    assert rewritten.startswith(b'{"v":2,') and decode_state(rewritten) == state
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
    assert +Counter(live.backlog()) == series("ketenmonitor_backlog_cases")
    assert +live.closed == series("ketenmonitor_cases_closed_total")
    counts = Counter()
    for (metric, labels), value in expected.items():
        if metric == "ketenmonitor_segment_lead_time_seconds_count":
            d = dict(labels)
            counts[(d["segment"], d["case_type"], d["district"])] = value
    assert {k: h.count for k, h in live.lead_times.items() if h.count} == +counts
    assert sum(live.inflow.values()) > 1000
