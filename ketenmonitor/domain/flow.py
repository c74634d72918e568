"""What a case's occurrences say beyond its facts: rework, and whether an open case is dormant.

    rework_of(chain, state)                   -> Rework(repeats={"first_hearing": 1}, reentries={})
    open_visits(chain, state, reference_time) -> [OpenVisit(stage, ..., dormant=False)]
    dormancy_counts(chain, states, reference_time)
        -> Counter({("court_trial", "standard", "amsterdam", "active"): 1, ...})

Rework: a milestone reached more than once (an adjourned hearing held again, a second reminder)
counts its extra occurrences; a stage visited more than once (a case back at the OM after an
objection) counts its extra visits.

Dormancy: a case waiting in a stage whose latest event (in event time, any milestone) lies longer
before the reference time than the stage's `dormant_after_days` (chain.yaml) is dormant, not
active backlog. Any later event makes it active again: dormancy is a function of the state and the
reference time, so nothing has to be undone. Stages without a limit are never dormant.

These are separate from ChainTotals (domain/totals.py) on purpose: they read states at a reference
time, like a scrape does, and are not folded from facts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import NamedTuple

from ketenmonitor.domain.case import CaseState, StageEntered, StageLeft, facts_of, milestone_of
from ketenmonitor.domain.chain import Chain

ACTIVE = "active"
DORMANT = "dormant"


class Rework(NamedTuple):
    repeats: dict[str, int]  # milestone -> occurrences beyond the first
    reentries: dict[str, int]  # stage -> visits beyond the first


def rework_of(chain: Chain, state: CaseState) -> Rework:
    occurrences = Counter(milestone_of(key) for key in state.present)
    visits = Counter(f.stage for f in facts_of(chain, state) if isinstance(f, StageEntered))
    return Rework(
        {m: n - 1 for m, n in occurrences.items() if n > 1},
        {s: n - 1 for s, n in visits.items() if n > 1},
    )


def rework_counts(chain: Chain, states: Iterable[CaseState]) -> Counter[tuple[str, str]]:
    """Extra occurrences per ("milestone", id) and extra visits per ("stage", id), summed."""
    out: Counter[tuple[str, str]] = Counter()
    for state in states:
        rework = rework_of(chain, state)
        for m, n in rework.repeats.items():
            out[("milestone", m)] += n
        for s, n in rework.reentries.items():
            out[("stage", s)] += n
    return out


def last_event_at(state: CaseState) -> float | None:
    """Event time of the case's latest occurrence (None when nothing is present)."""
    return max((r.occurred_at for r in state.records.values() if not r.retracted), default=None)


class OpenVisit(NamedTuple):
    stage: str
    case_type: str
    district: str
    entered_at: float
    last_event_at: float
    dormant: bool

    @property
    def status(self) -> str:
        return DORMANT if self.dormant else ACTIVE


def open_visits(chain: Chain, state: CaseState, reference_time: float) -> list[OpenVisit]:
    """The stages the case waits in, each marked dormant or active at `reference_time`."""
    facts = facts_of(chain, state)
    left = {(f.stage, f.entered_at) for f in facts if isinstance(f, StageLeft)}
    last = last_event_at(state)
    if last is None:
        return []
    limits = chain.fact_plan.dormant_after
    out = []
    for f in facts:
        if isinstance(f, StageEntered) and (f.stage, f.at) not in left:
            limit = limits.get(f.stage)
            dormant = limit is not None and reference_time - last > limit
            out.append(OpenVisit(f.stage, f.case_type, f.district, f.at, last, dormant))
    return sorted(out)


def dormancy_counts(
    chain: Chain, states: Iterable[CaseState], reference_time: float
) -> Counter[tuple[str, str, str, str]]:
    """Open cases per (stage, case_type, district, "active" | "dormant") at `reference_time`."""
    out: Counter[tuple[str, str, str, str]] = Counter()
    for state in states:
        for visit in open_visits(chain, state, reference_time):
            out[(visit.stage, visit.case_type, visit.district, visit.status)] += 1
    return out
