"""Per-case state and the facts it implies.

    result = apply_event(chain, state, event)   # state is None for a case not seen before
    result.state, result.added, result.removed, result.duplicate

A case's state is the set of milestone records it has received, keyed by milestone. Everything
else (stages entered and left, segments completed with their lead time, the closing of the case) is
a pure function of that set: `facts_of(chain, state)`. Applying an event returns the facts it added
and the facts it withdrew (an out-of-order or corrected event can move a stage's exit, say). Because
the state is a set with a deterministic winner per milestone (highest revision, then highest event
id), the final state and the net facts do not depend on the order in which a case's events arrive.

Times are POSIX seconds in event time; nothing here reads the clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import NamedTuple

from ketenmonitor.domain.chain import Chain, FactPlan, SegmentPlan, StagePlan


# Events, records, states, facts and results are named tuples rather than frozen dataclasses: every
# event builds several of them and hashes and compares facts, and tuples do all of that in C (a
# frozen dataclass sets each field through object.__setattr__ and hashes in Python).
class CaseEvent(NamedTuple):
    """A validated event with a pseudonymous case key, in the core's terms."""

    event_id: str
    case_key: str
    milestone: str
    occurred_at: float
    case_type: str
    district: str
    outcome: str | None = None
    revision: int = 0
    retracted: bool = False


class MilestoneRecord(NamedTuple):
    event_id: str
    occurred_at: float
    case_type: str
    district: str
    outcome: str | None = None
    revision: int = 0
    retracted: bool = False  # a tombstone: keeps lower revisions of the milestone out

    def beats(self, other: MilestoneRecord) -> bool:
        return (self.revision, self.event_id) > (other.revision, other.event_id)


_EMPTY: Mapping[str, MilestoneRecord] = MappingProxyType({})


class CaseState(NamedTuple):
    records: Mapping[str, MilestoneRecord] = _EMPTY
    seen_event_ids: frozenset[str] = frozenset()
    duplicates: int = 0  # deliveries of an event id already applied

    @property
    def corrections(self) -> int:
        """Milestones whose record is a correction or retraction (revision above 0)."""
        return sum(1 for r in self.records.values() if r.revision > 0)

    @property
    def present(self) -> dict[str, MilestoneRecord]:
        """The milestones the case has reached (retracted ones left out)."""
        return {m: r for m, r in self.records.items() if not r.retracted}


# -- facts ------------------------------------------------------------------------------------
# Each fact ends in a `kind` tag, so that facts of different kinds never compare equal and a plain
# tuple of the same values (what the core computes internally) equals, and hashes like, the fact.
STAGE_ENTERED = "stage_entered"
STAGE_LEFT = "stage_left"
SEGMENT_COMPLETED = "segment_completed"
CASE_CLOSED = "case_closed"


class StageEntered(NamedTuple):
    stage: str
    case_type: str
    district: str
    at: float
    kind: str = STAGE_ENTERED


class StageLeft(NamedTuple):
    stage: str
    case_type: str
    district: str
    entered_at: float
    at: float
    kind: str = STAGE_LEFT


class SegmentCompleted(NamedTuple):
    segment: str
    case_type: str
    district: str
    started_at: float
    completed_at: float
    kind: str = SEGMENT_COMPLETED

    @property
    def lead_time_seconds(self) -> float:
        return self.completed_at - self.started_at


class CaseClosed(NamedTuple):
    outcome: str
    closing_milestone: str
    case_type: str
    district: str
    at: float
    kind: str = CASE_CLOSED


Fact = StageEntered | StageLeft | SegmentCompleted | CaseClosed
FACT_TYPES: dict[str, type[Fact]] = {
    STAGE_ENTERED: StageEntered,
    STAGE_LEFT: StageLeft,
    SEGMENT_COMPLETED: SegmentCompleted,
    CASE_CLOSED: CaseClosed,
}


class Applied(NamedTuple):
    state: CaseState
    added: frozenset[Fact] = frozenset()
    removed: frozenset[Fact] = frozenset()
    duplicate: bool = False
    corrections_delta: int = 0  # change in the case's number of corrected milestones


_NO_FACTS: frozenset[Fact] = frozenset()
# Builds a named tuple from its complete field tuple, skipping the generated __new__ (hot path).
_new = tuple.__new__


