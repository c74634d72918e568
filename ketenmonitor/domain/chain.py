"""The chain definition: partners, milestones, stages, segments and norms, loaded from YAML.

    chain = load_chain()                      # the default chain shipped with Ketenmonitor
    chain = load_chain(Path("my-chain.yaml")) # an operator's own definition
    chain.milestone("om_decision").organisation  -> "om"

Everything the monitor knows about the justice chain comes from here; no milestone, stage or norm is
named in code. Loading validates the cross references (a stage that enters at an unknown milestone,
a norm on an unknown segment, ...) and fails with a `ChainDefinitionError` that says where.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

DEFAULT_CHAIN_FILE = Path(__file__).resolve().parent.parent / "chain.yaml"
CLOSED = "closed"  # pseudo-milestone usable as a segment end: the moment the case was closed
SECONDS_PER_DAY = 86_400
SECONDS_PER_HOUR = 3_600
IDENTIFIER = r"^[a-z][a-z0-9_]*$"
# Events before this moment are implausible unless the chain file says otherwise
# (`earliest_event_time`).
DEFAULT_EARLIEST_EVENT_TIME = datetime(2000, 1, 1, tzinfo=UTC)


class ChainDefinitionError(ValueError):
    """The chain definition is invalid; the message names the file and the offending entry."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MilestoneSpec(_Model):
    id: str = Field(pattern=IDENTIFIER)
    label: str
    outcomes: dict[str, str] = Field(default_factory=dict)


class PartnerSpec(_Model):
    id: str = Field(pattern=IDENTIFIER)
    label: str
    milestones: list[MilestoneSpec] = Field(min_length=1)


class ClosureSpec(_Model):
    milestone: str
    outcomes: list[str] = Field(min_length=1)
    label: str


class StageSpec(_Model):
    id: str = Field(pattern=IDENTIFIER)
    label: str
    enter: list[str] = Field(min_length=1)
    exit: list[str] = Field(min_length=1)
    # A case in this stage with no event for longer than this is dormant, not active backlog.
    dormant_after_days: float | None = Field(default=None, gt=0)


class SegmentSpec(_Model):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    id: str = Field(pattern=IDENTIFIER)
    label: str
    start: str = Field(alias="from")
    end: str = Field(alias="to")
    kind: Literal["partner", "handover", "chain"]


class NormSpec(_Model):
    id: str = Field(pattern=IDENTIFIER)
    label: str
    segment: str
    case_types: list[str] | None = None  # None: every case type
    within_days: int = Field(gt=0)
    target: float = Field(gt=0, le=1)
    interim_target: float | None = Field(default=None, gt=0, le=1)

    @property
    def within_seconds(self) -> int:
        return self.within_days * SECONDS_PER_DAY


class ChainSpec(_Model):
    version: Literal[1]
    partners: list[PartnerSpec] = Field(min_length=1)
    case_types: dict[str, str] = Field(min_length=1)
    districts: dict[str, str] = Field(min_length=1)
    closures: list[ClosureSpec]
    stages: list[StageSpec]
    segments: list[SegmentSpec]
    norms: list[NormSpec]
    backlog_age_bands_days: list[int] = Field(min_length=1)
    lead_time_buckets_days: list[int] = Field(default_factory=list)
    # Events that happened before this moment are rejected as implausible (with a UTC offset, e.g.
    # "2000-01-01T00:00:00+01:00" to accept local midnight of 1 January 2000 in the Netherlands).
    earliest_event_time: AwareDatetime = DEFAULT_EARLIEST_EVENT_TIME

    @model_validator(mode="after")
    def _check_references(self) -> ChainSpec:
        problems: list[str] = []
        milestones: dict[str, MilestoneSpec] = {}
        for partner in self.partners:
            for m in partner.milestones:
                if m.id in milestones:
                    problems.append(f"milestone {m.id!r} is defined twice")
                milestones[m.id] = m
        _unique("partner", [p.id for p in self.partners], problems)
        _unique("stage", [s.id for s in self.stages], problems)
        _unique("segment", [s.id for s in self.segments], problems)
        _unique("norm", [n.id for n in self.norms], problems)
        for c in self.closures:
            if c.milestone not in milestones:
                problems.append(f"closure names unknown milestone {c.milestone!r}")
            else:
                unknown = set(c.outcomes) - set(milestones[c.milestone].outcomes)
                if unknown:
                    problems.append(
                        f"closure on {c.milestone!r} names unknown outcomes {sorted(unknown)}"
                    )
        for s in self.stages:
            for named in (*s.enter, *s.exit):
                if named not in milestones:
                    problems.append(f"stage {s.id!r} names unknown milestone {named!r}")
        for seg in self.segments:
            if seg.start not in milestones:
                problems.append(f"segment {seg.id!r} starts at unknown milestone {seg.start!r}")
            if seg.end != CLOSED and seg.end not in milestones:
                problems.append(f"segment {seg.id!r} ends at unknown milestone {seg.end!r}")
        segment_ids = {s.id for s in self.segments}
        for n in self.norms:
            if n.segment not in segment_ids:
                problems.append(f"norm {n.id!r} names unknown segment {n.segment!r}")
            for ct in n.case_types or []:
                if ct not in self.case_types:
                    problems.append(f"norm {n.id!r} names unknown case type {ct!r}")
        if sorted(set(self.backlog_age_bands_days)) != self.backlog_age_bands_days:
            problems.append("backlog_age_bands_days must be strictly increasing")
        if problems:
            raise ValueError("; ".join(problems))
        return self


