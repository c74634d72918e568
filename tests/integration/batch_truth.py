"""An independent batch computation of what /metrics must say about a simulated log.

Written for the tests only, from the chain definition (data) and the simulator's ground truth
(what happened to each case, in path order), read by flow_truth.py. It deliberately does not use
ketenmonitor.domain: the point is to check the live pipeline against a second, simpler
implementation. Every stage visit counts (a case that loops back enters a stage again).

Dormancy, as docs/metrics.md defines it: an open visit of a stage with `dormant_after_days` whose
case's latest event (its last step) lies, counted from the start of that event's hour, more than
the limit before the reference time is dormant; every other open visit is backlog, and only those
are in the age bands and the oldest age (measured from the start of the hour entered). Rework: every
step of a milestone the case had reached before is a repeat (the simulator gives each repeat its
own occurrence id), every visit of a stage beyond the first a re-entry.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

from prometheus_client.utils import floatToGoString

from ketenmonitor.domain.chain import Chain
from ketenmonitor.simulator import SimulatedCase


def _load_flow_truth():  # by path: this file is itself loaded by path (bench, unit tests)
    name = "ketenmonitor_tests_flow_truth"
    if name not in sys.modules:
        path = Path(__file__).with_name("flow_truth.py")
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


case_flow = _load_flow_truth().case_flow

Key = tuple[str, frozenset[tuple[str, str]]]

# Every case series a worker exports that this computation predicts.
CASE_METRICS = {
    "ketenmonitor_events_accepted_total",
    "ketenmonitor_stage_inflow_cases_total",
    "ketenmonitor_stage_outflow_cases_total",
    "ketenmonitor_backlog_cases",
    "ketenmonitor_dormant_cases",
    "ketenmonitor_milestone_repeats_total",
    "ketenmonitor_stage_reentries_cases_total",
    "ketenmonitor_backlog_age_band_cases",
    "ketenmonitor_backlog_oldest_age_seconds",
    "ketenmonitor_segment_lead_time_seconds_bucket",
    "ketenmonitor_segment_lead_time_seconds_count",
    "ketenmonitor_segment_lead_time_seconds_sum",
    "ketenmonitor_cases_closed_total",
}


def _key(name: str, **labels: str) -> Key:
    return (name, frozenset(labels.items()))


def expected_samples(chain: Chain, cases: Iterable[SimulatedCase], reference_time: float) -> dict:
    spec = chain.spec
    spec_data = spec.model_dump(by_alias=True)
    organisation = {}
    for partner in spec.partners:
        for m in partner.milestones:
            organisation[m.id] = partner.id
    bounds = sorted(
        {d * 86400 for d in spec.lead_time_buckets_days}
        | {n.within_days * 86400 for n in spec.norms}
    )
    bands = []
    lower = 0
    for upper in spec.backlog_age_bands_days:
        bands.append((f"{lower}-{upper}d", upper * 86400))
        lower = upper
    bands.append((f">{lower}d", float("inf")))

    out: Counter[Key] = Counter()
    lead_buckets: Counter[tuple[str, str, str, float]] = Counter()
    lead_count: Counter[tuple[str, str, str]] = Counter()
    lead_sum: Counter[tuple[str, str, str]] = Counter()
    oldest: dict[str, float] = {}
    for case in cases:
        steps = list(case.steps)
        if not steps:
            continue
        ct, d = case.case_type, case.district
        seen: set[str] = set()
        for s in steps:
            org = organisation[s.milestone]
            out[_key("ketenmonitor_events_accepted_total", organisation=org)] += 1
            if s.milestone in seen:
                repeat = _key("ketenmonitor_milestone_repeats_total", milestone=s.milestone,
                              organisation=org)
                out[repeat] += 1
            seen.add(s.milestone)
        last_event_hour = max(s.occurred_at for s in steps) // 3600 * 3600
        flow = case_flow(spec_data, [(s.milestone, s.outcome, s.occurred_at) for s in steps])
        if flow.closed is not None:
            outcome = flow.closed[0]
            closed = _key(
                "ketenmonitor_cases_closed_total", outcome=outcome, case_type=ct, district=d
            )
            out[closed] += 1
        for stage_id, visits in flow.visits.items():
            stage = next(s for s in spec.stages if s.id == stage_id)
            labels = {"stage": stage.id, "organisation": organisation[stage.enter[0]],
                      "case_type": ct, "district": d}
            if len(visits) > 1:
                reentries = _key("ketenmonitor_stage_reentries_cases_total", stage=stage.id,
                                 organisation=labels["organisation"])
                out[reentries] += len(visits) - 1
            limit = stage.dormant_after_days
            for entered, left in visits:
                out[_key("ketenmonitor_stage_inflow_cases_total", **labels)] += 1
                if left is not None:
                    out[_key("ketenmonitor_stage_outflow_cases_total", **labels)] += 1
                    continue
                if limit is not None and reference_time - last_event_hour > limit * 86400:
                    out[_key("ketenmonitor_dormant_cases", **labels)] += 1
                    continue  # not in the backlog, nor in its ages
                out[_key("ketenmonitor_backlog_cases", **labels)] += 1
                hour = entered // 3600 * 3600
                age = reference_time - hour
                band = next(name for name, upper in bands if age <= upper)
                out[_key("ketenmonitor_backlog_age_band_cases", **labels, age_band=band)] += 1
                oldest[stage.id] = min(hour, oldest.get(stage.id, hour))
        for seg_id, (start, end) in flow.segments.items():
            lead = end - start
            k = (seg_id, ct, d)
            lead_count[k] += 1
            lead_sum[k] += lead
            for b in bounds:
                if lead <= b:
                    lead_buckets[(*k, float(b))] += 1
    for (seg, ct, d), n in lead_count.items():
        labels = {"segment": seg, "case_type": ct, "district": d}
        out[_key("ketenmonitor_segment_lead_time_seconds_count", **labels)] = n
        out[_key("ketenmonitor_segment_lead_time_seconds_sum", **labels)] = lead_sum[(seg, ct, d)]
        out[_key("ketenmonitor_segment_lead_time_seconds_bucket", **labels, le="+Inf")] = n
        for b in bounds:
            le = floatToGoString(float(b))
            bucket = _key("ketenmonitor_segment_lead_time_seconds_bucket", **labels, le=le)
            out[bucket] = lead_buckets[(seg, ct, d, float(b))]
    for stage, hour in oldest.items():
        org = organisation[next(s for s in spec.stages if s.id == stage).enter[0]]
        out[_key("ketenmonitor_backlog_oldest_age_seconds", stage=stage, organisation=org)] = (
            reference_time - hour
        )
    return dict(out)


def comparable(samples: dict, names: set[str]) -> dict:
    """The samples of the given metric names, zero-valued series left out (absent == 0)."""
    return {k: v for k, v in samples.items() if k[0] in names and v != 0}


# A worker exports what was ever counted and, separately, what corrections withdrew; the truth
# above is the net figure. Name of the added series -> name of its withdrawn counterpart.
WITHDRAWN_OF = {
    "ketenmonitor_stage_inflow_cases_total": "ketenmonitor_stage_inflow_withdrawn_cases_total",
    "ketenmonitor_stage_outflow_cases_total": "ketenmonitor_stage_outflow_withdrawn_cases_total",
    "ketenmonitor_cases_closed_total": "ketenmonitor_cases_closed_withdrawn_total",
    "ketenmonitor_milestone_repeats_total": "ketenmonitor_milestone_repeats_withdrawn_total",
    "ketenmonitor_stage_reentries_cases_total":
        "ketenmonitor_stage_reentries_withdrawn_cases_total",
    **{
        f"ketenmonitor_segment_lead_time_seconds_{part}":
            f"ketenmonitor_segment_lead_time_withdrawn_seconds_{part}"
        for part in ("bucket", "count", "sum")
    },
}


def net_samples(samples: dict) -> dict:
    """A worker's scrape with every added counter replaced by added - withdrawn."""
    out = dict(samples)
    for (name, labels), value in samples.items():
        withdrawn = WITHDRAWN_OF.get(name)
        if withdrawn is not None:
            out[(name, labels)] = value - samples.get((withdrawn, labels), 0.0)
    return out


