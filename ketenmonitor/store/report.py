"""The event-time report of a period, computed from the store.

    report = build_report(engine, chain, parse_period("2026Q3"))
    report.segments   -> [SegmentRow(segment, case_type, completed, p50/p80/p90 seconds, norms)]
    report.stages     -> [StageRow(stage, inflow, outflow, backlog_end, oldest_open_entered_at)]

Definitions (every figure in event time, the period half-open [start, end)):
- a segment is *completed* in the period when its end milestone lies in it; its lead time is end
  minus start; percentiles are nearest-rank (the smallest lead time with at least p% of the
  completed cases at or below it), so every percentile is a lead time that really occurred;
- *share within norm*: completed cases with lead time <= the norm's days, over completed cases;
  norms come from the chain definition (a segment and case type can have several);
- *inflow*/*outflow* of a stage: cases that entered/left it in the period;
- *backlog at the end*: cases that entered before the end and had not left by then;
- *oldest open case*: the earliest entry among that backlog.
Figures are as the store knows them now: a late or corrected event changes past periods.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Engine, func, or_, select

from ketenmonitor.domain.chain import Chain
from ketenmonitor.store.models import Case, CaseSegment, CaseStage
from ketenmonitor.store.periods import Period

PERCENTILES = (50, 80, 90)


@dataclass(frozen=True, slots=True)
class NormShare:
    norm: str
    label: str
    within_days: int
    target: float
    within: int  # completed cases within the norm
    share: float | None  # None when nothing was completed


@dataclass(frozen=True, slots=True)
class SegmentRow:
    segment: str
    label: str
    case_type: str
    completed: int
    percentiles: dict[int, float]  # p -> lead time in seconds
    norms: tuple[NormShare, ...]


@dataclass(frozen=True, slots=True)
class StageRow:
    stage: str
    label: str
    inflow: int
    outflow: int
    backlog_end: int
    oldest_open_entered_at: float | None

    def oldest_open_age_seconds(self, at: float) -> float | None:
        if self.oldest_open_entered_at is None:
            return None
        return at - self.oldest_open_entered_at


@dataclass(frozen=True, slots=True)
class Report:
    period: Period
    chain_source: str
    segments: list[SegmentRow]
    stages: list[StageRow]


def nearest_rank(sorted_values: Sequence[float], p: float) -> float:
    """The p-th percentile (0 < p <= 100) of ascending values, by the nearest-rank method."""
    if not sorted_values:
        raise ValueError("no values")
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def build_report(engine: Engine, chain: Chain, period: Period) -> Report:
    with engine.connect() as conn:
        lead_rows = conn.execute(
            select(CaseSegment.segment, Case.case_type, CaseSegment.lead_time_seconds)
            .join(Case, Case.pseudonym == CaseSegment.pseudonym)
            .where(CaseSegment.completed_at >= period.start, CaseSegment.completed_at < period.end)
        ).all()
        inflow = dict(
            conn.execute(
                select(CaseStage.stage, func.count())
                .where(CaseStage.entered_at >= period.start, CaseStage.entered_at < period.end)
                .group_by(CaseStage.stage)
            ).all()
        )
        outflow = dict(
            conn.execute(
                select(CaseStage.stage, func.count())
                .where(CaseStage.left_at >= period.start, CaseStage.left_at < period.end)
                .group_by(CaseStage.stage)
            ).all()
        )
        backlog = {
            stage: (count, oldest)
            for stage, count, oldest in conn.execute(
                select(CaseStage.stage, func.count(), func.min(CaseStage.entered_at))
                .where(
                    CaseStage.entered_at < period.end,
                    or_(CaseStage.left_at.is_(None), CaseStage.left_at >= period.end),
                )
                .group_by(CaseStage.stage)
            ).all()
        }
    return Report(
        period,
        chain.source,
        _segment_rows(chain, lead_rows),
        [
            StageRow(
                s.id,
                s.label,
                inflow.get(s.id, 0),
                outflow.get(s.id, 0),
                backlog.get(s.id, (0, None))[0],
                backlog.get(s.id, (0, None))[1],
            )
            for s in chain.spec.stages
        ],
    )


def _segment_rows(chain: Chain, lead_rows: Sequence[tuple[str, str, float]]) -> list[SegmentRow]:
    leads: dict[tuple[str, str], list[float]] = defaultdict(list)
    for segment, case_type, lead in lead_rows:
        leads[(segment, case_type)].append(lead)
    rows = []
    for seg in chain.spec.segments:
        for case_type in chain.case_types:
            values = sorted(leads.get((seg.id, case_type), ()))
            norms = tuple(
                NormShare(
                    n.id,
                    n.label,
                    n.within_days,
                    n.target,
                    within := sum(1 for v in values if v <= n.within_seconds),
                    within / len(values) if values else None,
                )
                for n in chain.norms_for(seg.id, case_type)
            )
            if not values and not norms:
                continue
            percentiles = {p: nearest_rank(values, p) for p in PERCENTILES} if values else {}
            rows.append(SegmentRow(seg.id, seg.label, case_type, len(values), percentiles, norms))
    return rows
