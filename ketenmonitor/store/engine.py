"""Engines for the store and its schema migrations.

    engine = make_engine("sqlite:///ketenmonitor-store.db")     # or postgresql://user@host/db
    upgrade(engine)                                             # Alembic: to the newest revision

SQLite suits one worker and the reports; several workers write to PostgreSQL. A bare
`postgresql://` URL is taken to mean the psycopg (3) driver, the one Ketenmonitor ships with.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from ketenmonitor.store.errors import StoreError

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SUPPORTED_DIALECTS = ("sqlite", "postgresql")


def make_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError(f"not a database URL: {url!r} ({exc})") from None
    dialect = parsed.get_backend_name()
    if dialect not in SUPPORTED_DIALECTS:
        raise StoreError(f"unsupported database {dialect!r}: use sqlite:/// or postgresql://")
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if dialect == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        # A report may read while a worker writes: wait for locks instead of failing at once.
        engine = create_engine(parsed, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(parsed, pool_pre_ping=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
    # With WAL this cannot corrupt the file; only a power cut (not a crash of the process) may
    # lose the last flushes. `ketenmonitor replay` rebuilds the store if that ever matters.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to `revision`; safe to call from several workers at once."""
    config = alembic_config()
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    except SQLAlchemyError as exc:
        raise StoreError(f"migrating the store at {engine.url!r} failed: {exc}") from exc
