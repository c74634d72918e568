"""Alembic environment of the case-fact store.

Run through `ketenmonitor store upgrade` (or `ketenmonitor.store.upgrade(engine)`), which hands
over an open connection in `config.attributes["connection"]`. Offline mode (`--sql`) renders
the DDL for a DBA to review.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, text

from ketenmonitor.store.models import Base

# Any constant will do: it keeps two workers that start together from migrating at the same time.
_MIGRATION_LOCK = 0x6B6D_0007

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from ketenmonitor.store.engine import make_engine

    engine = make_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.begin() as conn:
        _run(conn)
    engine.dispose()


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
