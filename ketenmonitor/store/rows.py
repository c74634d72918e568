"""The rows of one case, computed from its state by the domain core.

    rows = case_rows(chain, pseudonym, state)
    rows.case            -> {"pseudonym": ..., "case_type": ..., "current_stage": ...} or None
    rows.children        -> {"case_milestones": [...], "case_stages": [...], "case_segments": [...]}

One milestone row per occurrence (`occurrence` '' for the default one), one stage row per visit.

Rows are a pure function of the state, so the live worker and a replay that reach the same state
write the same rows. `case` is None when every milestone of the case was retracted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ketenmonitor.domain.case import (
    OCCURRENCE_SEPARATOR,
    CaseClosed,
    CaseState,
    SegmentCompleted,
    StageEntered,
    StageLeft,
    case_attributes,
    facts_of,
    milestone_of,
    timeline,
)
from ketenmonitor.domain.chain import Chain

Row = dict[str, Any]


@dataclass(frozen=True, slots=True)
class CaseRows:
    pseudonym: str
    case: Row | None
    children: dict[str, list[Row]] = field(default_factory=dict)


def case_rows(chain: Chain, pseudonym: str, state: CaseState) -> CaseRows:
    present = state.present
    if not present:
        return CaseRows(pseudonym, None, {"case_milestones": [], "case_stages": [],
                                          "case_segments": []})
    facts = facts_of(chain, state)
    occurrences = timeline(chain, state)
    milestones = [
        {
            "pseudonym": pseudonym,
            "milestone": milestone_of(key),
            "occurrence": key.partition(OCCURRENCE_SEPARATOR)[2],
            "occurred_at": r.occurred_at,
            "event_id": r.event_id,
            "outcome": r.outcome,
            "revision": r.revision,
        }
        for key, r in sorted(present.items())
    ]
    left = {(f.stage, f.entered_at): f.at for f in facts if isinstance(f, StageLeft)}
    stages = [
        {"pseudonym": pseudonym, "stage": f.stage, "entered_at": f.at,
         "left_at": left.get((f.stage, f.at))}
        for f in facts
        if isinstance(f, StageEntered)
    ]
    segments = [
        {
            "pseudonym": pseudonym,
            "segment": f.segment,
            "started_at": f.started_at,
            "completed_at": f.completed_at,
            "lead_time_seconds": f.lead_time_seconds,
        }
        for f in facts
        if isinstance(f, SegmentCompleted)
    ]
    closed = next((f for f in facts if isinstance(f, CaseClosed)), None)
    case_type, district = case_attributes(chain, present)
    last_at, last, _ = occurrences[-1]
    case = {
        "pseudonym": pseudonym,
        "case_type": case_type,
        "district": district,
        "first_event_at": occurrences[0][0],
        "last_milestone": last,
        "last_milestone_at": last_at,
        "current_stage": _current_stage(chain, stages),
        "outcome": closed.outcome if closed else None,
        "closed_at": closed.at if closed else None,
    }
    return CaseRows(
        pseudonym,
        case,
        {
            "case_milestones": milestones,
            "case_stages": sorted(stages, key=lambda r: (r["stage"], r["entered_at"])),
            "case_segments": sorted(segments, key=lambda r: r["segment"]),
        },
    )


def _current_stage(chain: Chain, stages: list[Row]) -> str | None:
    """The open stage entered last (ties: the later stage in chain order); None between stages."""
    order = {s: i for i, s in enumerate(chain.stage_ids)}
    open_stages = [r for r in stages if r["left_at"] is None]
    if not open_stages:
        return None
    latest = max(open_stages, key=lambda r: (r["entered_at"], order[r["stage"]]))
    return str(latest["stage"])
