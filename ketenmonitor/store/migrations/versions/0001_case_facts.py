"""Case facts: cases, milestones, stages and segments, keyed by pseudonym.

Revision ID: 0001
Revises:
Create Date: 2026-11-28

Plain SQLAlchemy types only (no import of the models): a migration must keep describing the
schema of its own revision when the models move on.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID = sa.String(length=64)
TIME = sa.DateTime(timezone=True)


def _case_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["pseudonym"], ["cases.pseudonym"], name=op.f(f"fk_{table}_pseudonym_cases"),
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.create_table(
        "cases",
        sa.Column("pseudonym", ID, nullable=False),
        sa.Column("case_type", ID, nullable=False),
        sa.Column("district", ID, nullable=False),
        sa.Column("first_event_at", TIME, nullable=False),
        sa.Column("last_milestone", ID, nullable=False),
        sa.Column("last_milestone_at", TIME, nullable=False),
        sa.Column("current_stage", ID, nullable=True),
        sa.Column("outcome", ID, nullable=True),
        sa.Column("closed_at", TIME, nullable=True),
        sa.PrimaryKeyConstraint("pseudonym", name=op.f("pk_cases")),
    )
    op.create_index(op.f("ix_cases_current_stage"), "cases", ["current_stage"])

    op.create_table(
        "case_milestones",
        sa.Column("pseudonym", ID, nullable=False),
        sa.Column("milestone", ID, nullable=False),
        sa.Column("occurred_at", TIME, nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("outcome", ID, nullable=True),
        sa.Column("revision", sa.Integer(), nullable=False),
        _case_fk("case_milestones"),
        sa.PrimaryKeyConstraint("pseudonym", "milestone", name=op.f("pk_case_milestones")),
    )
    op.create_index(
        op.f("ix_case_milestones_milestone_occurred_at"),
        "case_milestones",
        ["milestone", "occurred_at"],
    )

    op.create_table(
        "case_stages",
        sa.Column("pseudonym", ID, nullable=False),
        sa.Column("stage", ID, nullable=False),
        sa.Column("entered_at", TIME, nullable=False),
        sa.Column("left_at", TIME, nullable=True),
        _case_fk("case_stages"),
        sa.PrimaryKeyConstraint("pseudonym", "stage", name=op.f("pk_case_stages")),
    )
    op.create_index(op.f("ix_case_stages_stage_entered_at"), "case_stages", ["stage", "entered_at"])
    op.create_index(op.f("ix_case_stages_stage_left_at"), "case_stages", ["stage", "left_at"])

    op.create_table(
        "case_segments",
        sa.Column("pseudonym", ID, nullable=False),
        sa.Column("segment", ID, nullable=False),
        sa.Column("started_at", TIME, nullable=False),
        sa.Column("completed_at", TIME, nullable=False),
        sa.Column("lead_time_seconds", sa.Float(), nullable=False),
        _case_fk("case_segments"),
        sa.PrimaryKeyConstraint("pseudonym", "segment", name=op.f("pk_case_segments")),
    )
    op.create_index(
        op.f("ix_case_segments_segment_completed_at"), "case_segments", ["segment", "completed_at"]
    )


def downgrade() -> None:
    op.drop_table("case_segments")
    op.drop_table("case_stages")
    op.drop_table("case_milestones")
    op.drop_table("cases")
