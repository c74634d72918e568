"""The oldest open cases of a stage, for the partner that owns the stage to act on.

    for case in stuck_cases(engine, chain, "court_trial", top=20, at=time.time()):
        case.pseudonym, case.age_seconds, case.last_milestone, case.last_milestone_at, case.dormant
    stuck_cases(engine, chain, None, 20, at, organisation="om", dormant_only=True)
        # the dormant cases of every stage the OM owns: its part of the per-partner list

Only pseudonyms leave the store. The partner that holds the HMAC key finds its own case numbers
by pseudonymising them with the same key and matching (docs/store.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, and_, false, func, or_, select

from ketenmonitor.domain.chain import SECONDS_PER_HOUR, Chain
from ketenmonitor.domain.flow import is_dormant
from ketenmonitor.store.models import Case, CaseMilestone, CaseStage


class UnknownStageError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class StuckCase:
    pseudonym: str
    stage: str
    entered_at: float
    age_seconds: float
    last_milestone: str
    last_milestone_at: float
    case_type: str
    district: str
    # No event for longer than the stage's dormant_after_days before `at` (chain.yaml; from the
    # start of the hour of the latest event, as the live gauge counts): the case is dormant
    # (counted apart from the active backlog) until its next event.
    dormant: bool = False


def stuck_cases(
    engine: Engine,
    chain: Chain,
    stage: str | None,
    top: int,
    at: float,
    *,
    organisation: str | None = None,
    dormant_only: bool = False,
) -> list[StuckCase]:
    """The `top` cases that waited in `stage` (or in any stage `organisation` owns) at `at` and
    had entered it earliest; with `dormant_only`, only the dormant ones: the partner's list of
    cases to wake up or close.

    With hindsight: a visit that began at or before `at` and was left after it (or not yet) was
    open at `at`, whatever arrived later. `last_milestone` is the case's latest milestone at `at`
    (in event time; chain rank breaks a tie), not a later one.
    Dormancy is that of the live gauge (domain/flow.is_dormant): the latest event at or before
    `at`, from the start of its hour, lies more than the stage's limit before `at`.
    """
    stages = _stages(chain, stage, organisation)
    if top < 1:
        raise ValueError("top must be at least 1")
    limits = {s: chain.fact_plan.dormant_after[s] for s in stages
              if s in chain.fact_plan.dormant_after}
    if dormant_only:
        stages = [s for s in stages if s in limits]
    # The latest event at or before `at` (later ones were not there yet at `at`).
    latest = (
        select(CaseMilestone.pseudonym, func.max(CaseMilestone.occurred_at).label("last_at"))
        .where(CaseMilestone.occurred_at <= at)
        .group_by(CaseMilestone.pseudonym)
        .subquery()
    )
    query = (
        select(
            CaseStage.pseudonym,
            CaseStage.stage,
            CaseStage.entered_at,
            Case.last_milestone,
            Case.last_milestone_at,
            Case.case_type,
            Case.district,
            latest.c.last_at,
        )
        .join(Case, Case.pseudonym == CaseStage.pseudonym)
        .join(latest, latest.c.pseudonym == CaseStage.pseudonym, isouter=True)
        .where(
            CaseStage.stage.in_(stages),
            CaseStage.entered_at <= at,
            or_(CaseStage.left_at.is_(None), CaseStage.left_at > at),
        )
        .order_by(CaseStage.entered_at, CaseStage.pseudonym, CaseStage.stage)
        .limit(top)
    )
    if dormant_only:
        # hour_of(last) < at - limit  <=>  last < (at - limit) rounded up to a whole hour
        query = query.where(
            or_(
                *(
                    and_(CaseStage.stage == s, latest.c.last_at < _ceil_hour(at - limits[s]))
                    for s in stages
                ),
                false(),
            )
        )
    with engine.connect() as conn:
        found = conn.execute(query).all()
        later = {row[0] for row in found if row[4] > at}  # latest milestone after `at`
        then = _latest_milestones(conn, chain, later, at) if later else {}
    return [
        StuckCase(p, s, entered, at - entered, *then.get(p, (last, last_at)), case_type,
                  district,
                  is_dormant(limits.get(s), entered if latest_at is None else latest_at, at))
        for p, s, entered, last, last_at, case_type, district, latest_at in found
    ]


def _latest_milestones(
    conn: Connection, chain: Chain, pseudonyms: set[str], at: float
) -> dict[str, tuple[str, float]]:
    """Per case, its latest milestone at or before `at` and when: (occurred_at, rank) max."""
    rank = chain.fact_plan.rank
    rows = conn.execute(
        select(CaseMilestone.pseudonym, CaseMilestone.milestone, CaseMilestone.occurred_at)
        .where(CaseMilestone.pseudonym.in_(sorted(pseudonyms)), CaseMilestone.occurred_at <= at)
    ).all()
    latest: dict[str, tuple[str, float]] = {}
    for pseudonym, milestone, occurred_at in rows:
        best = latest.get(pseudonym)
        if best is None or (occurred_at, rank[milestone]) > (best[1], rank[best[0]]):
            latest[pseudonym] = (milestone, occurred_at)
    return latest


def _stages(chain: Chain, stage: str | None, organisation: str | None) -> list[str]:
    if (stage is None) == (organisation is None):
        raise ValueError("name either a stage or an organisation")
    if stage is not None:
        if stage not in chain.stage_ids:
            raise UnknownStageError(
                f"unknown stage {stage!r}; stages: {', '.join(chain.stage_ids)}"
            )
        return [stage]
    owned = [s for s in chain.stage_ids if chain.stage_organisation[s] == organisation]
    if not owned:
        owners = sorted(set(chain.stage_organisation.values()))
        raise UnknownStageError(
            f"organisation {organisation!r} owns no stage; owners: {', '.join(owners)}"
        )
    return owned


def _ceil_hour(t: float) -> float:
    return math.ceil(t / SECONDS_PER_HOUR) * SECONDS_PER_HOUR
