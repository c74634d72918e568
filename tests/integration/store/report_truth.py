"""An independent batch computation of the event-time report, for the tests only.

Works from the simulator's ground truth (what happened to each case, in path order) and the chain
definition read as data. It deliberately uses nothing from ketenmonitor.domain or
ketenmonitor.store: the store's report is checked against a second, simpler implementation.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import yaml

from ketenmonitor.domain.chain import DEFAULT_CHAIN_FILE
from ketenmonitor.simulator import SimulatedCase

DAY = 86_400


def chain_data() -> dict[str, Any]:
    return yaml.safe_load(DEFAULT_CHAIN_FILE.read_text(encoding="utf-8"))


def percentile(values: list[float], p: int) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(p * len(ordered) / 100)) - 1]


def case_facts(spec: dict[str, Any], case: SimulatedCase) -> dict[str, Any]:
    """Stages entered/left and segments completed by one simulated case."""
    rank = {m["id"]: i for i, m in enumerate(m for p in spec["partners"] for m in p["milestones"])}
    closures = {c["milestone"]: set(c["outcomes"]) for c in spec["closures"]}
    times = {s.milestone: s.occurred_at for s in case.steps}
    last = case.steps[-1]
    closed_at = last.occurred_at if last.outcome in closures.get(last.milestone, ()) else None
    stages = {}
    for stage in spec["stages"]:
        entries = [times[m] for m in stage["enter"] if m in times]
        if not entries:
            continue
        exit_rank = max(rank[m] for m in stage["exit"])
        leaving = [t for m, t in times.items() if m in stage["exit"] or rank[m] > exit_rank]
        stages[stage["id"]] = (min(entries), min(leaving) if leaving else None)
    segments = {}
    for seg in spec["segments"]:
        start = times.get(seg["from"])
        end = closed_at if seg["to"] == "closed" else times.get(seg["to"])
        if start is not None and end is not None and end >= start:
            segments[seg["id"]] = (start, end)
    return {"stages": stages, "segments": segments}


def expected_report(cases: Iterable[SimulatedCase], start: float, end: float) -> dict[str, Any]:
    spec = chain_data()
    leads: dict[tuple[str, str], list[float]] = defaultdict(list)
    stage = {s["id"]: {"inflow": 0, "outflow": 0, "backlog": 0, "oldest": None}
             for s in spec["stages"]}
    for case in cases:
        if not case.steps:
            continue
        facts = case_facts(spec, case)
        for seg_id, (s, e) in facts["segments"].items():
            if start <= e < end:
                leads[(seg_id, case.case_type)].append(e - s)
        for stage_id, (entered, left) in facts["stages"].items():
            row = stage[stage_id]
            row["inflow"] += start <= entered < end
            row["outflow"] += left is not None and start <= left < end
            if entered < end and (left is None or left >= end):
                row["backlog"] += 1
                row["oldest"] = entered if row["oldest"] is None else min(row["oldest"], entered)
    segments = {}
    for (seg_id, case_type), values in leads.items():
        norms = {
            n["id"]: sum(v <= n["within_days"] * DAY for v in values) / len(values)
            for n in spec["norms"]
            if n["segment"] == seg_id and case_type in n.get("case_types", [case_type])
        }
        segments[(seg_id, case_type)] = {
            "completed": len(values),
            "percentiles": {p: percentile(values, p) for p in (50, 80, 90)},
            "norms": norms,
        }
    return {"segments": segments, "stages": stage}
