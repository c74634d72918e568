"""deploy/postgres/grafana-reader.sql on a real PostgreSQL: Grafana's login reads, never writes.

The script runs as docker-compose's init step runs it (psql, as a super user, before the store
exists); then the workers' owner login creates the store with the real migrations
(`ketenmonitor store upgrade`). The reader can read every table the migrations made, and can
neither write, nor create, nor leave read-only mode. (The test cluster trusts loopback logins, so
passwords are not checked here; compose's PostgreSQL checks them.)

Run: .venv/bin/pytest tests/integration/store/test_grafana_reader.py
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from ketenmonitor.infra.postgres import LocalPostgres

REPO = Path(__file__).resolve().parents[3]
SCRIPT = REPO / "deploy" / "postgres" / "grafana-reader.sql"
pytestmark = pytest.mark.integration


def psql_script(server: LocalPostgres, database: str, owner: str, reader: str) -> None:
    psql = shutil.which("psql")
    assert psql, "psql is missing: apt-get install -y postgresql-client"
    result = subprocess.run(
        [psql, "-X", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(server.port),
         "-U", "postgres", "-d", database, "-v", f"owner={owner}", "-v", f"reader={reader}",
         "-v", "reader_password=reader-password-0123456789", "-f", str(SCRIPT)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture
def store(postgres_server: LocalPostgres) -> Iterator[tuple[str, str]]:
    """(url of the owner, url of the reader) of a fresh store made as in docker-compose."""
    run = uuid.uuid4().hex[:8]
    database, owner, reader = f"g_{run}", f"owner_{run}", f"reader_{run}"
    admin = f"postgresql://postgres@127.0.0.1:{postgres_server.port}/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {owner} LOGIN")
        conn.execute(f"CREATE DATABASE {database} OWNER {owner}")
    psql_script(postgres_server, database, owner, reader)
    psql_script(postgres_server, database, owner, reader)  # idempotent
    owner_url = postgres_server.url_for(database).replace("postgres@", f"{owner}@")
    result = subprocess.run(
        [sys.executable, "-m", "ketenmonitor.cli", "store", "upgrade"],
        env={**os.environ, "KETENMONITOR_STORE_URL": owner_url},
        cwd=REPO, capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    yield owner_url, owner_url.replace(f"{owner}@", f"{reader}@")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE {database} WITH (FORCE)")
        conn.execute(f"DROP ROLE {reader}")
        conn.execute(f"DROP ROLE {owner}")


def plain(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def test_the_reader_reads_every_store_table(store: tuple[str, str]) -> None:
    owner_url, reader_url = store
    with psycopg.connect(plain(owner_url)) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        )]
    assert len(tables) >= 3, tables  # the migrations made the store
    with psycopg.connect(plain(reader_url)) as conn:
        assert conn.execute("SHOW default_transaction_read_only").fetchone() == ("on",)
        for table in tables:
            conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()


def test_the_reader_can_neither_write_nor_create(store: tuple[str, str]) -> None:
    owner_url, reader_url = store
    with psycopg.connect(plain(owner_url)) as conn:
        table = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1 LIMIT 1"
        ).fetchone()[0]
    for statement in (
        f'DELETE FROM "{table}"',
        "CREATE TABLE grafana_was_here (x int)",
    ):
        with psycopg.connect(plain(reader_url)) as conn, pytest.raises(psycopg.Error):
            conn.execute(statement)
    # Leaving read-only mode does not help: the grants stop it too.
    with psycopg.connect(plain(reader_url)) as conn:
        conn.execute("SET default_transaction_read_only = off")
        conn.commit()
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f'DELETE FROM "{table}"')
