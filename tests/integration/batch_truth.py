"""An independent batch computation of what /metrics must say about a simulated log.

Written for the tests only, from the chain definition (data) and the simulator's ground truth
(what happened to each case, in path order). It deliberately does not use ketenmonitor.domain:
the point is to check the live pipeline against a second, simpler implementation.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable

from prometheus_client.utils import floatToGoString

from ketenmonitor.domain.chain import Chain
from ketenmonitor.simulator import SimulatedCase

Key = tuple[str, frozenset[tuple[str, str]]]

# Every case series a worker exports that this computation predicts.
CASE_METRICS = {
    "ketenmonitor_events_accepted_total",
    "ketenmonitor_stage_inflow_cases_total",
    "ketenmonitor_stage_outflow_cases_total",
    "ketenmonitor_backlog_cases",
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
    rank = {}
    organisation = {}
    for partner in spec.partners:
        for m in partner.milestones:
            rank[m.id] = len(rank)
            organisation[m.id] = partner.id
    closures = {c.milestone: set(c.outcomes) for c in spec.closures}
    bounds = sorted({d * 86400 for d in spec.lead_time_buckets_days} | {n.within_days * 86400 for n in spec.norms})
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
        times = {s.milestone: s.occurred_at for s in steps}
        for s in steps:
            out[_key("ketenmonitor_events_accepted_total", organisation=organisation[s.milestone])] += 1
        last = steps[-1]
        closed_at = None
        if last.milestone in closures and last.outcome in closures[last.milestone]:
            closed_at = last.occurred_at
            out[_key("ketenmonitor_cases_closed_total", outcome=last.outcome, case_type=ct, district=d)] += 1
        for stage in spec.stages:
            entry = [times[m] for m in stage.enter if m in times]
            if not entry:
                continue
            entered = min(entry)
            labels = {"stage": stage.id, "organisation": organisation[stage.enter[0]], "case_type": ct, "district": d}
            out[_key("ketenmonitor_stage_inflow_cases_total", **labels)] += 1
            exit_rank = max(rank[m] for m in stage.exit)
            leaving = [s.occurred_at for s in steps if s.milestone in stage.exit or rank[s.milestone] > exit_rank]
            if leaving:
                out[_key("ketenmonitor_stage_outflow_cases_total", **labels)] += 1
            else:
                out[_key("ketenmonitor_backlog_cases", **labels)] += 1
                hour = entered // 3600 * 3600
                age = reference_time - hour
                band = next(name for name, upper in bands if age <= upper)
                out[_key("ketenmonitor_backlog_age_band_cases", **labels, age_band=band)] += 1
                oldest[stage.id] = min(hour, oldest.get(stage.id, hour))
        for seg in spec.segments:
            start = times.get(seg.start)
            end = closed_at if seg.end == "closed" else times.get(seg.end)
            if start is None or end is None or end < start:
                continue
            lead = end - start
            k = (seg.id, ct, d)
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
            out[_key("ketenmonitor_segment_lead_time_seconds_bucket", **labels, le=floatToGoString(float(b)))] = (
                lead_buckets[(seg, ct, d, float(b))]
            )
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
