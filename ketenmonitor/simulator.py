"""A seeded simulator of cases flowing through the chain, for demos, tests and benchmarks.

    scenario = load_scenario()                              # ketenmonitor/simulation.yaml
    cases = simulate_cases(scenario, 1000, start, end, seed=7)
    for event in contract_events(cases, chain): ...       # chain events as contract dicts

    for case in stream_cases(scenario, 10_000_000, start, end, seed=7): ...   # in start order

Each case walks the scenario's transition graph from its start milestone, drawing the branch and a
lognormal lead time per step. Cases start uniformly in [start, end); steps that would happen after
`end` are not emitted, so cases still in progress at `end` make up the backlog. The simulated cases
are the ground truth: what happened to each case, independent of the monitor.

`simulate_cases` returns a list (small runs); `stream_cases` yields cases one by one in order of
their start time, holding nothing, so that a year of national volume streams in constant memory.
Publishing delays and fault injection on top of the cases live in ketenmonitor/delivery.py.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ketenmonitor.domain.chain import SECONDS_PER_DAY, Chain

DEFAULT_SCENARIO_FILE = Path(__file__).resolve().parent / "simulation.yaml"
END = "end"
MALFORMED_KINDS = (
    "not_json", "unknown_milestone", "naive_timestamp", "unknown_field", "wrong_type"
)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Transition(_Model):
    to: str
    p: float = Field(gt=0, le=1)
    median_days: float = Field(ge=0)


class PublishDelay(_Model):
    """How long after the event time a partner's system publishes it: lognormal."""

    median_minutes: float = Field(ge=0)
    sigma: float = Field(default=1.0, ge=0)


class Silence(_Model):
    """A partner that publishes nothing for a while; what it held back arrives when it resumes."""

    organisation: str
    from_day: float = Field(ge=0, description="days after the start of the simulated period")
    days: float = Field(gt=0)


class Faults(_Model):
    """Rates are per valid event (0..1)."""

    duplicate_rate: float = Field(default=0.0, ge=0, le=1)
    out_of_order_rate: float = Field(default=0.0, ge=0, le=1)
    late_rate: float = Field(default=0.0, ge=0, le=1)
    late_median_days: float = Field(default=10.0, gt=0)
    malformed_rate: float = Field(default=0.0, ge=0, le=1)
    malformed_kinds: tuple[str, ...] = MALFORMED_KINDS
    correction_rate: float = Field(default=0.0, ge=0, le=1)
    silences: tuple[Silence, ...] = ()

    @model_validator(mode="after")
    def _known_kinds(self) -> Faults:
        unknown = set(self.malformed_kinds) - set(MALFORMED_KINDS)
        if unknown or not self.malformed_kinds:
            raise ValueError(f"malformed_kinds must be a non-empty subset of {MALFORMED_KINDS}")
        return self


class Scenario(_Model):
    start: str
    case_type_start: dict[str, str] = Field(default_factory=dict)  # case type -> its start node
    case_types: dict[str, float]
    case_type_pace: dict[str, float] = Field(default_factory=dict)
    districts: dict[str, float]
    sigma: float = Field(default=0.6, ge=0)
    transitions: dict[str, list[Transition]]
    cases_per_year: int = Field(default=200_000, gt=0)
    publish_delay: dict[str, PublishDelay] = Field(default_factory=dict)
    faults: Faults = Faults()

    @model_validator(mode="after")
    def _probabilities_sum_to_one(self) -> Scenario:
        for node, options in self.transitions.items():
            total = sum(t.p for t in options)
            if not math.isclose(total, 1.0, abs_tol=1e-6):
                raise ValueError(f"transitions from {node!r} sum to {total}, not 1")
        return self

    def check_against(self, chain: Chain) -> None:
        nodes = {self.start, *self.case_type_start.values()} | set(self.transitions) | {
            t.to for ts in self.transitions.values() for t in ts
        }
        for node in nodes - {END}:
            milestone, _, outcome = node.partition(":")
            if milestone not in chain.milestones:
                raise ValueError(f"scenario names unknown milestone {milestone!r}")
            if outcome and outcome not in chain.milestones[milestone].outcomes:
                raise ValueError(f"scenario names unknown outcome {node!r}")
        for ct in (*self.case_types, *self.case_type_start):
            if ct not in chain.spec.case_types:
                raise ValueError(f"scenario names unknown case type {ct!r}")
        for d in self.districts:
            if d not in chain.spec.districts:
                raise ValueError(f"scenario names unknown district {d!r}")
        partners = set(chain.partner_ids)
        for org in (*self.publish_delay, *(s.organisation for s in self.faults.silences)):
            if org not in partners:
                raise ValueError(f"scenario names unknown organisation {org!r}")


    def start_of(self, case_type: str) -> str:
        return self.case_type_start.get(case_type, self.start)


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
    # False when the period ended while the case was still on its way (it is in a backlog).
    complete: bool = True

    @property
    def branch(self) -> str:
        return " > ".join(
            f"{s.milestone}:{s.outcome}" if s.outcome else s.milestone for s in self.steps
        )


def case_key(seed: int, index: int) -> str:
    return f"PN{seed:03d}-{index:09d}"


