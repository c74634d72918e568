"""Per-case state and the facts it implies.

    result = apply_event(chain, state, event)   # state is None for a case not seen before
    result.state, result.added, result.removed, result.duplicate
    result, outlines = apply_event_outlined(chain, state, event)  # and where the case stood
        # before and after, from the same walk (domain/flow.py reads the marks from it)

A case's state is the set of milestone occurrences it has received. An occurrence is one time a
case reached a milestone: a hearing that is adjourned and held again, an instalment paid, a case
that comes back to an earlier partner, are several occurrences of one milestone. An event names
its occurrence with the optional `occurrence` id; events without one report the milestone's
default occurrence, so a case whose partners never send occurrence ids has one occurrence per
milestone, as before. Per occurrence the record with the highest revision wins (then the highest
event id), and a retraction is a record too (a tombstone), so a correction or a retraction
addresses exactly one occurrence: the one with its milestone and occurrence id.

Everything else is a pure function of that set (`facts_of`), computed by a walk over the
occurrences in event time (chain rank, then occurrence key, break ties):
- the case's type and district are those of its latest occurrence;
- the case is closed while its latest occurrence is a closing milestone with a closing outcome; a
  later event re-opens it (the CaseClosed fact is withdrawn);
- a stage is entered at an occurrence of one of its entry milestones while the case is not in it,
  and left at the next occurrence that leaves it: an exit, or a milestone outside the stage's span
  of chain ranks (chain.FactPlan): so never left before it was entered, and entered again when the
  case loops back. A case that leaves and re-enters a stage at the same instant stays in it; a
  milestone that both enters and exits a stage makes a visit of no duration. Each visit is one
  StageEntered (and, once left, one StageLeft) fact;
- a segment runs from the first occurrence of its start milestone to the first occurrence of its
  end milestone at or after it (or to the closing of the case): one lead time per case.
Because the state is a set with a deterministic winner per occurrence, the final state and the net
facts do not depend on the order in which a case's events arrive.

Times are POSIX seconds in event time; nothing here reads the clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import NamedTuple

from ketenmonitor.domain.chain import Chain, FactPlan, SegmentPlan


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
    occurrence: str | None = None  # which occurrence of the milestone; None: the default one


OCCURRENCE_SEPARATOR = "#"  # milestone ids never contain it (chain.IDENTIFIER)


def occurrence_key(milestone: str, occurrence: str | None) -> str:
    """The key of an occurrence in `CaseState.records`: `milestone` or `milestone#occurrence`."""
    return milestone if occurrence is None else f"{milestone}{OCCURRENCE_SEPARATOR}{occurrence}"


def milestone_of(key: str) -> str:
    """The milestone of an occurrence key."""
    return key.partition(OCCURRENCE_SEPARATOR)[0]


class MilestoneRecord(NamedTuple):
    event_id: str
    occurred_at: float
    case_type: str
    district: str
    outcome: str | None = None
    revision: int = 0
    retracted: bool = False  # a tombstone: keeps lower revisions of the occurrence out

    def beats(self, other: MilestoneRecord) -> bool:
        return (self.revision, self.event_id) > (other.revision, other.event_id)


_EMPTY: MappingProxyType[str, MilestoneRecord] = MappingProxyType({})


class CaseState(NamedTuple):
    # occurrence key (`occurrence_key`) -> the winning record of that occurrence; read-only, and
    # its `copy()` (a dict) is where the next state's records start (`apply_event`, the codec)
    records: MappingProxyType[str, MilestoneRecord] = _EMPTY
    seen_event_ids: frozenset[str] = frozenset()
    duplicates: int = 0  # deliveries of an event id already applied

    @property
    def corrections(self) -> int:
        """Occurrences whose record is a correction or retraction (revision above 0)."""
        return sum(1 for r in self.records.values() if r.revision > 0)

    @property
    def present(self) -> dict[str, MilestoneRecord]:
        """The occurrences the case has reached, by occurrence key (retracted ones left out)."""
        return {m: r for m, r in self.records.items() if not r.retracted}


# -- facts ------------------------------------------------------------------------------------
# Each fact ends in a `kind` tag, so that facts of different kinds never compare equal and a plain
# tuple of the same values (what the core computes internally) equals, and hashes like, the fact.
STAGE_ENTERED = "stage_entered"
STAGE_LEFT = "stage_left"
SEGMENT_COMPLETED = "segment_completed"
CASE_CLOSED = "case_closed"


class StageEntered(NamedTuple):
    """One visit of a case to a stage (a case that loops back visits a stage again)."""

    stage: str
    case_type: str
    district: str
    at: float
    kind: str = STAGE_ENTERED


class StageLeft(NamedTuple):
    stage: str
    case_type: str
    district: str
    entered_at: float  # the visit it ends; never after `at`
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
    corrections_delta: int = 0  # change in the case's number of corrected occurrences


_NO_FACTS: frozenset[Fact] = frozenset()
# Builds a named tuple from its complete field tuple, skipping the generated __new__ (hot path).
_new = tuple.__new__


def apply_event(chain: Chain, state: CaseState | None, event: CaseEvent) -> Applied:
    return _apply_event(chain, state, event, False)[0]


# Where the case stood before and after an event (`apply_event_outlined`); None: its present
# occurrences did not change, so neither did anything read from them.
Outlines = tuple["StageOutline | None", "StageOutline | None"] | None


def apply_event_outlined(
    chain: Chain, state: CaseState | None, event: CaseEvent
) -> tuple[Applied, Outlines]:
    """`apply_event`, and the case's `stage_outline` before and after the event, taken from the
    walk(s) that computing the facts already made: (applied, (before, after)), or (applied, None)
    when the event changed no present occurrence (a duplicate, a losing revision, a tombstone for
    an occurrence not reached). Each outline equals `stage_outline` of its state (with, in
    `stage_facts`, possibly segment facts too, which a reading of stage facts ignores)."""
    return _apply_event(chain, state, event, True)


def _apply_event(
    chain: Chain, state: CaseState | None, event: CaseEvent, outlined: bool
) -> tuple[Applied, Outlines]:
    if state is None:
        state = CaseState()
    event_id = event.event_id
    if event_id in state.seen_event_ids:
        return Applied(
            CaseState(state.records, state.seen_event_ids, state.duplicates + 1), duplicate=True
        ), None
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
    occurrence = event.occurrence
    key = milestone if occurrence is None else milestone + OCCURRENCE_SEPARATOR + occurrence
    current = state.records.get(key)
    if current is not None and not record.beats(current):
        # A lower revision (or a losing tie) of an occurrence we hold: remember the id only.
        return Applied(CaseState(state.records, seen, state.duplicates)), None
    records = state.records.copy()
    records[key] = record
    new_state = _new(CaseState, (MappingProxyType(records), seen, state.duplicates))
    added, removed, outlines = _changed_facts(
        chain.fact_plan, state.records, records, key, milestone, current, record, outlined
    )
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
    ), outlines


def timeline(chain: Chain, state: CaseState) -> list[tuple[float, str, MilestoneRecord]]:
    """The case's occurrences in the order the core walks them: (time, milestone, record)."""
    return [(t, m, r) for t, _, _, m, r in _occurrences(chain.fact_plan, state.records)]


