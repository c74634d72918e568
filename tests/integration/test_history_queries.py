"""Every SQL query of the history dashboard runs on a real PostgreSQL store and returns data.

A simulated log is replayed into the case-fact store (the same code path as the live worker) on a
PostgreSQL cluster from Debian's package; each panel query of dashboards/json/historie.json, with
Grafana's macros ($__timeFilter, $__timeFrom, $__timeTo) and variables substituted as Grafana
does, must return rows with values. PostgreSQL that cannot start fails the test.

Run: .venv/bin/pytest tests/integration/test_history_queries.py
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from ketenmonitor.dashboards.build import JSON_DIR
from ketenmonitor.dashboards.panels import ALL

from ketenmonitor.domain.chain import load_chain
from ketenmonitor.infra.postgres import LocalPostgres
from ketenmonitor.infra.worker_process import free_port
from ketenmonitor.simulator import contract_events, load_scenario, simulate_cases
from ketenmonitor.store.replay import Replayer
from ketenmonitor.store.sink import CaseFactSink

START = datetime(2023, 1, 1, tzinfo=UTC)
END = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def store() -> Iterator[str]:
    """A PostgreSQL store holding two years of simulated history; yields a psycopg URL."""
    base = Path(tempfile.mkdtemp(prefix="ketenmonitor-history-pg-"))
    base.chmod(0o755)  # the cluster runs as the `postgres` user, which must reach it
    server = LocalPostgres(port=free_port(), data_dir=base / "data")
    server.start()
    try:
        chain = load_chain()
        sink = CaseFactSink.from_url(server.url, chain)
        sink.start()
        replayer = Replayer(chain, b"history-test-key-0123456789", 6, sink)
        cases = simulate_cases(load_scenario(), 1500, START.timestamp(), END.timestamp(), seed=4)
        for event in contract_events(cases, chain, seed=4):
            replayer.feed(json.dumps(event).encode(), event["organisation"])
        replayer.finish()
        sink.close()
        yield f"postgresql://postgres@127.0.0.1:{server.port}/{server.database}"
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


def grafana_sql(sql: str, values: dict[str, str]) -> str:
    """Expand the macros of Grafana's PostgreSQL data source and the dashboard variables."""
    start, end = (f"'{t.strftime('%Y-%m-%dT%H:%M:%SZ')}'" for t in (START, END))
    sql = re.sub(r"\$__timeFilter\(([^)]+)\)", rf"\1 BETWEEN {start} AND {end}", sql)
    sql = sql.replace("$__timeFrom()", start).replace("$__timeTo()", end)
    for name, value in values.items():
        sql = sql.replace(f"${name}", value)
    assert "$" not in sql, sql
    return sql


def variable_settings(board: dict[str, Any]) -> list[dict[str, str]]:
    """The defaults, and with every 'All' variable set to one concrete value instead."""
    defaults, concrete = {}, {}
    for v in board["templating"]["list"]:
        if v["type"] == "datasource":
            continue  # the panels' data source, not part of any SQL
        default = v["current"]["value"]
        defaults[v["name"]] = v["allValue"] if default == ALL else default
        concrete[v["name"]] = next(o["value"] for o in v["options"] if o["value"] != ALL)
    return [defaults, concrete]


def test_every_history_query_returns_rows_from_a_real_store(store: str) -> None:
    board = json.loads((JSON_DIR / "historie.json").read_text())
    checked, empty = 0, []
    with psycopg.connect(store) as conn:
        for values in variable_settings(board):
            for panel in board["panels"]:
                for target in panel["targets"]:
                    rows = conn.execute(grafana_sql(target["rawSql"], values)).fetchall()
                    checked += 1
                    with_values = [r for r in rows if all(c is not None for c in r)]
                    if not with_values:
                        empty.append(f"{panel['title']} {values}")
                    elif target["format"] == "time_series":
                        assert all(isinstance(r[0], datetime) for r in rows), panel["title"]
    assert checked >= 2 * len(board["panels"])
    assert not empty, "queries without rows: " + "; ".join(empty)
