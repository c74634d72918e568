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
active backlog. Like a backlog age (domain/totals.py), the time without events is measured from
the start of the hour of the latest event (`is_dormant`): live totals then keep one count per hour,
not per case, and the live gauge, the store and these functions agree exactly. Any later event
makes the case active again: dormancy is a function of the state and the reference time, so nothing
has to be undone. Stages without a limit are never dormant. A dormant case is left out of the
backlog's age figures too (age bands, oldest age): they describe the active backlog, and the case
comes back into them, at the age it has in the stage, with its next event.

These functions read states at a reference time, like a scrape does. What the live totals fold per
case (`marks_of`: its waiting visits by the hour they were entered and the hour of the case's
latest event, and its rework as items) is derived from the same definitions, and a case's marks
before and after an event are all that ChainTotals needs to keep dormant counts, the active
backlog's ages and rework counters (domain/totals.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import NamedTuple

from ketenmonitor.domain.case import (
    STAGE_ENTERED,
    Applied,
    CaseEvent,
    CaseState,
    StageEntered,
    StageLeft,
    StageOutline,
    apply_event_outlined,
    closes_case,
    facts_and_outline,
    facts_of,
    milestone_of,
    stage_outline,
)
from ketenmonitor.domain.chain import SECONDS_PER_HOUR, Chain

ACTIVE = "active"
DORMANT = "dormant"
MILESTONE = "milestone"  # rework kinds: a milestone reached again, a stage visited again
STAGE = "stage"
# The kind tag of a rework item (`marks_of`): the last field, like a fact's, so that a withdrawn
# rework item can be kept and counted next to withdrawn facts (ChainTotals._count_withdrawn).
REWORK = "rework"


def hour_of(t: float) -> int:
    """The start of the hour in which `t` lies."""
    return int(t // SECONDS_PER_HOUR) * SECONDS_PER_HOUR


def is_dormant(limit: float | None, last_event_at: float, reference_time: float) -> bool:
    """Whether a visit with stage limit `limit` (seconds; None: never) is dormant at
    `reference_time`, its case's latest event having occurred at `last_event_at`."""
    return limit is not None and reference_time - hour_of(last_event_at) > limit


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
            dormant = is_dormant(limits.get(f.stage), last, reference_time)
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


# stage, case_type, district, start of the hour the visit was entered, of the latest event's hour
WaitingMark = tuple[str, str, str, int, int]
ReworkItem = tuple[str, str, int, str]  # kind, milestone or stage, n-th repeat (1, 2, ...), REWORK


class Marks(NamedTuple):
    """What one case contributes to the live dormancy and rework figures.

    waiting: per open visit of a stage that has a dormancy limit, (stage, case_type, district,
        start of the hour in which the visit was entered, start of the hour of the case's latest
        event): dormant once the reference time is more than the stage's limit past the latest
        event's hour; the entry hour says which backlog age the visit takes out of the active
        ages while it is dormant (ChainTotals.backlog_by_age).
    rework: one item per extra occurrence of a milestone, ("milestone", m, k, "rework") for its
        k-th repeat, and per extra visit of a stage, ("stage", s, k, "rework"). Items, not counts,
        so that what an event takes back is a set difference that can be stored and counted as
        withdrawn.
    """

    waiting: frozenset[WaitingMark] = frozenset()
    rework: frozenset[ReworkItem] = frozenset()


NO_MARKS = Marks()
_NO_REWORK: frozenset[ReworkItem] = frozenset()
_new = tuple.__new__  # builds a named tuple from its field tuple, skipping its __new__ (hot path)


def marks_of(chain: Chain, state: CaseState | None) -> Marks:
    """The case's marks (see `Marks`)."""
    if state is None:
        return NO_MARKS
    return _marks(chain, stage_outline(chain, state.records))


def facts_and_marks(chain: Chain, state: CaseState) -> tuple[set[tuple], Marks]:
    """`case.fact_tuples` and `marks_of` of one state, from one walk over its occurrences."""
    facts, outline = facts_and_outline(chain, state.records)
    return facts, _marks(chain, outline)


def retirable_facts(
    chain: Chain, state: CaseState, cutoff: float
) -> tuple[set[tuple], Marks] | None:
    """`facts_and_marks` of a case that may leave the state (closed, and its latest event before
    `cutoff`), None for any other; a case is walked only when its latest event is early enough.
    What a retired case contributed to the totals is folded from these (ChainTotals
    .add_walked_case), so the check and the fold read the same walk."""
    last = last_event_at(state)
    if last is None or last >= cutoff:
        return None
    facts, marks = facts_and_marks(chain, state)
    if not closes_case(facts):
        return None
    return facts, marks


def apply_event_marked(
    chain: Chain, state: CaseState | None, event: CaseEvent
) -> tuple[Applied, tuple[Marks | None, Marks] | None]:
    """`apply_event`, and the case's marks before and after the event: (applied, (before,
    after)), `before` None for a case not seen before; (applied, None) when the event left the
    marks as they were (it changed no present occurrence).

    The same as `marks_of` of the states before and after, but read from the walk over the case's
    occurrences that computing the facts made anyway (case.apply_event_outlined): one walk per
    event instead of three."""
    applied, outlines = apply_event_outlined(chain, state, event)
    if outlines is None:
        return applied, None
    before, after = outlines
    return applied, (None if state is None else _marks(chain, before), _marks(chain, after))


def _marks(chain: Chain, outline: StageOutline | None) -> Marks:
    if outline is None:
        return NO_MARKS
    limits = chain.fact_plan.dormant_after
    ct, d, last_at, open_, stage_facts, milestones = outline
    hour = int(last_at // SECONDS_PER_HOUR) * SECONDS_PER_HOUR  # hour_of, inlined (hot path)
    waiting = frozenset(
        [
            (s, ct, d, int(at // SECONDS_PER_HOUR) * SECONDS_PER_HOUR, hour)
            for s, at in open_.items()
            if s in limits
        ]
    )
    # Most cases have no rework: the set comparisons spare them building counters (hot path).
    entered = [f[0] for f in stage_facts if f[-1] == STAGE_ENTERED]
    if len(set(milestones)) == len(milestones) and len(set(entered)) == len(entered):
        return _new(Marks, (waiting, _NO_REWORK))
    rework = [
        (MILESTONE, m, k, REWORK) for m, n in Counter(milestones).items() for k in range(1, n)
    ] + [(STAGE, s, k, REWORK) for s, n in Counter(entered).items() for k in range(1, n)]
    return Marks(waiting, frozenset(rework))
