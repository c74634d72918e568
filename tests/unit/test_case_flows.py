"""Real case flows in the domain core: event-time order, loops, repeats, re-opening, dormancy."""

from __future__ import annotations

from collections import Counter

import pytest
import yaml
from core_fixtures import CHAIN, DAY, apply_all
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
    timeline,
)
from ketenmonitor.domain.chain import DEFAULT_CHAIN_FILE, ChainDefinitionError, chain_from_mapping
from ketenmonitor.domain.flow import (
    Rework,
    dormancy_counts,
    facts_and_marks,
    last_event_at,
    open_visits,
    retirable_facts,
    rework_counts,
    rework_of,
)


def ev(n, milestone, day, outcome=None, occurrence=None, revision=0, retracted=False,
       district="amsterdam", key="case"):
    return CaseEvent(f"e{n}", key, milestone, day * DAY, "standard", district, outcome,
                     revision, retracted, occurrence)


def stages(facts):
    entered = sorted((f.stage, f.at / DAY) for f in facts if isinstance(f, StageEntered))
    left = sorted((f.stage, f.entered_at / DAY, f.at / DAY) for f in facts
                  if isinstance(f, StageLeft))
    return entered, left


def closed(facts):
    return [(f.outcome, f.at / DAY) for f in facts if isinstance(f, CaseClosed)]


def segments(facts):
    return {f.segment: (f.started_at / DAY, f.completed_at / DAY) for f in facts
            if isinstance(f, SegmentCompleted)}


def test_a_stage_is_never_left_before_it_was_entered_and_the_latest_milestone_decides_closing():
    # The example: a payment on day 5, then the fine sent to collection on day 100.
    state, net = apply_all([
        ev(0, "report_registered", 0), ev(1, "collection_closed", 5, "paid"),
        ev(2, "cjib_intake", 100),
    ])
    facts = facts_of(CHAIN, state)
    assert set(net) == facts
    entered, left = stages(facts)
    assert ("cjib_collection", 100.0) in entered
    assert not [s for s in left if s[0] == "cjib_collection"]  # still waiting for collection
    assert all(at >= entered_at for _, entered_at, at in left)
    assert closed(facts) == []  # a payment followed by a later event is not the end
    assert "cjib_intake_to_closed" not in segments(facts)


def test_a_closed_case_reopens_when_a_later_event_arrives_and_closes_again():
    first = [ev(0, "om_intake", 0), ev(1, "om_decision", 40, "dismissal")]
    state, net = apply_all(first)
    assert closed(net) == [("dismissal", 40.0)]
    reopened = apply_event(CHAIN, state, ev(2, "om_intake", 60, occurrence="2"))
    assert closed(reopened.removed) == [("dismissal", 40.0)]
    assert stages(reopened.added)[0] == [("om_assessment", 60.0)]
    assert ("end_to_end" not in segments(facts_of(CHAIN, reopened.state)))
    again = apply_event(CHAIN, reopened.state, ev(3, "om_decision", 80, "dismissal", "2"))
    facts = facts_of(CHAIN, again.state)
    assert closed(facts) == [("dismissal", 80.0)]
    assert stages(facts)[1] == [("om_assessment", 0.0, 40.0), ("om_assessment", 60.0, 80.0)]
    assert rework_of(CHAIN, again.state) == Rework(
        {"om_intake": 1, "om_decision": 1}, {"om_assessment": 1}
    )


def test_a_case_may_retire_only_when_closed_and_quiet_since_the_cutoff():
    first = [ev(0, "om_intake", 0), ev(1, "om_decision", 40, "dismissal")]
    state, _ = apply_all(first)
    walked = retirable_facts(CHAIN, state, 41 * DAY)
    assert walked is not None
    facts, marks = walked
    assert (facts, marks) == facts_and_marks(CHAIN, state)  # the walk the totals fold
    assert retirable_facts(CHAIN, state, 40 * DAY) is None  # its last event is not before it
    reopened = apply_event(CHAIN, state, ev(2, "om_intake", 60, occurrence="2")).state
    assert retirable_facts(CHAIN, reopened, 100 * DAY) is None  # open again
    assert retirable_facts(CHAIN, apply_all(first[:1])[0], 100 * DAY) is None  # never closed


