"""The simulator: reproducible, shaped like its scenario, and faulty exactly as configured.

Tolerances (stated here, used below): a branch share is within 4 standard errors of the configured
probability (sqrt(p(1-p)/n)) plus 0.005; a median lead time of one transition for one case type is
within 4 standard errors of the sample median in log space (1.2533 * sigma / sqrt(n)) plus 1% of
the configured median (median_days * case_type_pace). Only groups with enough cases are checked,
and only cases that started in the first half of a 20-year period, so that no path is cut off.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import statistics
from collections import Counter, defaultdict
from datetime import datetime

import pytest
from ketenmonitor.schemas.events import EventRejected, parse_event

from ketenmonitor.cli import main
from ketenmonitor.delivery import (
    DeliveryPlanner,
    TimeMerger,
    deliveries_in_order,
    malformed_message,
)
from ketenmonitor.domain.chain import SECONDS_PER_DAY as DAY
from ketenmonitor.domain.chain import load_chain
from ketenmonitor.simulate_command import stats_path, truth_path
from ketenmonitor.simulator import (
    END,
    MALFORMED_KINDS,
    Silence,
    contract_events,
    load_scenario,
    occurrence_of,
    simulate_cases,
    sorted_starts,
    stream_cases,
)

END_TIME = 1_750_000_000.0  # a fixed 'now' in the past: runs are reproducible and never future
YEAR = 365 * DAY


@pytest.fixture(scope="module")
def chain():
    return load_chain()


@pytest.fixture(scope="module")
def scenario():
    return load_scenario()


def node(step) -> str:
    return f"{step.milestone}:{step.outcome}" if step.outcome else step.milestone


def test_the_simulate_command_writes_the_same_log_twice_at_a_fixed_seed(tmp_path):
    flags = ["--cases", "2000", "--seed", "5", "--end", str(END_TIME), "--duplicates", "0.05",
             "--out-of-order", "0.05", "--late", "0.05", "--malformed", "0.05",
             "--corrections", "0.05", "--silence", "courts:100:14"]
    outputs = []
    for name in ("a.jsonl", "b.jsonl"):
        assert main(["simulate", *flags, "--output", str(tmp_path / name)]) == 0
        outputs.append(tmp_path / name)
    a, b = outputs
    assert a.read_bytes() == b.read_bytes()
    assert truth_path(a).read_bytes() == truth_path(b).read_bytes()
    assert len(truth_path(a).read_text().splitlines()) == 2000
    stats = json.loads(stats_path(a).read_text())
    assert stats["messages"] == len(a.read_bytes().splitlines())
    other_seed = [*flags[:3], "6", *flags[4:], "--output", str(tmp_path / "c.jsonl")]
    assert main(["simulate", *other_seed]) == 0
    assert (tmp_path / "c.jsonl").read_bytes() != a.read_bytes()


def test_a_period_that_ends_in_the_future_is_refused(tmp_path):
    assert main(["simulate", "--end", "9999999999", "--output", str(tmp_path / "x.jsonl")]) == 2


def test_sorted_starts_are_uniform_increasing_and_exactly_counted():
    import random

    starts = list(sorted_starts(random.Random(1), 50_000, 100.0, 200.0))
    assert len(starts) == 50_000
    assert all(a <= b for a, b in itertools.pairwise(starts))
    assert starts[0] >= 100.0 and starts[-1] < 200.0
    deciles = Counter(int((s - 100.0) // 10) for s in starts)
    assert all(abs(deciles[d] - 5000) < 300 for d in range(10))


def _digest(cases) -> str:
    rows = [
        [c.index, c.case_key, c.case_type, c.district, c.complete,
         [[s.milestone, s.outcome, s.occurred_at] for s in c.steps]]
        for c in cases
    ]
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()


def test_both_generators_give_the_cases_they_always_gave_at_a_fixed_seed(scenario):
    # Recorded from the separate implementations before they shared one (issue #14): a change
    # of the draws, their order or the start times shows here (as does a change of
    # ketenmonitor/simulation.yaml, which then needs new digests).
    period = (1_700_000_000.0, 1_750_000_000.0)
    assert _digest(simulate_cases(scenario, 200, *period, seed=7)) == (
        "ae54f1ee901240f752433e696f582b64e0e900ba5fb5f31633dfa51654b76f37"
    )
    assert _digest(stream_cases(scenario, 200, *period, seed=7)) == (
        "b84cbc8d2641a6d45ae8aa7f1c01c428f9d1efc96c8c27f41af2c29a2c7ff462"
    )


def test_simulated_cases_follow_the_scenario_graph_and_stop_at_the_end(scenario):
    start = END_TIME - YEAR
    for case in simulate_cases(scenario, 500, start, END_TIME, seed=2):
        assert case.steps[0].milestone == scenario.start_of(case.case_type)
        times = [s.occurred_at for s in case.steps]
        assert times == sorted(set(times)) and times[-1] < END_TIME
        for a, b in zip(case.steps, case.steps[1:], strict=False):
            assert node(b) in {t.to for t in scenario.transitions[node(a)]}
        if case.complete and node(case.steps[-1]) in scenario.transitions:
            assert END in {t.to for t in scenario.transitions[node(case.steps[-1])]}


def test_contract_events_are_valid_and_in_event_time_order(chain, scenario):
    cases = simulate_cases(scenario, 300, END_TIME - YEAR, END_TIME, seed=4)
    events = list(contract_events(cases, chain, seed=4))
    assert len(events) == sum(len(c.steps) for c in cases)
    times = [datetime.fromisoformat(e["occurred_at"]).timestamp() for e in events]
    assert times == sorted(times)
    for e in events:
        parse_event(json.dumps(e).encode(), chain, topic_organisation=e["organisation"])


@pytest.fixture(scope="module")
def long_run(scenario):
    """Cases of the first 10 of 20 years: their paths are complete (none cut off by the end)."""
    start = END_TIME - 20 * YEAR
    cases = [
        c for c in stream_cases(scenario, 40_000, start, END_TIME, seed=8)
        if c.steps[0].occurred_at < start + 10 * YEAR
    ]
    assert all(c.complete for c in cases)
    return cases


def test_branch_shares_are_within_tolerance_of_the_scenario(scenario, long_run):
    visits: Counter[str] = Counter()
    taken: Counter[tuple[str, str]] = Counter()
    for case in long_run:
        path = [node(s) for s in case.steps]
        last = path[-1]
        ends = END in {t.to for t in scenario.transitions.get(last, [])}
        nexts = path[1:] + ([END] if ends else [])
        for a, b in zip(path, nexts, strict=False):
            visits[a] += 1
            taken[(a, b)] += 1
    checked = 0
    for a, options in scenario.transitions.items():
        n = visits[a]
        if n < 500:
            continue
        for t in options:
            share = taken[(a, t.to)] / n
            tolerance = 4 * math.sqrt(t.p * (1 - t.p) / n) + 0.005
            assert abs(share - t.p) <= tolerance, (a, t.to, share, t.p, n)
            checked += 1
    assert checked >= 20


def test_median_lead_times_per_transition_are_within_tolerance(scenario, long_run):
    leads: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for case in long_run:
        for a, b in zip(case.steps, case.steps[1:], strict=False):
            leads[(node(a), node(b), case.case_type)].append(b.occurred_at - a.occurred_at)
    checked = 0
    for a, options in scenario.transitions.items():
        for t in options:
            if t.to == END or t.median_days == 0:
                continue
            for case_type, pace in scenario.case_type_pace.items():
                sample = leads[(a, t.to, case_type)]
                if len(sample) < 300:
                    continue
                configured = t.median_days * pace * DAY
                observed = statistics.median(sample)
                tolerance = 4 * 1.2533 * scenario.sigma / math.sqrt(len(sample)) + 0.01
                assert abs(math.log(observed / configured)) <= tolerance, (a, t.to, case_type)
                checked += 1
    assert checked >= 15


def test_every_malformed_kind_is_rejected_for_that_reason(chain, scenario):
    case = simulate_cases(scenario, 1, END_TIME - YEAR, END_TIME, seed=1)[0]
    event = next(contract_events([case], chain, seed=1))
    for kind in MALFORMED_KINDS:
        with pytest.raises(EventRejected) as rejected:
            parse_event(malformed_message(kind, event), chain, event["organisation"])
        assert rejected.value.reason == kind


@pytest.fixture(scope="module")
def faulty(chain, scenario):
    start = END_TIME - YEAR
    faults = scenario.faults.model_copy(
        update={
            "duplicate_rate": 0.05, "out_of_order_rate": 0.05, "late_rate": 0.05,
            "malformed_rate": 0.05, "correction_rate": 0.05,
            "silences": (Silence(organisation="courts", from_day=100, days=14),),
        }
    )
    planner = DeliveryPlanner(chain, scenario.publish_delay, faults, start, END_TIME, seed=3)
    cases = []
    deliveries = list(
        deliveries_in_order(
            stream_cases(scenario, 3000, start, END_TIME, seed=3), planner, start, END_TIME,
            on_case=cases.append, max_in_memory=500,  # small: the spill path is exercised too
        )
    )
    return cases, deliveries, planner.stats, start


def test_deliveries_come_in_publish_order_and_never_carry_future_times(faulty):
    _, deliveries, _, _ = faulty
    assert all(a.publish_at <= b.publish_at for a, b in itertools.pairwise(deliveries))
    for d in deliveries:
        try:
            event = json.loads(d.value)
        except ValueError:
            continue
        occurred = event.get("occurred_at", "")
        if len(occurred) > 19:
            assert datetime.fromisoformat(occurred).timestamp() <= END_TIME


def test_valid_deliveries_after_corrections_equal_the_ground_truth(chain, faulty):
    cases, deliveries, stats, _ = faulty
    winners: dict[tuple[str, str, str | None], tuple[int, str, float, str | None]] = {}
    ids: Counter[bytes] = Counter()
    rejected: Counter[str] = Counter()
    for d in deliveries:
        try:
            e = parse_event(d.value, chain, topic_organisation=d.organisation)
        except EventRejected as exc:
            rejected[exc.reason] += 1
            continue
        ids[d.value] += 1
        key = (e.case_key, e.milestone, e.occurrence)
        candidate = (e.revision, e.event_id, e.occurred_at.timestamp(), e.outcome)
        if key not in winners or candidate[:2] > winners[key][:2]:
            winners[key] = candidate
    truth = {
        (c.case_key, s.milestone, occurrence_of(c, n)): (s.occurred_at, s.outcome)
        for c in cases
        for n, s in enumerate(c.steps)
    }
    assert {k: v[2:] for k, v in winners.items()} == truth
    assert rejected == stats.malformed and sum(rejected.values()) > 0
    assert sum(n - 1 for n in ids.values()) == stats.faults["duplicate"] > 0
    assert stats.faults["correction"] > 0 and stats.faults["late"] > 0


def test_out_of_order_events_arrive_after_their_successor(faulty):
    _, deliveries, stats, _ = faulty
    arrival: dict[tuple[str, int], int] = {}
    for i, d in enumerate(deliveries):
        event_id = d.key.decode()
        if event_id.endswith(("-bad", "-r1")):
            continue
        _, case, step = event_id.split("-")
        arrival.setdefault((case, int(step)), i)
    swapped = sum(1 for (case, step), i in arrival.items() if arrival.get((case, step + 1), i) < i)
    assert swapped >= stats.faults["out_of_order"] // 2 > 0


def test_a_silent_partner_publishes_nothing_during_its_silence(faulty):
    _, deliveries, stats, start = faulty
    begin, until = start + 100 * DAY, start + 114 * DAY
    courts = [d.publish_at for d in deliveries if d.organisation == "courts"]
    assert not [t for t in courts if begin <= t < until]
    assert sum(1 for t in courts if t == until) == stats.faults["held_by_silence"] > 0


def test_the_time_merger_releases_spilled_windows_in_order(tmp_path):
    from ketenmonitor.delivery import Delivery

    merger = TimeMerger(0.0, 1000.0, windows=10, max_in_memory=3)
    times = [5.0, 250.0, 120.0, 999.0, 1500.0, 130.0, 125.0]
    released = []
    for t in times:
        merger.add(Delivery(t, "police", b"k", str(t).encode()))
    released += list(merger.release(200.0))
    assert [d.publish_at for d in released] == [5.0, 120.0, 125.0, 130.0]
    released += list(merger.drain())
    assert [d.publish_at for d in released] == sorted(times)


def test_the_default_scenario_has_wahv_loops_repeats_and_cases_never_closed(chain, scenario):
    from ketenmonitor.domain.case import CaseEvent, apply_event
    from ketenmonitor.domain.flow import rework_of

    cases = simulate_cases(scenario, 4000, END_TIME - 3 * YEAR, END_TIME, seed=3)
    closing = {(c.milestone, o) for c in chain.spec.closures for o in c.outcomes}
    seen: Counter[str] = Counter()
    for case in cases:
        path = [s.milestone for s in case.steps]
        if case.case_type == "wahv" and "wahv_objection_lodged" in path and (
            "collection_resumed" in path[path.index("wahv_objection_lodged"):]
        ):
            seen["wahv_loop"] += 1
            state = None
            for n, s in enumerate(case.steps):
                event = CaseEvent(f"e{n}", "k", s.milestone, s.occurred_at, case.case_type,
                                  case.district, s.outcome, 0, False, occurrence_of(case, n))
                state = apply_event(chain, state, event).state
            assert rework_of(chain, state).reentries.get("cjib_collection", 0) >= 1
        seen["adjourned"] += path.count("first_hearing") > 1
        seen["instalments"] += path.count("instalment_paid") > 1
        last = case.steps[-1]
        seen["never_closed"] += case.complete and (last.milestone, last.outcome) not in closing
    assert all(seen[k] > 0 for k in ("wahv_loop", "adjourned", "instalments", "never_closed"))
