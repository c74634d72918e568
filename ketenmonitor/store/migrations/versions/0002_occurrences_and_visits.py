"""Occurrences and stage visits: a milestone row per occurrence, a stage row per visit.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29

A case may reach a milestone more than once (an adjourned hearing, an instalment) and visit a
stage more than once (a case back at the OM after an objection). `case_milestones` gains the
`occurrence` id ('' for the default occurrence, which is what every existing row is) in its key;
`case_stages` is keyed by the visit's entry time. Existing rows stay valid as they are.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # batch mode: plain ALTERs on PostgreSQL, a copy of the table on SQLite (which cannot change
    # a primary key in place).
    with op.batch_alter_table("case_milestones", recreate="auto") as batch:
        batch.add_column(
            sa.Column("occurrence", sa.String(length=64), nullable=False, server_default="")
        )
        batch.drop_constraint("pk_case_milestones", type_="primary")
        batch.create_primary_key(
            "pk_case_milestones", ["pseudonym", "milestone", "occurrence"]
        )
    with op.batch_alter_table("case_stages", recreate="auto") as batch:
        batch.drop_constraint("pk_case_stages", type_="primary")
        batch.create_primary_key("pk_case_stages", ["pseudonym", "stage", "entered_at"])


def downgrade() -> None:
    # Keeps the first occurrence of each milestone and the first visit of each stage.
    op.execute(
        "DELETE FROM case_milestones WHERE occurrence <> ''"
    )
    op.execute(
        "DELETE FROM case_stages WHERE entered_at > (SELECT MIN(s.entered_at) FROM case_stages s"
        " WHERE s.pseudonym = case_stages.pseudonym AND s.stage = case_stages.stage)"
    )
    with op.batch_alter_table("case_stages", recreate="auto") as batch:
        batch.drop_constraint("pk_case_stages", type_="primary")
        batch.create_primary_key("pk_case_stages", ["pseudonym", "stage"])
    with op.batch_alter_table("case_milestones", recreate="auto") as batch:
        batch.drop_constraint("pk_case_milestones", type_="primary")
        batch.create_primary_key("pk_case_milestones", ["pseudonym", "milestone"])
        batch.drop_column("occurrence")
