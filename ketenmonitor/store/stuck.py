"""The oldest open cases of a stage, for the partner that owns the stage to act on.

    for case in stuck_cases(engine, "court_trial", top=20, at=time.time()):
        case.pseudonym, case.age_seconds, case.last_milestone, case.last_milestone_at, case.dormant

Only pseudonyms leave the store. The partner that holds the HMAC key finds its own case numbers
by pseudonymising them with the same key and matching (docs/store.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, func, or_, select

from ketenmonitor.domain.chain import Chain
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
    # No event for longer than the stage's dormant_after_days before `at` (chain.yaml): the case is
    # dormant (counted apart from the active backlog) until its next event.
    dormant: bool = False


def stuck_cases(engine: Engine, chain: Chain, stage: str, top: int, at: float) -> list[StuckCase]:
    """The `top` cases that waited in `stage` at `at` and had entered it earliest.

    With hindsight: a visit that began at or before `at` and was left after it (or not yet) was
    open at `at`, whatever arrived later. `last_milestone` is the case's latest milestone now.
    """
    if stage not in chain.stage_ids:
        raise UnknownStageError(f"unknown stage {stage!r}; stages: {', '.join(chain.stage_ids)}")
    if top < 1:
        raise ValueError("top must be at least 1")
    query = (
        select(
            CaseStage.pseudonym,
            CaseStage.entered_at,
            Case.last_milestone,
            Case.last_milestone_at,
            Case.case_type,
            Case.district,
        )
        .join(Case, Case.pseudonym == CaseStage.pseudonym)
        .where(
            CaseStage.stage == stage,
            CaseStage.entered_at <= at,
            or_(CaseStage.left_at.is_(None), CaseStage.left_at > at),
        )
        .order_by(CaseStage.entered_at, CaseStage.pseudonym)
        .limit(top)
    )
    limit = chain.fact_plan.dormant_after.get(stage)
    with engine.connect() as conn:
        found = conn.execute(query).all()
        latest: dict[str, float] = {}
        if limit is not None and found:
            # The latest event at or before `at` (later ones were not there yet at `at`).
            latest = dict(
                conn.execute(
                    select(CaseMilestone.pseudonym, func.max(CaseMilestone.occurred_at))
                    .where(
                        CaseMilestone.pseudonym.in_([row[0] for row in found]),
                        CaseMilestone.occurred_at <= at,
                    )
                    .group_by(CaseMilestone.pseudonym)
                ).all()
            )
    return [
        StuckCase(p, stage, entered, at - entered, last, last_at, case_type, district,
                  limit is not None and at - latest.get(p, entered) > limit)
        for p, entered, last, last_at, case_type, district in found
    ]
