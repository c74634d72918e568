"""The sink that writes case facts to the store, from the live worker and from a replay.

    sink = CaseFactSink.from_url(settings.store_url, chain)
    sink.start()                        # migrations to the newest revision
    sink.add(pseudonym, state)          # after every applied event (the state, not the event)
    sink.flush()                        # on a timer, before offsets are committed, on stop
    sink.close()

The sink keeps only the newest state of each case until the next flush, so a busy case costs one
write per flush. A flush is one transaction: per table, an upsert keyed by (case, milestone and
occurrence | stage and entry time | segment), and a delete of the rows a case no longer implies (a
retracted milestone, a closure undone by an appeal, a visit moved by a late event). Writing the
same states twice leaves the same rows.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, Engine, Table, and_, bindparam, delete, select
from sqlalchemy.dialects import postgresql, sqlite

from ketenmonitor.domain.case import CaseState
from ketenmonitor.domain.chain import Chain
from ketenmonitor.store.engine import StoreError, make_engine, upgrade
from ketenmonitor.store.models import CHILD_TABLES, Case
from ketenmonitor.store.rows import CaseRows, Row, case_rows

log = logging.getLogger(__name__)

# Cases per statement group: keeps the IN lists well under SQLite's limit on bound parameters.
CHUNK = 500
CASES = Case.__table__


class CaseFactSink:
    def __init__(self, engine: Engine, chain: Chain, max_buffered: int = 10_000) -> None:
        self.engine = engine
        self.chain = chain
        self.max_buffered = max_buffered
        self._buffer: dict[str, CaseState] = {}
        self.written = 0  # cases written since start (a case flushed twice counts twice)

    @classmethod
    def from_url(cls, url: str, chain: Chain, **kwargs: Any) -> CaseFactSink:
        return cls(make_engine(url), chain, **kwargs)

    def start(self) -> None:
        upgrade(self.engine)

    def add(self, pseudonym: str, state: CaseState) -> None:
        self._buffer[pseudonym] = state
        if len(self._buffer) >= self.max_buffered:
            self.flush()

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def flush(self) -> int:
        """Write every buffered case in one transaction; returns the number of cases written.

        On failure the buffer is kept (newer states still replace older ones), so the next flush
        writes them; the error propagates as StoreError.
        """
        if not self._buffer:
            return 0
        written = self.write_states(self._buffer)
        self._buffer.clear()
        return written

    def write_states(self, states: dict[str, CaseState]) -> int:
        """Write the given newest states in one transaction (the live worker hands each batch's
        states over, from a thread, in batch order); raises StoreError and writes nothing on
        failure."""
        batch = [case_rows(self.chain, p, s) for p, s in states.items()]
        try:
            with self.engine.begin() as conn:
                for start in range(0, len(batch), CHUNK):
                    _write(conn, batch[start : start + CHUNK])
        except Exception as exc:
            raise StoreError(f"writing {len(batch)} cases to the store failed: {exc}") from exc
        self.written += len(batch)
        return len(batch)

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self.engine.dispose()

    def __enter__(self) -> CaseFactSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _write(conn: Connection, batch: Sequence[CaseRows]) -> None:
    pseudonyms = [rows.pseudonym for rows in batch]
    gone = [p.pseudonym for p in batch if p.case is None]
    # Parents first for inserts; children first for deletes.
    for table, keys in CHILD_TABLES:
        wanted = {
            (r["pseudonym"], *(r[k] for k in keys))
            for rows in batch
            for r in rows.children[table.name]
        }
        _delete_stale(conn, table, keys, pseudonyms, wanted)
    if gone:
        conn.execute(delete(CASES).where(CASES.c.pseudonym.in_(gone)))
    _upsert(conn, CASES, ("pseudonym",), [rows.case for rows in batch if rows.case is not None])
    for table, keys in CHILD_TABLES:
        children = [r for rows in batch for r in rows.children[table.name]]
        _upsert(conn, table, ("pseudonym", *keys), children)


def _delete_stale(
    conn: Connection,
    table: Table,
    keys: tuple[str, ...],
    pseudonyms: list[str],
    wanted: set[tuple[Any, ...]],
) -> None:
    columns = [table.c.pseudonym, *(table.c[k] for k in keys)]
    existing = conn.execute(select(*columns).where(table.c.pseudonym.in_(pseudonyms))).all()
    stale = [
        {f"k{n}": value for n, value in enumerate(row)}
        for row in existing
        if tuple(row) not in wanted
    ]
    if stale:
        conn.execute(
            delete(table).where(
                and_(*(column == bindparam(f"k{n}") for n, column in enumerate(columns)))
            ),
            stale,
        )


def _upsert(conn: Connection, table: Table, keys: Iterable[str], rows: list[Row]) -> None:
    if not rows:
        return
    dialect = conn.dialect.name
    if dialect == "postgresql":
        stmt: Any = postgresql.insert(table)
    elif dialect == "sqlite":
        stmt = sqlite.insert(table)
    else:
        raise StoreError(f"no upsert for database {dialect!r}")
    keys = tuple(keys)
    stmt = stmt.on_conflict_do_update(
        index_elements=list(keys),
        set_={c.name: stmt.excluded[c.name] for c in table.columns if c.name not in keys},
    )
    conn.execute(stmt, rows)
