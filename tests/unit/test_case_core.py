"""The domain core: values in, facts out. No I/O."""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

import pytest
from core_fixtures import CHAIN, DAY, apply_all, fold_live
from hypothesis import given, settings
from hypothesis import strategies as st

from ketenmonitor.domain.case import (
    CaseClosed,
    CaseEvent,
    SegmentCompleted,
    StageEntered,
    StageLeft,
    apply_event,
    facts_of,
)
from ketenmonitor.domain.totals import rebuild

# Every branch of the default chain, as (milestone, outcome, day) paths.
BRANCHES = {
    "dismissal": [
        ("report_registered", None, 0), ("suspect_interviewed", None, 5),
        ("file_sent_to_om", None, 30),
        ("om_intake", None, 33), ("zsm_triage", None, 34), ("om_decision", "dismissal", 40),
    ],
    "penalty_order_paid": [
        ("report_registered", None, 0), ("file_sent_to_om", None, 20), ("om_intake", None, 22),
        ("om_decision", "penalty_order", 30), ("cjib_intake", None, 40),
        ("collection_closed", "paid", 70),
    ],
    "settlement_uncollectable": [
        ("report_registered", None, 0), ("file_sent_to_om", None, 20), ("om_intake", None, 22),
        ("om_decision", "settlement", 30), ("cjib_intake", None, 40), ("reminder_sent", None, 80),
        ("enforcement_order", None, 140), ("collection_closed", "uncollectable", 300),
    ],
    "acquittal": [
        ("report_registered", None, 0), ("file_sent_to_om", None, 20), ("om_intake", None, 22),
        ("om_decision", "summons", 60), ("court_intake", None, 70), ("first_hearing", None, 100),
        ("judgment", "acquittal", 110),
    ],
    "conviction_prison": [
        ("report_registered", None, 0), ("suspect_interviewed", None, 2),
        ("file_sent_to_om", None, 20), ("om_intake", None, 22), ("om_decision", "summons", 60),
        ("court_intake", None, 70), ("first_hearing", None, 100), ("judgment", "conviction", 110),
        ("final", "non_financial", 125),
    ],
    "appeal_fine_detention": [
        ("report_registered", None, 0), ("file_sent_to_om", None, 20), ("om_intake", None, 22),
        ("om_decision", "summons", 60), ("court_intake", None, 70), ("first_hearing", None, 100),
        ("judgment", "conviction", 110), ("appeal_lodged", None, 120),
        ("appeal_judgment", "conviction", 400), ("final", "financial", 420),
        ("cjib_intake", None, 430), ("collection_closed", "substitute_detention", 600),
    ],
}
CLOSING = {
    "dismissal": "dismissal",
    "penalty_order_paid": "paid",
    "settlement_uncollectable": "uncollectable",
    "acquittal": "acquittal",
    "conviction_prison": "non_financial",
    "appeal_fine_detention": "substitute_detention",
}


def events_of(path, case_type="standard", district="utrecht_unknown", key="case-1"):
    district = "midden_nederland" if district == "utrecht_unknown" else district
    return [
        CaseEvent(f"e{i}", key, m, day * DAY, case_type, district, outcome)
        for i, (m, outcome, day) in enumerate(path)
    ]


@pytest.mark.parametrize("branch", sorted(BRANCHES))
def test_every_branch_closes_the_case_with_its_outcome_and_leaves_every_stage_it_entered(branch):
    state, net = apply_all(events_of(BRANCHES[branch]))
    facts = facts_of(CHAIN, state)
    assert set(net) == facts
    closed = [f for f in facts if isinstance(f, CaseClosed)]
    assert [c.outcome for c in closed] == [CLOSING[branch]]
    entered = {f.stage for f in facts if isinstance(f, StageEntered)}
    left = {f.stage for f in facts if isinstance(f, StageLeft)}
    assert entered == left  # a closed case is in no backlog
    e2e = [f for f in facts if isinstance(f, SegmentCompleted) and f.segment == "end_to_end"]
    assert [f.lead_time_seconds for f in e2e] == [BRANCHES[branch][-1][2] * DAY]


def test_an_open_case_is_in_the_backlog_of_its_current_stage_only():
    path = BRANCHES["acquittal"][:5]  # up to court intake
    state, _ = apply_all(events_of(path))
    totals = rebuild(CHAIN, [state])
    open_stages = {k[0] for k, n in totals.backlog().items() if n}
    assert open_stages == {"court_trial"}
    assert not totals.closed


def test_a_case_that_skips_a_stage_exit_leaves_it_at_the_next_milestone():
    # The police never reported 'file sent': the case still left the police stage at OM intake.
    path = [
        ("report_registered", None, 0), ("om_intake", None, 25), ("om_decision", "dismissal", 30)
    ]
    state, _ = apply_all(events_of(path))
    left = {f.stage: f.at for f in facts_of(CHAIN, state) if isinstance(f, StageLeft)}
    assert left["police_investigation"] == 25 * DAY
    segments = {f.segment for f in facts_of(CHAIN, state) if isinstance(f, SegmentCompleted)}
    assert "police_report_to_file" not in segments
    assert "end_to_end" in segments


def test_a_case_that_skips_the_court_never_enters_the_court_stage():
    state, _ = apply_all(events_of(BRANCHES["penalty_order_paid"]))
    stages = {f.stage for f in facts_of(CHAIN, state) if isinstance(f, StageEntered)}
    assert "court_trial" not in stages and "cjib_collection" in stages


