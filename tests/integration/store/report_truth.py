"""An independent batch computation of the event-time report, for the tests only.

Works from the simulator's ground truth (what happened to each case, in path order) and the chain
definition read as data, through tests/integration/flow_truth.py (a case may visit a stage more
than once). It deliberately uses nothing from ketenmonitor.domain or
ketenmonitor.store: the store's report is checked against a second, simpler implementation.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from ketenmonitor.domain.chain import DEFAULT_CHAIN_FILE
from ketenmonitor.domain.chain import SECONDS_PER_DAY as DAY
from ketenmonitor.simulator import SimulatedCase


def _load_flow_truth() -> Any:
    # tests/integration/flow_truth.py, the plain reading of a case shared by the batch truths.
    name = "ketenmonitor_tests_flow_truth"
    if name not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "flow_truth.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


case_flow = _load_flow_truth().case_flow


def chain_data() -> dict[str, Any]:
    return yaml.safe_load(DEFAULT_CHAIN_FILE.read_text(encoding="utf-8"))


def percentile(values: list[float], p: int) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(p * len(ordered) / 100)) - 1]


def case_facts(spec: dict[str, Any], case: SimulatedCase) -> dict[str, Any]:
    """Stage visits entered/left and segments completed by one simulated case."""
    flow = case_flow(spec, [(s.milestone, s.outcome, s.occurred_at) for s in case.steps])
    return {"stages": flow.visits, "segments": flow.segments}


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
        for stage_id, visits in facts["stages"].items():
            row = stage[stage_id]
            for entered, left in visits:
                row["inflow"] += start <= entered < end
                row["outflow"] += left is not None and start <= left < end
                if entered < end and (left is None or left >= end):
                    row["backlog"] += 1
                    oldest = row["oldest"]
                    row["oldest"] = entered if oldest is None else min(oldest, entered)
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