def case_attributes(chain: Chain, present: Mapping[str, MilestoneRecord]) -> tuple[str, str]:
    """Case type and district as the case's latest occurrence reports them."""
    rank = chain.fact_plan.rank
    latest = max(
        present.items(), key=lambda item: (item[1].occurred_at, rank[milestone_of(item[0])],
                                           item[0])
    )[1]
    return latest.case_type, latest.district


def facts_of(chain: Chain, state: CaseState) -> frozenset[Fact]:
    """Every fact implied by the occurrences a case has reached."""
    return _as_facts(fact_tuples(chain, state.records))


def _as_facts(tuples: set[tuple]) -> frozenset[Fact]:
    if not tuples:
        return _NO_FACTS
    facts = []  # a plain loop: the sets are small and a generator's frame would cost more
    for t in tuples:
        facts.append(_new(FACT_TYPES[t[-1]], t))
    return frozenset(facts)


# -- computing facts ----------------------------------------------------------------------------
# Facts are computed as plain tuples (equal to the `Fact` objects) by `_walk`, which also returns
# where the walk ended (stages still open, the last visit of each stage, the times of each
# milestone). An event that only appends an occurrence after every other one (the usual case: a
# case's events arrive roughly in order) changes facts only at that end, which `_changed_facts`
# computes from the walk of the state before; any other event is a diff of two walks.

