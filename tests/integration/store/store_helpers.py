"""Helpers shared by the store tests: the simulated log and a dump of every row."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from ketenmonitor.domain.chain import Chain
from ketenmonitor.simulator import SimulatedCase, contract_events
from ketenmonitor.store.models import CHILD_TABLES, Case

# 2024-01-01 to 2025-07-02 UTC: in the past, so the contract accepts every event time.
SIM_START = 1704067200.0
SIM_END = 1719792000.0 + 366 * 86400
TEST_SECRET = b"store-test-pseudonym-key-0123456789"


def write_log(cases: list[SimulatedCase], chain: Chain, path: Path, seed: int = 17) -> Path:
    with path.open("w", encoding="utf-8") as out:
        for event in contract_events(cases, chain, seed=seed):
            out.write(json.dumps(event, separators=(",", ":")) + "\n")
    return path


def dump(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the store, in key order."""
    tables = [(Case.__table__, ()), *CHILD_TABLES]
    out = {}
    with engine.connect() as conn:
        for table, keys in tables:
            order = [table.c.pseudonym, *(table.c[k] for k in keys)]
            out[table.name] = [tuple(r) for r in conn.execute(select(table).order_by(*order))]
    return out