def apply_event(chain: Chain, state: CaseState | None, event: CaseEvent) -> Applied:
    if state is None:
        state = CaseState()
    event_id = event.event_id
    if event_id in state.seen_event_ids:
        return Applied(
            CaseState(state.records, state.seen_event_ids, state.duplicates + 1), duplicate=True
        )
    seen = state.seen_event_ids | {event_id}
    record: MilestoneRecord = _new(
        MilestoneRecord,
        (
            event_id,
            event.occurred_at,
            event.case_type,
            event.district,
            event.outcome,
            event.revision,
            event.retracted,
        ),
    )
    milestone = event.milestone
    current = state.records.get(milestone)
    if current is not None and not record.beats(current):
        # A lower revision (or a losing tie) of a milestone we hold: remember the id, nothing else.
        return Applied(CaseState(state.records, seen, state.duplicates))
    records = state.records.copy()
    records[milestone] = record
    new_state = _new(CaseState, (MappingProxyType(records), seen, state.duplicates))
    added, removed = _changed_facts(chain.fact_plan, state.records, records, milestone)
    corrections_delta = (record.revision > 0) - (current is not None and current.revision > 0)
    return _new(
        Applied,
        (
            new_state,
            _as_facts(added) if added else _NO_FACTS,
            _as_facts(removed) if removed else _NO_FACTS,
            False,
            corrections_delta,
        ),
    )


def case_attributes(chain: Chain, present: Mapping[str, MilestoneRecord]) -> tuple[str, str]:
    """Case type and district as the furthest milestone reports them (later partners know more)."""
    latest = max(present.items(), key=lambda item: chain.milestones[item[0]].rank)[1]
    return latest.case_type, latest.district


def facts_of(chain: Chain, state: CaseState) -> frozenset[Fact]:
    """Every fact implied by the milestones a case has reached."""
    return _as_facts(fact_tuples(chain, state.records))


def _as_facts(tuples: set[tuple]) -> frozenset[Fact]:
    if not tuples:
        return _NO_FACTS
    facts = []  # a plain loop: the sets are small and a generator's frame would cost more
    for t in tuples:
        facts.append(_new(FACT_TYPES[t[-1]], t))
    return frozenset(facts)


# -- computing facts ----------------------------------------------------------------------------
# Facts are computed as plain tuples (equal to the `Fact` objects) from the chain's FactPlan:
# - case type and district of every fact are those of the furthest milestone reached
#   (`case_attributes`); the case is closed when that milestone has a closing outcome;
# - a stage is entered at its earliest entry milestone reached and left at its earliest exit
#   milestone reached or, when every exit was skipped, at the earliest later milestone;
# - a segment is completed when its end (or the closing) is reached; one that ends before it starts
#   is inconsistent partner data: not a lead time.
# `fact_tuples` computes all of a case's facts; `_changed_facts` only those one record can change.


class _Head(NamedTuple):
    """What every fact of a case depends on besides the times of its milestones."""

    case_type: str
    district: str
    furthest: str  # the milestone of highest rank reached
    furthest_rank: int
    closed: tuple | None  # the CaseClosed fact as a tuple
    closed_at: float | None


def _head(plan: FactPlan, records: Mapping[str, MilestoneRecord], times: dict[str, float]) -> _Head:
    furthest = max(times, key=plan.rank.__getitem__)
    return _head_at(plan, furthest, records[furthest])


def _head_at(plan: FactPlan, furthest: str, top: MilestoneRecord) -> _Head:
    rank = plan.rank[furthest]
    closing_outcomes = plan.closures.get(furthest)
    if closing_outcomes is not None and top.outcome in closing_outcomes:
        at = top.occurred_at
        closed = (top.outcome, furthest, top.case_type, top.district, at, CASE_CLOSED)
        return _new(_Head, (top.case_type, top.district, furthest, rank, closed, at))
    return _new(_Head, (top.case_type, top.district, furthest, rank, None, None))


def _times(records: Mapping[str, MilestoneRecord]) -> dict[str, float]:
    """When the case reached each milestone (retracted ones left out)."""
    return {m: r.occurred_at for m, r in records.items() if not r.retracted}


def fact_tuples(chain: Chain, records: Mapping[str, MilestoneRecord]) -> set[tuple]:
    """The facts of a case's records as plain tuples, each equal to its `Fact` (see `facts_of`).

    For folds that only read fields by position (`ChainTotals`): it skips building `Fact` objects.
    """
    return _all_facts(chain.fact_plan, records, _times(records))


