"""What happened to one simulated case, by the chain definition read as data: for the tests only.

    flow = case_flow(spec, [(milestone, outcome, t), ...])   # the case's steps in path order
    flow.visits["court_trial"]   -> [(entered_at, left_at or None), ...]
    flow.segments["end_to_end"]  -> (started_at, completed_at)
    flow.closed                  -> (outcome, closed_at) or None

A second, deliberately plain reading of the case model (docs/operations.md, "How the case model
reads the occurrences"), shared by the independent batch computations of tests/integration: it uses
nothing from ketenmonitor.domain. The simulator's steps are in strictly increasing event time, so
path order is time order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Step = tuple[str, str | None, float]  # milestone, outcome, event time


@dataclass
class CaseFlow:
    visits: dict[str, list[tuple[float, float | None]]] = field(default_factory=dict)
    segments: dict[str, tuple[float, float]] = field(default_factory=dict)
    closed: tuple[str, float] | None = None


def ranks(spec: dict[str, Any]) -> dict[str, int]:
    return {m["id"]: i for i, m in enumerate(m for p in spec["partners"] for m in p["milestones"])}


def case_flow(spec: dict[str, Any], steps: list[Step]) -> CaseFlow:
    flow = CaseFlow()
    if not steps:
        return flow
    rank = ranks(spec)
    last_milestone, last_outcome, last_at = steps[-1]
    for closure in spec["closures"]:
        if closure["milestone"] == last_milestone and last_outcome in closure["outcomes"]:
            flow.closed = (last_outcome, last_at)
    for stage in spec["stages"]:
        low = min(rank[m] for m in stage["enter"])
        high = max(rank[m] for m in stage["exit"])
        visits: list[list[float | None]] = []
        inside = False
        for milestone, _, at in steps:
            leaves = milestone in stage["exit"] or (
                milestone not in stage["enter"] and not low <= rank[milestone] <= high
            )
            if inside and leaves:
                visits[-1][1] = at
                inside = False
            if not inside and milestone in stage["enter"]:
                visits.append([at, None])
                inside = True
                if milestone in stage["exit"]:
                    visits[-1][1] = at
                    inside = False
        if visits:
            flow.visits[stage["id"]] = [(v[0], v[1]) for v in visits]  # type: ignore[misc]
    closed_at = flow.closed[1] if flow.closed else None
    for segment in spec["segments"]:
        starts = [at for m, _, at in steps if m == segment["from"]]
        if not starts:
            continue
        if segment["to"] == "closed":
            ends = [closed_at] if closed_at is not None else []
        else:
            ends = [at for m, _, at in steps if m == segment["to"]]
        ends = [at for at in ends if at >= starts[0]]
        if ends:
            flow.segments[segment["id"]] = (starts[0], ends[0])
    return flow