# An occurrence as the walk sees it: (time, rank, key, milestone, record). Keys are unique, so
# sorting never compares milestones or records.
_Occurrence = tuple[float, int, str, str, MilestoneRecord]


def _occurrences(plan: FactPlan, records: Mapping[str, MilestoneRecord]) -> list[_Occurrence]:
    rank = plan.rank
    items = []
    for key, r in records.items():
        if r.retracted:
            continue
        m = key if key in rank else key.partition(OCCURRENCE_SEPARATOR)[0]
        items.append((r.occurred_at, rank[m], key, m, r))
    items.sort()
    return items


class _Walk:
    """The facts of a case and where the walk over its occurrences ended."""

    __slots__ = ("case_type", "closed", "district", "facts", "last", "last_left", "open", "times")

    def __init__(self) -> None:
        self.facts: set[tuple] = set()
        self.case_type = self.district = ""
        self.last: tuple[float, int, str] = (0.0, 0, "")  # sort key of the latest occurrence
        self.closed: tuple | None = None  # the CaseClosed fact as a tuple
        self.open: dict[str, float] = {}  # stage -> when its open visit was entered
        self.last_left: dict[str, tuple] = {}  # stage -> StageLeft tuple of its last ended visit
        self.times: dict[str, list[float]] = {}  # milestone -> times of its occurrences, in order

    @property
    def closed_at(self) -> float | None:
        return None if self.closed is None else self.closed[4]


def _closure(plan: FactPlan, milestone: str, record: MilestoneRecord) -> tuple | None:
    outcomes = plan.closures.get(milestone)
    if outcomes is not None and record.outcome in outcomes:
        return (record.outcome, milestone, record.case_type, record.district, record.occurred_at,
                CASE_CLOSED)
    return None


def _walk(plan: FactPlan, items: list[_Occurrence], all_facts: bool = True) -> _Walk:
    """Walk the occurrences (sorted). Without `all_facts`, only where the walk ended and the
    stage facts are wanted: segment facts are left out."""
    walk = _Walk()
    if not items:
        return walk
    t, r, key, m, top = items[-1]
    ct = walk.case_type = top.case_type
    d = walk.district = top.district
    walk.last = (t, r, key)
    facts = walk.facts
    closed = walk.closed = _closure(plan, m, top)
    if closed is not None:
        facts.add(closed)
    open_, last_left, times = walk.open, walk.last_left, walk.times
    leaves, enters = plan.leaves, plan.enters
    for t, _, _, m, _ in items:
        ts = times.get(m)
        if ts is None:
            times[m] = [t]
        else:
            ts.append(t)
        if open_:
            left = leaves[m]
            if left:
                for stage in [s for s in open_ if s in left]:
                    fact = (stage, ct, d, open_.pop(stage), t, STAGE_LEFT)
                    facts.add(fact)
                    last_left[stage] = fact
        for stage in enters[m]:
            if stage in open_:
                continue  # a repeated entry within a visit
            before = last_left.get(stage)
            if before is not None and before[4] == t:  # left and entered at one instant: stays
                facts.discard(before)
                del last_left[stage]
                open_[stage] = before[3]
            else:
                facts.add((stage, ct, d, t, STAGE_ENTERED))
                open_[stage] = t
            if stage in leaves[m]:  # it enters and exits at this milestone: no duration
                fact = (stage, ct, d, open_.pop(stage), t, STAGE_LEFT)
                facts.add(fact)
                last_left[stage] = fact
    if not all_facts:
        return walk
    closed_at = walk.closed_at
    segments_from = plan.segments_from
    for m in times:
        for segment in segments_from[m]:
            # Not `fact`: that name holds a StageLeft tuple above, and a compiled build (mypyc)
            # enforces that type at run time, so None would not fit it.
            completed = _segment_fact(segment, times, closed_at, ct, d)
            if completed is not None:
                facts.add(completed)
    return walk