def test_a_case_loops_back_to_an_earlier_partner_and_visits_its_stage_again():
    # Summons, court intake, back to the OM (a rank below the court stage), then court again.
    state, net = apply_all([
        ev(0, "om_intake", 0), ev(1, "om_decision", 10, "summons"), ev(2, "court_intake", 20),
        ev(3, "om_intake", 30, occurrence="back"), ev(4, "om_decision", 40, "summons", "back"),
        ev(5, "court_intake", 50, occurrence="again"), ev(6, "judgment", 70, "acquittal"),
    ])
    facts = facts_of(CHAIN, state)
    assert set(net) == facts
    entered, left = stages(facts)
    assert entered == [("court_trial", 20.0), ("court_trial", 50.0),
                       ("om_assessment", 0.0), ("om_assessment", 30.0)]
    assert left == [("court_trial", 20.0, 30.0), ("court_trial", 50.0, 70.0),
                    ("om_assessment", 0.0, 10.0), ("om_assessment", 30.0, 40.0)]
    assert closed(facts) == [("acquittal", 70.0)]
    # Segments: from the first start to the first end at or after it.
    assert segments(facts)["court_intake_to_judgment"] == (20.0, 70.0)
    assert segments(facts)["om_intake_to_decision"] == (0.0, 10.0)
    assert rework_of(CHAIN, state).reentries == {"court_trial": 1, "om_assessment": 1}


def test_adjourned_hearings_are_occurrences_and_count_as_rework():
    events = [
        ev(0, "om_intake", 0), ev(1, "court_intake", 10), ev(2, "first_hearing", 30),
        ev(3, "first_hearing", 60, occurrence="2"), ev(4, "first_hearing", 90, occurrence="3"),
        ev(5, "judgment", 95, "conviction"),
    ]
    state, _ = apply_all(events)
    facts = facts_of(CHAIN, state)
    assert [t / DAY for t, m, _ in timeline(CHAIN, state) if m == "first_hearing"] == [30, 60, 90]
    assert segments(facts)["om_intake_to_first_hearing"] == (0.0, 30.0)
    assert stages(facts)[1] == [("court_trial", 10.0, 95.0), ("om_assessment", 0.0, 10.0)]
    assert rework_of(CHAIN, state) == Rework({"first_hearing": 2}, {})
    assert rework_counts(CHAIN, [state, state]) == Counter({("milestone", "first_hearing"): 4})


def test_a_correction_or_retraction_addresses_one_occurrence():
    events = [ev(0, "court_intake", 0), ev(1, "first_hearing", 30),
              ev(2, "first_hearing", 60, occurrence="2")]
    moved = ev(3, "first_hearing", 45, occurrence="2", revision=1)
    state, _ = apply_all([*events, moved])
    times = sorted(t / DAY for t, m, _ in timeline(CHAIN, state) if m == "first_hearing")
    assert times == [30, 45]
    assert state.corrections == 1
    gone = ev(4, "first_hearing", 45, occurrence="2", revision=2, retracted=True)
    state, _ = apply_all([gone, *events, moved])
    assert [t / DAY for t, m, _ in timeline(CHAIN, state) if m == "first_hearing"] == [30]


def test_events_without_an_occurrence_keep_one_occurrence_per_milestone():
    # Before occurrences existed, a second report of a milestone at revision 0 was a tie that the
    # higher event id won: it still is.
    state, _ = apply_all([ev(1, "court_intake", 0), ev(2, "court_intake", 5)])
    assert [t / DAY for t, _, _ in timeline(CHAIN, state)] == [5]
    assert rework_of(CHAIN, state) == Rework({}, {})


def test_leaving_and_entering_a_stage_at_one_instant_is_no_transition():
    state, _ = apply_all([
        ev(0, "court_intake", 0), ev(1, "om_decision", 10, "summons"),
        ev(2, "court_intake", 10, occurrence="2"),
    ])
    entered, left = stages(facts_of(CHAIN, state))
    assert ("court_trial", 0.0) in entered and ("court_trial", 10.0) not in entered
    assert [s for s in left if s[0] == "court_trial"] == []


def test_the_latest_occurrence_gives_case_type_and_district():
    state, _ = apply_all([ev(0, "om_intake", 0, district="rotterdam"),
                          ev(1, "report_registered", 5, district="limburg")])
    assert {f.district for f in facts_of(CHAIN, state)} == {"limburg"}


