"""SQLAlchemy models of case facts: one row per case, per milestone, per stage and per segment.

    select(CaseSegment.lead_time_seconds).where(CaseSegment.segment == "om_intake_to_decision")

Every row is keyed by the case's pseudonym plus the milestone and occurrence, the stage and the
visit's entry time, or the segment id, so writing the facts of a case again is an upsert that
changes nothing. Times are event times, stored as
`timestamp with time zone` (UTC) and handed to Python as POSIX seconds, the unit of the domain core.
Ids of milestones, stages and segments come from the chain definition: no enum is fixed here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, Float, ForeignKey, Index, Integer, MetaData, String
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

ID = String(64)
PSEUDONYM = String(64)


class EventTime(TypeDecorator[float]):
    """POSIX seconds in Python, `timestamp with time zone` (UTC) in the database.

    SQLite keeps no offset, so the value is written as naive UTC there and read back as UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        moment = datetime.fromtimestamp(float(value), UTC)
        return moment.replace(tzinfo=None) if dialect.name == "sqlite" else moment

    def process_result_value(self, value: Any, dialect: Dialect) -> float | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return float(value.timestamp())


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "pk": "pk_%(table_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        }
    )


class Case(Base):
    """A case as its milestones describe it now."""

    __tablename__ = "cases"

    pseudonym: Mapped[str] = mapped_column(PSEUDONYM, primary_key=True)
    case_type: Mapped[str] = mapped_column(ID)
    district: Mapped[str] = mapped_column(ID)
    first_event_at: Mapped[float] = mapped_column(EventTime)
    last_milestone: Mapped[str] = mapped_column(ID)
    last_milestone_at: Mapped[float] = mapped_column(EventTime)
    current_stage: Mapped[str | None] = mapped_column(ID, index=True)
    outcome: Mapped[str | None] = mapped_column(ID)  # the closing outcome, once closed
    closed_at: Mapped[float | None] = mapped_column(EventTime)


class CaseMilestone(Base):
    """An occurrence of a milestone the case reached (retracted occurrences have no row)."""

    __tablename__ = "case_milestones"
    __table_args__ = (Index(None, "milestone", "occurred_at"),)

    pseudonym: Mapped[str] = mapped_column(
        PSEUDONYM, ForeignKey("cases.pseudonym", ondelete="CASCADE"), primary_key=True
    )
    milestone: Mapped[str] = mapped_column(ID, primary_key=True)
    occurred_at: Mapped[float] = mapped_column(EventTime)
    event_id: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str | None] = mapped_column(ID)
    revision: Mapped[int] = mapped_column(Integer)
    # The occurrence id ('' for the milestone's default occurrence): a case may reach a milestone
    # more than once (an adjourned hearing held again, an instalment). Last, as migration 0002
    # added it.
    occurrence: Mapped[str] = mapped_column(ID, primary_key=True, server_default="")


class CaseStage(Base):
    """A visit of the case to a stage; `left_at` is None while the case waits in it.

    A case that comes back to a stage (a loop back to an earlier partner) has a row per visit."""

    __tablename__ = "case_stages"
    __table_args__ = (Index(None, "stage", "entered_at"), Index(None, "stage", "left_at"))

    pseudonym: Mapped[str] = mapped_column(
        PSEUDONYM, ForeignKey("cases.pseudonym", ondelete="CASCADE"), primary_key=True
    )
    stage: Mapped[str] = mapped_column(ID, primary_key=True)
    entered_at: Mapped[float] = mapped_column(EventTime, primary_key=True)
    left_at: Mapped[float | None] = mapped_column(EventTime)


class CaseSegment(Base):
    """A completed lead-time segment of the case."""

    __tablename__ = "case_segments"
    __table_args__ = (Index(None, "segment", "completed_at"),)

    pseudonym: Mapped[str] = mapped_column(
        PSEUDONYM, ForeignKey("cases.pseudonym", ondelete="CASCADE"), primary_key=True
    )
    segment: Mapped[str] = mapped_column(ID, primary_key=True)
    started_at: Mapped[float] = mapped_column(EventTime)
    completed_at: Mapped[float] = mapped_column(EventTime)
    lead_time_seconds: Mapped[float] = mapped_column(Float)


# (table, names of its key columns next to the pseudonym), in write order (parents first).
CHILD_TABLES: tuple[tuple[Any, tuple[str, ...]], ...] = (
    (CaseMilestone.__table__, ("milestone", "occurrence")),
    (CaseStage.__table__, ("stage", "entered_at")),
    (CaseSegment.__table__, ("segment",)),
)
