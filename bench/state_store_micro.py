"""Which local store for a partition's state checkpoint: SQLite (stdlib), LMDB (`lmdb`), RocksDB
(`rocksdict`). Interleaved rounds on one machine, the load average recorded.

    python -m bench.state_store_micro --cases 200000 --rounds 3

Per store and round: write a checkpoint of N case values (~330 bytes, 32-hex-character keys) in
one transaction, rewrite 10% of them (the cases changed since the last checkpoint), read all N back
(what a restart does), and look up 10,000 random keys (what a read-through table would do). The
worker writes a checkpoint every KETENMONITOR_CHECKPOINT_SECONDS and reads it once per restart.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


def _values(n: int) -> list[tuple[bytes, bytes]]:
    rng = random.Random(5)
    return [
        (f"{rng.getrandbits(128):032x}".encode(), os.urandom(8).hex().encode() * 20 + b"x" * 10)
        for _ in range(n)
    ]


def sqlite_store(path: Path) -> tuple[Callable, Callable, Callable, Callable]:
    db = sqlite3.connect(path / "state.sqlite")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE IF NOT EXISTS cases (k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID")

    def write(items: list[tuple[bytes, bytes]]) -> None:
        with db:
            db.executemany("INSERT OR REPLACE INTO cases VALUES (?, ?)", items)

    def read_all() -> dict[bytes, bytes]:
        return dict(db.execute("SELECT k, v FROM cases"))

    def get(key: bytes) -> bytes | None:
        row = db.execute("SELECT v FROM cases WHERE k = ?", (key,)).fetchone()
        return row[0] if row else None

    return write, read_all, get, db.close


def lmdb_store(path: Path) -> tuple[Callable, Callable, Callable, Callable]:
    import lmdb

    env = lmdb.open(str(path / "state.lmdb"), map_size=8 << 30, sync=False, writemap=True)

    def write(items: list[tuple[bytes, bytes]]) -> None:
        with env.begin(write=True) as txn:
            txn.cursor().putmulti(items)

    def read_all() -> dict[bytes, bytes]:
        with env.begin() as txn:
            return dict(txn.cursor().iternext())

    def get(key: bytes) -> bytes | None:
        with env.begin() as txn:
            return txn.get(key)

    return write, read_all, get, env.close


def rocksdict_store(path: Path) -> tuple[Callable, Callable, Callable, Callable]:
    from rocksdict import Options, Rdict, WriteBatch

    db = Rdict(str(path / "state.rocks"), Options(raw_mode=True))

    def write(items: list[tuple[bytes, bytes]]) -> None:
        batch = WriteBatch(raw_mode=True)
        for k, v in items:
            batch.put(k, v)
        db.write(batch)

    def read_all() -> dict[bytes, bytes]:
        return dict(db.items())

    def get(key: bytes) -> bytes | None:
        return db.get(key)

    return write, read_all, get, db.close


STORES = {"sqlite": sqlite_store, "lmdb": lmdb_store, "rocksdict": rocksdict_store}


def measure(name: str, items: list[tuple[bytes, bytes]], lookups: list[bytes]) -> dict[str, float]:
    directory = Path(tempfile.mkdtemp(prefix=f"store-{name}-"))
    try:
        write, read_all, get, close = STORES[name](directory)
        t0 = time.perf_counter()
        write(items)
        t1 = time.perf_counter()
        write(items[: len(items) // 10])
        t2 = time.perf_counter()
        table = read_all()
        t3 = time.perf_counter()
        assert len(table) == len(items)
        for key in lookups:
            assert get(key) is not None
        t4 = time.perf_counter()
        close()
        size = sum(f.stat().st_size for f in directory.rglob("*") if f.is_file())
        return {
            "write_all_s": round(t1 - t0, 3),
            "rewrite_10pct_s": round(t2 - t1, 3),
            "read_all_s": round(t3 - t2, 3),
            "lookup_us": round((t4 - t3) / len(lookups) * 1e6, 2),
            "bytes_on_disk": size,
        }
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    items = _values(args.cases)
    lookups = [k for k, _ in random.Random(7).sample(items, 10_000)]
    print(f"load average before: {os.getloadavg()}")
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in STORES}
    for round_ in range(args.rounds):
        for name in STORES if round_ % 2 == 0 else reversed(list(STORES)):
            runs[name].append(measure(name, items, lookups))
            print(f"round {round_} {name}: {runs[name][-1]}", flush=True)
    print(f"load average after: {os.getloadavg()}")
    for name, rs in runs.items():
        medians = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
        print(f"{name:>9} median of {len(rs)}: {medians}")


if __name__ == "__main__":
    main()