# -- arrival order --------------------------------------------------------------------------
# A case with loops, repeats, a re-opening and corrections of occurrences.
FLOW = [
    ev(0, "report_registered", 0), ev(1, "om_intake", 20), ev(2, "om_decision", 40, "summons"),
    ev(3, "court_intake", 50), ev(4, "first_hearing", 80), ev(5, "first_hearing", 95, None, "2"),
    ev(6, "om_intake", 100, None, "2"), ev(7, "om_decision", 110, "dismissal", "2"),
    ev(8, "court_intake", 130, None, "2"), ev(9, "first_hearing", 150, None, "3"),
    ev(10, "judgment", 160, "conviction"), ev(11, "final", 170, "financial"),
    ev(12, "cjib_intake", 180), ev(13, "collection_closed", 200, "paid"),
    ev(14, "reminder_sent", 210), ev(15, "collection_closed", 240, "paid", "2"),
    ev(16, "first_hearing", 90, None, "2", revision=1),
    ev(17, "first_hearing", 150, None, "3", revision=1, retracted=True),
    ev(18, "om_intake", 99, None, "2", revision=2),
]


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_arrival_order_never_changes_the_final_state_or_the_net_facts(data):
    kept = data.draw(st.lists(st.sampled_from(FLOW), min_size=1, max_size=len(FLOW) + 4))
    shuffled = data.draw(st.permutations(kept))
    state_a, net_a = apply_all(kept)
    state_b, net_b = apply_all(shuffled)
    assert state_a.records == state_b.records
    assert state_a.seen_event_ids == state_b.seen_event_ids
    assert net_a == net_b == Counter(facts_of(CHAIN, state_a))
    assert rework_of(CHAIN, state_a) == rework_of(CHAIN, state_b)
    for fact in net_a:
        if isinstance(fact, StageLeft):
            assert fact.at >= fact.entered_at


def test_the_whole_flow_ends_paid_after_its_loops():
    state, net = apply_all(FLOW)
    assert closed(net) == [("paid", 240.0)]
    assert rework_of(CHAIN, state) == Rework(
        {"om_intake": 1, "om_decision": 1, "court_intake": 1, "first_hearing": 1,
         "collection_closed": 1},
        {"om_assessment": 1, "court_trial": 1},  # a reminder is no entry of collection
    )


# -- dormancy ---------------------------------------------------------------------------------
def _chain_with_limits(**days):
    spec = yaml.safe_load(DEFAULT_CHAIN_FILE.read_text(encoding="utf-8"))
    for stage in spec["stages"]:
        stage.pop("dormant_after_days", None)
        if stage["id"] in days:
            stage["dormant_after_days"] = days[stage["id"]]
    return chain_from_mapping(spec)


def test_an_open_case_without_events_past_its_stage_limit_is_dormant_until_an_event_arrives():
    chain = _chain_with_limits(court_trial=90)
    state = None
    for event in [ev(0, "om_intake", 0), ev(1, "court_intake", 10), ev(2, "first_hearing", 30)]:
        state = apply_event(chain, state, event).state
    assert last_event_at(state) == 30 * DAY
    at_day = lambda d: [(v.stage, v.status) for v in open_visits(chain, state, d * DAY)]  # noqa: E731
    assert at_day(120) == [("court_trial", "active")]  # exactly the limit: still active
    assert at_day(120.5) == [("court_trial", "dormant")]
    state = apply_event(chain, state, ev(3, "first_hearing", 200, occurrence="2")).state
    assert at_day(250) == [("court_trial", "active")]
    assert dormancy_counts(chain, [state], 400 * DAY) == Counter(
        {("court_trial", "standard", "amsterdam", "dormant"): 1}
    )


def test_stages_without_a_limit_and_closed_cases_are_never_dormant():
    chain = _chain_with_limits(court_trial=90)
    waiting, _ = apply_all([ev(0, "om_intake", 0)])
    done, _ = apply_all([ev(0, "om_intake", 0), ev(1, "om_decision", 5, "dismissal")])
    counts = dormancy_counts(chain, [waiting, done], 10_000 * DAY)
    assert counts == Counter({("om_assessment", "standard", "amsterdam", "active"): 1})


def test_a_stage_limit_must_be_positive():
    with pytest.raises(ChainDefinitionError, match="dormant_after_days"):
        _chain_with_limits(court_trial=0)


def test_a_stage_that_enters_and_exits_at_one_milestone_has_visits_of_no_duration():
    spec = yaml.safe_load(DEFAULT_CHAIN_FILE.read_text(encoding="utf-8"))
    spec["stages"].append({"id": "triage", "label": "Triage", "enter": ["zsm_triage"],
                           "exit": ["zsm_triage"]})
    chain = chain_from_mapping(spec)
    state = None
    for event in [ev(0, "zsm_triage", 3), ev(1, "zsm_triage", 8, occurrence="2")]:
        state = apply_event(chain, state, event).state
    _, left = stages(facts_of(chain, state))
    assert [s for s in left if s[0] == "triage"] == [("triage", 3.0, 3.0), ("triage", 8.0, 8.0)]
