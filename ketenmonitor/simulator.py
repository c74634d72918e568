"""A seeded simulator of cases flowing through the chain, for demos, tests and benchmarks.

    scenario = load_scenario()                              # ketenmonitor/simulation.yaml
    cases = simulate_cases(scenario, 1000, start, end, seed=7)
    for event in contract_events(cases): ...              # chain events as contract dicts

Each case walks the scenario's transition graph from its start milestone, drawing the branch and a
lognormal lead time per step. Cases start uniformly in [start, end); steps that would happen after
`end` are not emitted, so cases still in progress at `end` make up the backlog. The simulated cases
are the ground truth: what happened to each case, independent of the monitor.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ketenmonitor.domain.chain import Chain

DEFAULT_SCENARIO_FILE = Path(__file__).resolve().parent / "simulation.yaml"
END = "end"
DAY = 86_400


class Transition(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    to: str
    p: float = Field(gt=0, le=1)
    median_days: float = Field(ge=0)


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    start: str
    case_types: dict[str, float]
    case_type_pace: dict[str, float] = Field(default_factory=dict)
    districts: dict[str, float]
    sigma: float = Field(default=0.6, ge=0)
    transitions: dict[str, list[Transition]]

    @model_validator(mode="after")
    def _probabilities_sum_to_one(self) -> Scenario:
        for node, options in self.transitions.items():
            total = sum(t.p for t in options)
            if not math.isclose(total, 1.0, abs_tol=1e-6):
                raise ValueError(f"transitions from {node!r} sum to {total}, not 1")
        return self

    def check_against(self, chain: Chain) -> None:
        nodes = {self.start} | set(self.transitions) | {
            t.to for ts in self.transitions.values() for t in ts
        }
        for node in nodes - {END}:
            milestone, _, outcome = node.partition(":")
            if milestone not in chain.milestones:
                raise ValueError(f"scenario names unknown milestone {milestone!r}")
            if outcome and outcome not in chain.milestones[milestone].outcomes:
                raise ValueError(f"scenario names unknown outcome {node!r}")
        for ct in self.case_types:
            if ct not in chain.spec.case_types:
                raise ValueError(f"scenario names unknown case type {ct!r}")
        for d in self.districts:
            if d not in chain.spec.districts:
                raise ValueError(f"scenario names unknown district {d!r}")


def load_scenario(path: Path | str | None = None) -> Scenario:
    raw: Any = yaml.safe_load(Path(path or DEFAULT_SCENARIO_FILE).read_text(encoding="utf-8"))
    return Scenario.model_validate(raw)


@dataclass(frozen=True, slots=True)
class Step:
    milestone: str
    outcome: str | None
    occurred_at: float  # POSIX seconds, whole seconds


@dataclass(frozen=True, slots=True)
class SimulatedCase:
    index: int
    case_key: str
    case_type: str
    district: str
    steps: tuple[Step, ...]


def simulate_cases(
    scenario: Scenario, count: int, start: float, end: float, seed: int = 0
) -> list[SimulatedCase]:
    rng = random.Random(seed)
    case_types, ct_weights = zip(*scenario.case_types.items(), strict=True)
    districts, d_weights = zip(*scenario.districts.items(), strict=True)
    cases = []
    for index in range(count):
        case_type = rng.choices(case_types, ct_weights)[0]
        district = rng.choices(districts, d_weights)[0]
        pace = scenario.case_type_pace.get(case_type, 1.0)
        t = float(int(rng.uniform(start, end)))
        node = scenario.start
        steps: list[Step] = []
        while node != END and t < end:
            milestone, _, outcome = node.partition(":")
            steps.append(Step(milestone, outcome or None, t))
            options = scenario.transitions.get(node)
            if not options:
                break
            chosen = rng.choices(options, [o.p for o in options])[0]
            median = chosen.median_days * pace * DAY
            lead = median * math.exp(rng.gauss(0.0, scenario.sigma)) if median else 0.0
            t = float(int(t + lead)) + 1.0  # whole seconds; a step never shares its predecessor's time
            node = chosen.to
        cases.append(
            SimulatedCase(index, f"PN{seed:03d}-{index:09d}", case_type, district, tuple(steps))
        )
    return cases


def contract_events(
    cases: Iterable[SimulatedCase], chain: Chain, seed: int = 0
) -> Iterator[dict[str, Any]]:
    """The cases' steps as contract (v1) events, in event-time order."""
    events = []
    for case in cases:
        for n, step in enumerate(case.steps):
            events.append(
                (
                    step.occurred_at,
                    {
                        "schema_version": 1,
                        "event_id": f"sim{seed}-{case.index}-{n}",
                        "case_key": case.case_key,
                        "organisation": chain.milestones[step.milestone].organisation,
                        "milestone": step.milestone,
                        "occurred_at": datetime.fromtimestamp(step.occurred_at, UTC).isoformat(),
                        "case_type": case.case_type,
                        "district": case.district,
                        **({"outcome": step.outcome} if step.outcome else {}),
                    },
                )
            )
    events.sort(key=lambda pair: pair[0])
    return (event for _, event in events)