def _segment_fact(
    segment: SegmentPlan, times: dict[str, list[float]], closed_at: float | None, ct: str, d: str
) -> tuple | None:
    """From the first occurrence of the start to the first occurrence of the end at or after it.

    A segment whose end was only reached before its start is inconsistent partner data (or not yet
    completed): not a lead time.
    """
    segment_id, start, end = segment
    starts = times.get(start)
    if starts is None:
        return None
    started_at = starts[0]
    if end is None:
        if closed_at is None or closed_at < started_at:
            return None
        return (segment_id, ct, d, started_at, closed_at, SEGMENT_COMPLETED)
    ends = times.get(end)
    if ends is None:
        return None
    for end_at in ends:
        if end_at >= started_at:
            return (segment_id, ct, d, started_at, end_at, SEGMENT_COMPLETED)
    return None


class StageOutline(NamedTuple):
    """Where a case stands, for readings that need no segments (domain/flow.py: marks_of)."""

    case_type: str
    district: str
    last_at: float  # event time of the latest present occurrence
    open: dict[str, float]  # stage -> when its open visit was entered
    stage_facts: set[tuple]  # StageEntered and StageLeft (and CaseClosed) facts, as tuples
    milestones: list[str]  # the milestone of every present occurrence


def stage_outline(chain: Chain, records: Mapping[str, MilestoneRecord]) -> StageOutline | None:
    """The case's stage facts and open visits (None when nothing is present): one walk without
    segments, cheaper than `fact_tuples`."""
    plan = chain.fact_plan
    items = _occurrences(plan, records)
    if not items:
        return None
    walk = _walk(plan, items, all_facts=False)
    return StageOutline(
        walk.case_type, walk.district, walk.last[0], walk.open, walk.facts, [i[3] for i in items]
    )


def closes_case(facts: Iterable[tuple]) -> bool:
    """Whether these fact tuples include a closure (the case closed)."""
    for fact in facts:  # noqa: SIM110 (a loop: any() over a generator is ~2x slower here)
        if fact[-1] == CASE_CLOSED:
            return True
    return False


def fact_tuples(chain: Chain, records: Mapping[str, MilestoneRecord]) -> set[tuple]:
    """The facts of a case's records as plain tuples, each equal to its `Fact` (see `facts_of`).

    For folds that only read fields by position (`ChainTotals`): it skips building `Fact` objects.
    """
    plan = chain.fact_plan
    return _walk(plan, _occurrences(plan, records)).facts


def facts_and_outline(
    chain: Chain, records: Mapping[str, MilestoneRecord]
) -> tuple[set[tuple], StageOutline | None]:
    """`fact_tuples` and `stage_outline` of the same records from one walk (a restore folds
    every stored case: one walk per case instead of two). The outline's `stage_facts` hold the
    segment facts too, which a reading of stage facts ignores (as `apply_event_outlined`'s)."""
    plan = chain.fact_plan
    items = _occurrences(plan, records)
    if not items:
        return set(), None
    walk = _walk(plan, items)
    return walk.facts, _new(
        StageOutline,
        (walk.case_type, walk.district, walk.last[0], walk.open, walk.facts,
         [i[3] for i in items]),
    )


def _outline(walk: _Walk, milestones: list[str]) -> StageOutline | None:
    if not milestones:
        return None
    return _new(
        StageOutline,
        (walk.case_type, walk.district, walk.last[0], walk.open, walk.facts, milestones),
    )


