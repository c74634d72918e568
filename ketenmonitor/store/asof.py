"""Work in progress at a moment, with hindsight, from the store.

    open_cases_at(engine, at)           -> cases open at `at`
    open_visits_at(engine, at)          -> {stage: cases waiting in it at `at`}

With hindsight (as process-mining tools compute work in progress): a case is open at `at` when its
first event is at or before `at` and its last event after it; a stage visit is open when it was
entered at or before `at` and left after it (or not yet). Everything the store knows now counts,
including events that arrived after `at`. For the figures as the monitor knew them at `at` (no
hindsight), replay the partner topics up to that moment into a store of its own
(`ketenmonitor replay --from-topics --known-at`) and ask that store (docs/store.md).
"""

from __future__ import annotations

from sqlalchemy import Engine, func, or_, select

from ketenmonitor.store.models import Case, CaseStage


def open_cases_at(engine: Engine, at: float) -> int:
    query = select(func.count()).where(Case.first_event_at <= at, Case.last_milestone_at > at)
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def open_visits_at(engine: Engine, at: float) -> dict[str, int]:
    query = (
        select(CaseStage.stage, func.count())
        .where(
            CaseStage.entered_at <= at,
            or_(CaseStage.left_at.is_(None), CaseStage.left_at > at),
        )
        .group_by(CaseStage.stage)
    )
    with engine.connect() as conn:
        return {stage: int(n) for stage, n in conn.execute(query).all()}
