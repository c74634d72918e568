"""How a checkpoint's records are laid out in LMDB, measured beside a busy main thread
(streams/state_store.py): a put per record (`putmulti`, the layout before version 3) against one
`marshal`led value per checkpoint (version 3). The worker writes a checkpoint in a thread while
its main thread goes on processing events, so what counts is the writing thread's time and how
much the main thread still gets done meanwhile (both hold Python's lock in turn).

    PYTHONPATH=. .venv/bin/python -m bench.checkpoint_layout --records 300000 --rounds 4 \\
        --out bench/results/2026-12-01-checkpoint-layout.json

The layouts alternate within each round (ABBA); the machine is let settle before each.
"""

from __future__ import annotations

import argparse
import json
import marshal
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lmdb

from bench.machine import load_average, machine_facts, settle

VALUE_BYTES = 130  # about an encoded case state (bench/analysis.md)


def _busy(stop: threading.Event) -> int:
    """The main thread's stand-in: allocation-heavy Python, as the worker's event step is."""
    rounds = 0
    while not stop.is_set():
        table = {}
        for i in range(1000):
            table[i] = (i, str(i))
        rounds += 1
    return rounds


def _per_record(env: Any, db: Any, records: dict[bytes, bytes]) -> None:
    with env.begin(write=True) as txn:
        txn.cursor(db=db).putmulti(records.items())


def _one_value(env: Any, db: Any, records: dict[bytes, bytes]) -> None:
    value = marshal.dumps(records, 4)
    with env.begin(write=True) as txn:
        txn.put(b"delta", value, db=db)


LAYOUTS: dict[str, Callable[[Any, Any, dict[bytes, bytes]], None]] = {
    "put-per-record": _per_record,
    "one-marshalled-value": _one_value,
}


def measure(layout: str, records: dict[bytes, bytes], directory: Path) -> dict[str, Any]:
    shutil.rmtree(directory, ignore_errors=True)
    env = lmdb.open(str(directory), map_size=1 << 36, max_dbs=2, sync=True)
    db = env.open_db(b"records")
    alone = threading.Event()
    threading.Timer(1.0, alone.set).start()
    started = time.perf_counter()
    rate_alone = _busy(alone) / (time.perf_counter() - started)
    stop = threading.Event()
    took: list[float] = []

    def write() -> None:
        began = time.perf_counter()
        LAYOUTS[layout](env, db, records)
        took.append(time.perf_counter() - began)
        stop.set()

    writer = threading.Thread(target=write)
    started = time.perf_counter()
    writer.start()
    rounds = _busy(stop)
    elapsed = time.perf_counter() - started
    writer.join()
    env.close()
    rate_during = rounds / elapsed
    return {
        "layout": layout,
        "write_seconds": round(took[0], 4),
        "main_rate_alone": round(rate_alone, 1),
        "main_rate_while_writing": round(rate_during, 1),
        # the main thread's work lost to the write, in seconds of its time
        "main_seconds_lost": round(took[0] * (1 - rate_during / rate_alone), 4),
        "load_average": load_average(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    records = {os.urandom(20) + b"%08d" % i: os.urandom(VALUE_BYTES) for i in range(args.records)}
    started = time.perf_counter()
    marshalled = marshal.dumps(records, 4)
    dumps = time.perf_counter() - started
    started = time.perf_counter()
    marshal.loads(marshalled)
    loads = time.perf_counter() - started
    runs = []
    with tempfile.TemporaryDirectory(prefix="checkpoint-layout-") as tmp:
        for round_ in range(args.rounds):
            order = list(LAYOUTS) if round_ % 2 == 0 else list(LAYOUTS)[::-1]
            for layout in order:
                settle()
                run = measure(layout, records, Path(tmp) / "env")
                run["round"] = round_
                print(json.dumps(run), flush=True)
                runs.append(run)
    summary = {}
    for layout in LAYOUTS:
        mine = sorted(r["write_seconds"] + r["main_seconds_lost"] for r in runs
                      if r["layout"] == layout)
        summary[layout] = {"median_write_plus_main_lost_seconds": mine[len(mine) // 2]}
    document = {
        "command": "python -m bench.checkpoint_layout " + " ".join(
            f"--{k} {v}" for k, v in (("records", args.records), ("rounds", args.rounds))),
        "machine": machine_facts(),
        "records": args.records,
        "marshal_dumps_seconds": round(dumps, 4),
        "marshal_loads_seconds": round(loads, 4),
        "marshalled_bytes": len(marshalled),
        "runs": runs,
        "summary": summary,
    }
    print(json.dumps(summary, indent=1))
    if args.out:
        args.out.write_text(json.dumps(document, indent=1) + "\n")


if __name__ == "__main__":
    main()