def _changed_facts(
    plan: FactPlan,
    before: Mapping[str, MilestoneRecord],
    after: Mapping[str, MilestoneRecord],
    key: str,
    milestone: str,
    current: MilestoneRecord | None,
    record: MilestoneRecord,
    outlined: bool = False,
) -> tuple[set[tuple], set[tuple], Outlines]:
    """(added, removed, outlines): how the facts change when only occurrence `key`'s record
    differs, and, if `outlined`, the case's outlines before and after (see
    `apply_event_outlined`) from the same walks."""
    if current is not None and not current.retracted:
        # A present occurrence corrected or retracted: a diff of two walks.
        old_items, new_items = _occurrences(plan, before), _occurrences(plan, after)
        old_walk, new_walk = _walk(plan, old_items), _walk(plan, new_items)
        old, new = old_walk.facts, new_walk.facts
        outlines = None
        if outlined:
            outlines = (_outline(old_walk, [i[3] for i in old_items]),
                        _outline(new_walk, [i[3] for i in new_items]))
        return new - old, old - new, outlines
    if record.retracted:
        return set(), set(), None  # a tombstone for an occurrence not present: nothing changes
    items = _occurrences(plan, before)
    t = record.occurred_at
    rank = plan.rank[milestone]
    if items:
        last_t, last_rank, last_key, _, last = items[-1]
        if (
            (t, rank, key) > (last_t, last_rank, last_key)
            and record.case_type == last.case_type
            and record.district == last.district
        ):  # the usual case: the new latest occurrence, the same attributes
            walk = _walk(plan, items, all_facts=False)
            if not outlined:
                return (*_appended(plan, walk, milestone, record), None)
            milestones = [i[3] for i in items]
            # `_appended` moves the walk on to the state after: the outline before keeps a copy
            # of the open visits (its facts are not touched).
            before_outline = _new(
                StageOutline,
                (walk.case_type, walk.district, last_t, dict(walk.open),
                 walk.facts, milestones),
            )
            added, removed = _appended(plan, walk, milestone, record)
            facts = walk.facts
            if removed:
                facts = facts - removed
            if added:
                facts = facts | added
            after_outline = _new(
                StageOutline,
                (walk.case_type, walk.district, t, walk.open, facts, [*milestones, milestone]),
            )
            return added, removed, (before_outline, after_outline)
    # The first occurrence, not the latest, or new attributes for every fact: walk both.
    old_walk = _walk(plan, items)
    old_milestones = [i[3] for i in items] if outlined else []
    items.append((t, rank, key, milestone, record))
    items.sort()
    new_walk = _walk(plan, items)
    old, new = old_walk.facts, new_walk.facts
    outlines = None
    if outlined:
        outlines = (_outline(old_walk, old_milestones), _outline(new_walk, [i[3] for i in items]))
    return new - old, old - new, outlines


def _appended(
    plan: FactPlan, walk: _Walk, milestone: str, record: MilestoneRecord
) -> tuple[set[tuple], set[tuple]]:
    """The change of facts when one occurrence, with the same attributes, is added after all."""
    t = record.occurred_at
    ct, d = walk.case_type, walk.district
    added: set[tuple] = set()
    removed: set[tuple] = set()
    closed = _closure(plan, milestone, record)
    if walk.closed != closed:  # at most one of them is not None: the time differs
        if walk.closed is not None:
            removed.add(walk.closed)
        if closed is not None:
            added.add(closed)
    open_, last_left = walk.open, walk.last_left
    leaves = plan.leaves[milestone]
    if open_:
        for stage in [s for s in open_ if s in leaves]:
            fact = (stage, ct, d, open_.pop(stage), t, STAGE_LEFT)
            added.add(fact)
            last_left[stage] = fact
    for stage in plan.enters[milestone]:
        if stage in open_:
            continue
        before = last_left.get(stage)
        if before is not None and before[4] == t:  # left and entered at one instant: it stays
            if before in added:
                added.discard(before)
            else:
                removed.add(before)
            open_[stage] = before[3]
        else:
            added.add((stage, ct, d, t, STAGE_ENTERED))
            open_[stage] = t
        if stage in leaves:  # it enters and exits at this milestone: no duration
            fact = (stage, ct, d, open_.pop(stage), t, STAGE_LEFT)
            if fact in removed:
                removed.discard(fact)
            else:
                added.add(fact)
    times = walk.times
    old_closed_at, new_closed_at = walk.closed_at, (None if closed is None else t)
    segments = plan.segments_touched_by[milestone]
    if old_closed_at != new_closed_at:
        segments = segments + plan.segments_to_closed
    if segments:
        olds = [_segment_fact(s, times, old_closed_at, ct, d) for s in segments]
        ts = times.get(milestone)
        if ts is None:
            times[milestone] = [t]
        else:
            ts.append(t)
        for segment, old in zip(segments, olds, strict=True):
            new = _segment_fact(segment, times, new_closed_at, ct, d)
            if new != old:
                if old is not None:
                    removed.add(old)
                if new is not None:
                    added.add(new)
    if added and removed:
        both = added & removed
        if both:
            return added - both, removed - both
    return added, removed
