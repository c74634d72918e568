"""Per-case state and the facts it implies.

    result = apply_event(chain, state, event)   # state is None for a case not seen before
    result.state, result.added, result.removed, result.duplicate

A case's state is the set of milestone records it has received, keyed by milestone. Everything else
(stages entered and left, segments completed with their lead time, the closing of the case) is a pure
function of that set: `facts_of(chain, state)`. Applying an event returns the facts it added and the
facts it withdrew (an out-of-order or corrected event can move a stage's exit, say). Because the state
is a set with a deterministic winner per milestone (highest revision, then highest event id), the
final state and the net facts do not depend on the order in which a case's events arrive.

Times are POSIX seconds in event time; nothing here reads the clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from ketenmonitor.domain.chain import CLOSED, Chain


@dataclass(frozen=True, slots=True)
class CaseEvent:
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


@dataclass(frozen=True, slots=True)
class MilestoneRecord:
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


@dataclass(frozen=True, slots=True)
class CaseState:
    records: Mapping[str, MilestoneRecord] = field(default_factory=lambda: _EMPTY)
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
@dataclass(frozen=True, slots=True)
class StageEntered:
    stage: str
    case_type: str
    district: str
    at: float


@dataclass(frozen=True, slots=True)
class StageLeft:
    stage: str
    case_type: str
    district: str
    entered_at: float
    at: float


@dataclass(frozen=True, slots=True)
class SegmentCompleted:
    segment: str
    case_type: str
    district: str
    started_at: float
    completed_at: float

    @property
    def lead_time_seconds(self) -> float:
        return self.completed_at - self.started_at


@dataclass(frozen=True, slots=True)
class CaseClosed:
    outcome: str
    closing_milestone: str
    case_type: str
    district: str
    at: float


Fact = StageEntered | StageLeft | SegmentCompleted | CaseClosed


@dataclass(frozen=True, slots=True)
class Applied:
    state: CaseState
    added: frozenset[Fact] = field(default_factory=frozenset)
    removed: frozenset[Fact] = field(default_factory=frozenset)
    duplicate: bool = False
    corrections_delta: int = 0  # change in the case's number of corrected milestones


def apply_event(chain: Chain, state: CaseState | None, event: CaseEvent) -> Applied:
    state = state or CaseState()
    if event.event_id in state.seen_event_ids:
        return Applied(replace(state, duplicates=state.duplicates + 1), duplicate=True)
    seen = state.seen_event_ids | {event.event_id}
    record = MilestoneRecord(
        event.event_id,
        event.occurred_at,
        event.case_type,
        event.district,
        event.outcome,
        event.revision,
        event.retracted,
    )
    current = state.records.get(event.milestone)
    if current is not None and not record.beats(current):
        # A lower revision (or a losing tie) of a milestone we hold: remember the id, change nothing.
        return Applied(replace(state, seen_event_ids=seen))
    records = dict(state.records)
    records[event.milestone] = record
    new_state = CaseState(MappingProxyType(records), seen, state.duplicates)
    before = facts_of(chain, state)
    after = facts_of(chain, new_state)
    return Applied(
        new_state,
        frozenset(after - before),
        frozenset(before - after),
        corrections_delta=new_state.corrections - state.corrections,
    )


def case_attributes(chain: Chain, present: Mapping[str, MilestoneRecord]) -> tuple[str, str]:
    """Case type and district as the furthest milestone reports them (later partners know more)."""
    latest = max(present.items(), key=lambda item: chain.milestones[item[0]].rank)[1]
    return latest.case_type, latest.district


def facts_of(chain: Chain, state: CaseState) -> frozenset[Fact]:
    """Every fact implied by the milestones a case has reached."""
    present = state.present
    if not present:
        return frozenset()
    rank = chain.milestones
    case_type, district = case_attributes(chain, present)
    facts: list[Fact] = []

    closed: CaseClosed | None = None
    furthest = max(present, key=lambda m: rank[m].rank)
    closing_outcomes = chain.closures.get(furthest)
    outcome = present[furthest].outcome
    if closing_outcomes is not None and outcome in closing_outcomes:
        closed = CaseClosed(outcome, furthest, case_type, district, present[furthest].occurred_at)
        facts.append(closed)

    for stage in chain.spec.stages:
        entries = [present[m].occurred_at for m in stage.enter if m in present]
        if not entries:
            continue
        entered_at = min(entries)
        facts.append(StageEntered(stage.id, case_type, district, entered_at))
        left_at = _left_at(chain, stage.exit, present)
        if left_at is not None:
            facts.append(StageLeft(stage.id, case_type, district, entered_at, left_at))

    for segment in chain.spec.segments:
        start = present.get(segment.start)
        if start is None:
            continue
        if segment.end == CLOSED:
            end_at = closed.at if closed is not None else None
        else:
            end = present.get(segment.end)
            end_at = end.occurred_at if end is not None else None
        # A segment that ends before it starts is inconsistent partner data: not a lead time.
        if end_at is not None and end_at >= start.occurred_at:
            facts.append(
                SegmentCompleted(segment.id, case_type, district, start.occurred_at, end_at)
            )
    return frozenset(facts)


def _left_at(
    chain: Chain, exits: list[str], present: Mapping[str, MilestoneRecord]
) -> float | None:
    """A stage is left at its exit milestone or, when that was skipped, at the first later one."""
    exit_times = [present[m].occurred_at for m in exits if m in present]
    if exit_times:
        return min(exit_times)
    last_exit_rank = max(chain.milestones[m].rank for m in exits)
    later = [r.occurred_at for m, r in present.items() if chain.milestones[m].rank > last_exit_rank]
    return min(later) if later else None