def _unique(kind: str, ids: list[str], problems: list[str]) -> None:
    seen: set[str] = set()
    for i in ids:
        if i in seen:
            problems.append(f"{kind} {i!r} is defined twice")
        seen.add(i)


# (segment id, start milestone, end milestone or None for the closing of the case)
SegmentPlan = tuple[str, str, str | None]


@dataclass(frozen=True, slots=True)
class FactPlan:
    """The chain's stages and segments as plain look-ups by milestone, for the domain core.

    Computing a case's facts is the core's inner loop: a walk over the case's milestone
    occurrences in event time (ketenmonitor/domain/case.py). At each occurrence the walk asks which
    stages the milestone leaves and which it enters, and at the end which segments start at the
    milestones reached: all precomputed here, no look-ups in the pydantic specs on that path.

    A milestone leaves a stage when it is one of the stage's exits, or when it lies outside the
    stage's span of chain ranks (below its first entry: the case went back to an earlier partner;
    above its last exit: the exit was missed and the case moved on). Entries that are not exits
    never leave their own stage; other milestones within the span (a hearing within the court
    stage) keep the case in it. A milestone that both enters and exits a stage makes a visit of no
    duration.
    """

    rank: dict[str, int]  # milestone -> position in chain order (breaks ties in event time)
    closures: dict[str, frozenset[str]]  # closing milestone -> outcomes that close the case
    stage_ids: tuple[str, ...]  # in chain-file order
    enters: dict[str, tuple[str, ...]]  # milestone -> stages it enters
    leaves: dict[str, frozenset[str]]  # milestone -> stages it leaves (see above)
    segments_from: dict[str, tuple[SegmentPlan, ...]]  # milestone -> segments starting there
    # milestone -> segments that start or end there
    segments_touched_by: dict[str, tuple[SegmentPlan, ...]]
    segments_to_closed: tuple[SegmentPlan, ...]  # segments that end when the case is closed
    dormant_after: dict[str, float]  # stage -> seconds without an event before it is dormant


def _fact_plan(
    spec: ChainSpec, rank: dict[str, int], closures: dict[str, frozenset[str]]
) -> FactPlan:
    segment_plans = [
        (seg.id, seg.start, None if seg.end == CLOSED else seg.end) for seg in spec.segments
    ]
    leaves: dict[str, set[str]] = {m: set() for m in rank}
    for s in spec.stages:
        low = min(rank[m] for m in s.enter)
        high = max(rank[m] for m in s.exit)
        for m, r in rank.items():
            if m in s.exit or (m not in s.enter and (r < low or r > high)):
                leaves[m].add(s.id)
    return FactPlan(
        rank,
        closures,
        tuple(s.id for s in spec.stages),
        {m: tuple(s.id for s in spec.stages if m in s.enter) for m in rank},
        {m: frozenset(stages) for m, stages in leaves.items()},
        {m: tuple(p for p in segment_plans if p[1] == m) for m in rank},
        {m: tuple(p for p in segment_plans if m in (p[1], p[2])) for m in rank},
        tuple(p for p in segment_plans if p[2] is None),
        {
            s.id: s.dormant_after_days * SECONDS_PER_DAY
            for s in spec.stages
            if s.dormant_after_days is not None
        },
    )