def _changed_facts(
    plan: FactPlan,
    before: Mapping[str, MilestoneRecord],
    after: Mapping[str, MilestoneRecord],
    milestone: str,
) -> tuple[set[tuple], set[tuple]]:
    """(added, removed): how the facts change when only `milestone`'s record differs.

    Facts not touched by `milestone` (per the FactPlan) are the same before and after as long as
    the case type and district are, so only the touched ones are computed, on both sides.
    """
    times_before = _times(before)
    times_after = times_before.copy()
    record = after[milestone]
    if record.retracted:
        times_after.pop(milestone, None)
    else:
        times_after[milestone] = record.occurred_at
    if not times_before or not times_after:
        return _all_facts(plan, after, times_after), _all_facts(plan, before, times_before)
    furthest = max(times_before, key=plan.rank.__getitem__)
    head_before = _head_at(plan, furthest, before[furthest])
    if not record.retracted and plan.rank[milestone] > head_before.furthest_rank:
        head_after = _head_at(plan, milestone, record)
    elif milestone != furthest:
        head_after = head_before  # the furthest milestone and its record are unchanged
    else:
        head_after = _head(plan, after, times_after)
    if head_after is not head_before and (
        head_before.case_type != head_after.case_type
        or head_before.district != head_after.district
    ):  # every fact carries the case type and district: all of them changed
        old = _all_facts(plan, before, times_before)
        new = _all_facts(plan, after, times_after)
        return new - old, old - new
    old, new = set(), set()
    if head_before.closed != head_after.closed:
        if head_before.closed is not None:
            old.add(head_before.closed)
        if head_after.closed is not None:
            new.add(head_after.closed)
    for stage, only_if_exit_skipped in plan.stages_touched_by[milestone]:
        # An exit reached fixes when the stage was left, whatever later milestones do.
        if only_if_exit_skipped and not times_after.keys().isdisjoint(stage[2]):
            continue
        _stage_facts(plan, stage, times_before, head_before, old)
        _stage_facts(plan, stage, times_after, head_after, new)
    # A segment that starts or ends at a milestone not reached has no fact on that side.
    if milestone in times_before:
        for segment in plan.segments_touched_by[milestone]:
            _segment_fact(segment, times_before, head_before, old)
    if milestone in times_after:
        for segment in plan.segments_touched_by[milestone]:
            _segment_fact(segment, times_after, head_after, new)
    if head_before.closed_at != head_after.closed_at:
        for segment in plan.segments_to_closed:
            _segment_fact(segment, times_before, head_before, old)
            _segment_fact(segment, times_after, head_after, new)
    if not old:
        return new, old
    return new - old, old - new


def _all_facts(
    plan: FactPlan, records: Mapping[str, MilestoneRecord], times: dict[str, float]
) -> set[tuple]:
    if not times:
        return set()
    head = _head(plan, records, times)
    facts: set[tuple] = set()
    if head.closed is not None:
        facts.add(head.closed)
    stages_entered_at, segments_from = plan.stages_entered_at, plan.segments_from
    for milestone in times:
        # A stage with several entries reached is visited from each; the set keeps one of each fact.
        for stage in stages_entered_at[milestone]:
            _stage_facts(plan, stage, times, head, facts)
        for segment in segments_from[milestone]:
            _segment_fact(segment, times, head, facts)
    return facts


def _stage_facts(
    plan: FactPlan, stage: StagePlan, times: dict[str, float], head: _Head, out: set[tuple]
) -> None:
    stage_id, enter, exits, last_exit_rank = stage
    entered_at = times.get(enter[0]) if len(enter) == 1 else _earliest(enter, times)
    if entered_at is None:
        return
    case_type, district = head.case_type, head.district
    out.add((stage_id, case_type, district, entered_at, STAGE_ENTERED))
    left_at = times.get(exits[0]) if len(exits) == 1 else _earliest(exits, times)
    if left_at is None and head.furthest_rank > last_exit_rank:
        rank = plan.rank
        left_at = min(t for m, t in times.items() if rank[m] > last_exit_rank)
    if left_at is not None:
        out.add((stage_id, case_type, district, entered_at, left_at, STAGE_LEFT))


def _earliest(milestones: tuple[str, ...], times: dict[str, float]) -> float | None:
    reached = [times[m] for m in milestones if m in times]
    return min(reached) if reached else None


def _segment_fact(
    segment: SegmentPlan, times: dict[str, float], head: _Head, out: set[tuple]
) -> None:
    segment_id, start, end = segment
    started_at = times.get(start)
    if started_at is None:
        return
    end_at = head.closed_at if end is None else times.get(end)
    if end_at is not None and end_at >= started_at:
        out.add(
            (segment_id, head.case_type, head.district, started_at, end_at, SEGMENT_COMPLETED)
        )