def differences(actual: dict, expected: dict) -> tuple[dict, dict]:
    """(series whose value differs or is missing, series that should not be there)."""
    wrong = {k: (actual.get(k), v) for k, v in expected.items() if actual.get(k) != v}
    extra = {k: v for k, v in actual.items() if k not in expected}
    return wrong, extra


def wait_for_truth(
    scrape: Callable[[], dict], expected: dict, names: set[str], timeout: float = 60.0
) -> dict:
    """Scrape until the net figures of `names` equal `expected` (what /metrics shows lags the
    committed offsets by the totals publication interval); fail with the difference."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape()
        actual = comparable(net_samples(samples), names)
        wrong, extra = differences(actual, expected)
        if not wrong and not extra:
            return samples
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{len(wrong)} series differ, e.g. {list(wrong.items())[:5]}; "
                f"{len(extra)} extra, e.g. {list(extra.items())[:5]}"
            )
        time.sleep(0.5)


def retired_case_keys(
    chain: Chain, cases: Iterable[SimulatedCase], reference_time: float, retention_days: float
) -> set[str]:
    """The cases a worker with KETENMONITOR_CLOSED_CASE_RETENTION_DAYS retires, by the batch
    definition: closed at their last step (flow_truth.case_flow) and that step more than the
    retention before the reference time. Their numbers stay in the totals; an event arriving for
    one of them afterwards is not applied (dead-lettered, counted apart)."""
    spec_data = chain.spec.model_dump(by_alias=True)
    cutoff = reference_time - retention_days * 86400
    out = set()
    for case in cases:
        steps = list(case.steps)
        if not steps or max(s.occurred_at for s in steps) >= cutoff:
            continue
        flow = case_flow(spec_data, [(s.milestone, s.outcome, s.occurred_at) for s in steps])
        if flow.closed is not None:
            out.add(case.case_key)
    return out