def _walk(
    rng: random.Random, scenario: Scenario, t: float, end: float, pace: float, case_type: str
) -> tuple[list[Step], bool]:
    """One case's path from its start node; the draws are the same as they always were."""
    node = scenario.start_of(case_type)
    steps: list[Step] = []
    while node != END and t < end:
        milestone, _, outcome = node.partition(":")
        steps.append(Step(milestone, outcome or None, t))
        options = scenario.transitions.get(node)
        if not options:
            return steps, True
        chosen = rng.choices(options, [o.p for o in options])[0]
        median = chosen.median_days * pace * SECONDS_PER_DAY
        lead = median * math.exp(rng.gauss(0.0, scenario.sigma)) if median else 0.0
        t = float(int(t + lead)) + 1.0  # whole seconds; a step never shares its predecessor's time
        node = chosen.to
    return steps, node == END


def simulate_cases(
    scenario: Scenario, count: int, start: float, end: float, seed: int = 0
) -> list[SimulatedCase]:
    """`count` cases starting uniformly in [start, end), in index order (not time order)."""
    rng = random.Random(seed)
    return list(_generate(scenario, count, end, seed, rng, lambda: rng.uniform(start, end)))


def _generate(
    scenario: Scenario,
    count: int,
    end: float,
    seed: int,
    rng: random.Random,
    next_start: Callable[[], float],
) -> Iterator[SimulatedCase]:
    """The cases one by one: per case its type and district from `rng`, then its start time from
    `next_start` (called once per case, after those two draws), then its walk from `rng`."""
    case_types, ct_weights = zip(*scenario.case_types.items(), strict=True)
    districts, d_weights = zip(*scenario.districts.items(), strict=True)
    for index in range(count):
        case_type = rng.choices(case_types, ct_weights)[0]
        district = rng.choices(districts, d_weights)[0]
        pace = scenario.case_type_pace.get(case_type, 1.0)
        t = float(int(next_start()))
        steps, complete = _walk(rng, scenario, t, end, pace, case_type)
        yield SimulatedCase(
            index, case_key(seed, index), case_type, district, tuple(steps), complete
        )


def sorted_starts(rng: random.Random, count: int, start: float, end: float) -> Iterator[float]:
    """`count` uniform times in [start, end) in increasing order, one at a time (O(1) memory).

    The largest of n uniforms is U**(1/n); the next is that times V**(1/(n-1)), and so on: this
    yields the order statistics from the top. Mirroring them (1 - x) gives them from the bottom.
    """
    top = 1.0
    span = end - start
    for remaining in range(count, 0, -1):
        top *= rng.random() ** (1.0 / remaining)
        yield start + (1.0 - top) * span


def stream_cases(
    scenario: Scenario, count: int, start: float, end: float, seed: int = 0
) -> Iterator[SimulatedCase]:
    """Like simulate_cases, but yielded in order of start time and generated on demand."""
    starts = sorted_starts(random.Random(f"starts:{seed}"), count, start, end)
    rng = random.Random(f"cases:{seed}")
    yield from _generate(scenario, count, end, seed, rng, starts.__next__)


def step_event(
    case: SimulatedCase, n: int, chain: Chain, seed: int = 0, **changes: Any
) -> dict[str, Any]:
    """Step `n` of a case as a contract (v1) event; `changes` override fields (corrections)."""
    step = case.steps[n]
    repeat = occurrence_of(case, n)
    event: dict[str, Any] = {
        "schema_version": 1,
        "event_id": f"sim{seed}-{case.index}-{n}",
        "case_key": case.case_key,
        "organisation": chain.milestones[step.milestone].organisation,
        "milestone": step.milestone,
        "occurred_at": iso(step.occurred_at),
        "case_type": case.case_type,
        "district": case.district,
    }
    if step.outcome:
        event["outcome"] = step.outcome
    if repeat is not None:
        event["occurrence"] = repeat
    event.update(changes)
    return event


def occurrence_of(case: SimulatedCase, n: int) -> str | None:
    """The occurrence id of step `n`: None the first time the case reaches its milestone, then
    "2", "3", ... (a repeat, or a loop back)."""
    milestone = case.steps[n].milestone
    times = sum(1 for s in case.steps[:n] if s.milestone == milestone)
    return str(times + 1) if times else None


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat()


def contract_events(
    cases: Iterable[SimulatedCase], chain: Chain, seed: int = 0
) -> Iterator[dict[str, Any]]:
    """The cases' steps as contract (v1) events, in event-time order (sorted in memory)."""
    events = [
        (step.occurred_at, case.index, n, case)
        for case in cases
        for n, step in enumerate(case.steps)
    ]
    events.sort(key=lambda item: item[0])  # stable: ties keep case and step order
    return (step_event(case, n, chain, seed) for _, _, n, case in events)


def truth_record(case: SimulatedCase) -> dict[str, Any]:
    """The ground truth of one case, as written beside the simulator's output."""
    return {
        "case_key": case.case_key,
        "case_type": case.case_type,
        "district": case.district,
        "branch": case.branch,
        "complete": case.complete,
        "milestones": [
            {"milestone": s.milestone, "outcome": s.outcome, "occurred_at": s.occurred_at,
             "occurrence": occurrence_of(case, n)}
            for n, s in enumerate(case.steps)
        ],
    }