@dataclass(frozen=True, slots=True)
class Milestone:
    id: str
    organisation: str
    rank: int  # position in chain order, 0 = first
    outcomes: frozenset[str]


class Chain:
    """A validated chain definition with the look-ups the domain core needs on its hot path."""

    def __init__(self, spec: ChainSpec, source: str = "<memory>") -> None:
        self.spec = spec
        self.source = source
        milestones: dict[str, Milestone] = {}
        for partner in spec.partners:
            for m in partner.milestones:
                milestones[m.id] = Milestone(
                    m.id, partner.id, len(milestones), frozenset(m.outcomes)
                )
        self.milestones: Mapping[str, Milestone] = milestones
        self.closures: dict[str, frozenset[str]] = {
            c.milestone: frozenset(c.outcomes) for c in spec.closures
        }
        self.stage_organisation: dict[str, str] = {
            s.id: milestones[s.enter[0]].organisation for s in spec.stages
        }

        self.fact_plan = _fact_plan(
            spec, {m.id: m.rank for m in milestones.values()}, self.closures
        )
        self.earliest_event_seconds: float = spec.earliest_event_time.timestamp()

    # -- look-ups ---------------------------------------------------------------------------
    def milestone(self, milestone_id: str) -> Milestone:
        return self.milestones[milestone_id]

    @property
    def partner_ids(self) -> list[str]:
        return [p.id for p in self.spec.partners]

    @property
    def stage_ids(self) -> list[str]:
        return [s.id for s in self.spec.stages]

    @property
    def segment_ids(self) -> list[str]:
        return [s.id for s in self.spec.segments]

    @property
    def case_types(self) -> list[str]:
        return list(self.spec.case_types)

    @property
    def districts(self) -> list[str]:
        return list(self.spec.districts)

    def outcomes_of_closures(self) -> list[str]:
        return sorted({o for c in self.spec.closures for o in c.outcomes})

    def norms_for(self, segment: str, case_type: str) -> list[NormSpec]:
        return [
            n
            for n in self.spec.norms
            if n.segment == segment and (n.case_types is None or case_type in n.case_types)
        ]

    @cached_property
    def lead_time_buckets_seconds(self) -> tuple[float, ...]:
        """Histogram upper bounds: every norm limit exactly, plus the configured ladder."""
        days = set(self.spec.lead_time_buckets_days) | {n.within_days for n in self.spec.norms}
        return tuple(float(d * SECONDS_PER_DAY) for d in sorted(days))

    @cached_property
    def backlog_age_bands(self) -> tuple[tuple[str, float], ...]:
        """(band label, upper bound in seconds) pairs; the last band's bound is infinity."""
        bands: list[tuple[str, float]] = []
        lower = 0
        for upper in self.spec.backlog_age_bands_days:
            bands.append((f"{lower}-{upper}d", float(upper * SECONDS_PER_DAY)))
            lower = upper
        bands.append((f">{lower}d", float("inf")))
        return tuple(bands)


def load_chain(path: Path | str | None = None) -> Chain:
    """Load and validate a chain definition ($KETENMONITOR_CHAIN_FILE or the shipped one)."""
    if path is None:
        path = os.environ.get("KETENMONITOR_CHAIN_FILE") or DEFAULT_CHAIN_FILE
    path = Path(path)
    try:
        raw: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ChainDefinitionError(f"{path}: cannot read chain definition: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ChainDefinitionError(f"{path}: not valid YAML: {exc}") from exc
    return chain_from_mapping(raw, source=str(path))


def chain_from_mapping(raw: Any, source: str = "<memory>") -> Chain:
    try:
        spec = ChainSpec.model_validate(raw)
    except ValidationError as exc:
        lines = [
            f"  {'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in exc.errors()
        ]
        raise ChainDefinitionError(
            f"{source}: invalid chain definition:\n" + "\n".join(lines)
        ) from None
    return Chain(spec, source)