def test_lead_time_equal_to_a_norm_limit_falls_in_the_norm_bucket():
    path = [("court_intake", None, 0), ("first_hearing", None, 10), ("judgment", "conviction", 35)]
    state, _ = apply_all(events_of(path))
    totals = rebuild(CHAIN, [state])
    hist = totals.lead_times[("court_intake_to_judgment", "standard", "midden_nederland")]
    bounds = CHAIN.lead_time_buckets_seconds
    at_norm = bounds.index(35 * DAY)
    assert hist.cumulative()[at_norm] == 1
    assert hist.cumulative()[at_norm - 1] == 0


def test_the_same_event_id_twice_is_applied_once_and_counted_as_duplicate():
    events = events_of(BRANCHES["dismissal"])
    state, net = apply_all([*events, events[2], events[0]])
    clean_state, clean_net = apply_all(events)
    assert net == clean_net
    assert state.records == clean_state.records
    assert state.duplicates == 2


def test_a_correction_with_a_higher_revision_moves_the_lead_time():
    events = events_of(BRANCHES["dismissal"])
    corrected = CaseEvent(
        "fix-1", "case-1", "om_decision", 50 * DAY, "standard", "midden_nederland", "dismissal",
        revision=1,
    )
    _, net = apply_all([*events, corrected])
    e2e = [f for f in net if isinstance(f, SegmentCompleted) and f.segment == "end_to_end"]
    assert [f.lead_time_seconds for f in e2e] == [50 * DAY]


def test_a_retraction_withdraws_the_milestone_whatever_the_order():
    events = events_of(BRANCHES["dismissal"])
    retraction = CaseEvent(
        "undo-1", "case-1", "om_decision", 40 * DAY, "standard", "midden_nederland", None,
        revision=1, retracted=True,
    )
    for sequence in ([*events, retraction], [retraction, *events]):
        _, net = apply_all(sequence)
        assert not any(isinstance(f, CaseClosed) for f in net)
        assert any(isinstance(f, StageEntered) and f.stage == "om_assessment" for f in net)
        assert not any(isinstance(f, StageLeft) and f.stage == "om_assessment" for f in net)


def test_totals_folded_live_equal_totals_rebuilt_from_states():
    live, states = fold_live(
        event
        for n, branch in enumerate(sorted(BRANCHES))
        for event in reversed(events_of(BRANCHES[branch], key=f"c{n}"))
    )
    rebuilt = rebuild(CHAIN, list(states.values()))
    assert +live.inflow == +rebuilt.inflow and +live.outflow == +rebuilt.outflow
    assert +live.closed == +rebuilt.closed
    assert {k: v.counts for k, v in live.lead_times.items() if v.count} == {
        k: v.counts for k, v in rebuilt.lead_times.items()
    }
    assert live.cases == rebuilt.cases == len(BRANCHES)


@settings(max_examples=200, deadline=None)
@given(
    branch=st.sampled_from(sorted(BRANCHES)),
    data=st.data(),
)
def test_arrival_order_changes_neither_final_state_nor_net_facts(branch, data):
    events = events_of(BRANCHES[branch])
    # Some milestones may be missing (skipped), some delivered twice, in any order.
    kept = data.draw(st.lists(st.sampled_from(events), min_size=1, max_size=len(events) + 3))
    shuffled = data.draw(st.permutations(kept))
    state_a, net_a = apply_all(kept)
    state_b, net_b = apply_all(shuffled)
    assert state_a.records == state_b.records
    assert state_a.seen_event_ids == state_b.seen_event_ids
    assert state_a.duplicates == state_b.duplicates
    assert net_a == net_b == Counter(facts_of(CHAIN, state_a))


def test_facts_of_different_kinds_with_the_same_values_are_different_facts():
    left = StageLeft("x", "standard", "amsterdam", 1.0, 2.0)
    completed = SegmentCompleted("x", "standard", "amsterdam", 1.0, 2.0)
    assert left != completed and len({left, completed}) == 2
    assert completed.lead_time_seconds == 1.0 and left.at == 2.0
    closed = CaseClosed("dismissal", "om_decision", "standard", "amsterdam", 5.0)
    assert closed.outcome == "dismissal" and closed.at == 5.0
    assert StageEntered("x", "standard", "amsterdam", 1.0) == StageEntered(
        stage="x", case_type="standard", district="amsterdam", at=1.0
    )


def test_a_later_partner_that_reports_another_district_moves_every_fact_of_the_case():
    first = CaseEvent("a", "k", "report_registered", 0.0, "standard", "amsterdam")
    second = CaseEvent("b", "k", "om_intake", 5 * DAY, "standard", "rotterdam")
    state = apply_event(CHAIN, None, first).state
    applied = apply_event(CHAIN, state, second)
    assert {f.district for f in applied.removed} == {"amsterdam"}
    assert {f.district for f in applied.added} == {"rotterdam"}
    assert applied.added == facts_of(CHAIN, applied.state)


def test_the_domain_core_imports_no_infrastructure():
    forbidden = {"faust", "aiokafka", "kafka", "prometheus_client", "sqlalchemy"}
    for path in Path("ketenmonitor/domain").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not {n.split(".")[0] for n in names} & forbidden, (path, names)
