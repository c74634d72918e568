"""Fixtures for the case-fact store: the same tests run against SQLite and a real PostgreSQL.

PostgreSQL comes from Debian's postgresql-15 package, started by deploy/postgres/postgres.sh on a
free loopback port for the session (only when a PostgreSQL-parametrized test runs). If it cannot
start, those tests error: never a skip.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from store_helpers import SIM_END, SIM_START

from ketenmonitor.domain.chain import Chain, load_chain
from ketenmonitor.infra.postgres import LocalPostgres
from ketenmonitor.infra.worker_process import free_port
from ketenmonitor.simulator import SimulatedCase, load_scenario, simulate_cases


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[LocalPostgres]:
    # Not under pytest's tmp dir: that is private to root, and the cluster runs as `postgres`.
    base = Path(tempfile.mkdtemp(prefix="ketenmonitor-test-pg-"))
    base.chmod(0o755)
    server = LocalPostgres(port=free_port(), data_dir=base / "data", fsync=False)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty store per test: a SQLite file, or a new database on the test cluster."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    server: LocalPostgres = request.getfixturevalue("postgres_server")
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = f"postgresql://postgres@127.0.0.1:{server.port}/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield server.url_for(name)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture(scope="session")
def chain() -> Chain:
    return load_chain()


@pytest.fixture(scope="session")
def simulated_cases() -> list[SimulatedCase]:
    return simulate_cases(load_scenario(), 2500, SIM_START, SIM_END, seed=17)
