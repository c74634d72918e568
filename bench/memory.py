"""Memory per open case: bytes of state in the case table and RSS growth of the worker.

    result = run_memory(broker, chain, [100_000, 1_000_000], logs)

State bytes are the encoded case states the worker stores (streams/codec.py; binary version 4
since 2026-11-30, JSON before), computed by running the same log through the worker's own code
(bench/core_loop.py), with the 32-byte hex pseudonym key beside each value. RSS growth is the
worker's resident memory after consuming N one-milestone cases minus its idle RSS, divided by N:
it includes the Python objects of the in-memory table (bytes objects and dict slots), the totals
and allocator slack.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from bench.core_loop import run_core_loop
from bench.kafka_env import run_env
from bench.machine import load_average
from bench.open_cases import load_open_cases
from ketenmonitor.domain.chain import Chain
from ketenmonitor.infra.kafka_broker import LocalKafkaBroker

RUNTIME = "streams/worker.py, aiokafka batches"


def state_bytes(chain: Chain, raw: list[tuple[str, bytes]]) -> dict[str, float]:
    core = run_core_loop(chain, raw)
    n = len(core.table)
    values = sum(len(v) for v in core.table.values())
    keys = sum(len(k) for k in core.table)
    objects = sum(sys.getsizeof(k) + sys.getsizeof(v) for k, v in core.table.items())
    return {
        "cases": n,
        "value_bytes_per_case": round(values / n, 1),
        "key_bytes_per_case": len(next(iter(core.table))) if n else 0,
        "key_and_value_bytes_per_case": round((values + keys) / n, 1),
        "python_object_bytes_per_case": round(objects / n, 1),
        # A Python bytes literal: version 4 is binary (a JSON value of version 3 reads as text).
        "example_value": repr(next(iter(core.table.values()))) if n else "",
    }


def run_memory(
    broker: LocalKafkaBroker, chain: Chain, sizes: list[int], logs: Path
) -> dict[str, Any]:
    out: dict[str, Any] = {"method": __doc__.split("\n\n", 2)[2].strip(), "sizes": {}}
    for n in sizes:
        env = run_env(broker, f"memory{n}")
        loaded = load_open_cases(broker, chain, n, env, logs / f"memory-{n}.log")
        try:
            samples = loaded.worker.scrape()
            tracked = samples.get(("ketenmonitor_cases_tracked", frozenset()), 0.0)
        finally:
            loaded.worker.stop()
        delta = loaded.rss_loaded - loaded.rss_idle
        out["sizes"][str(n)] = {
            "runtime": RUNTIME,
            "open_cases": n,
            "cases_tracked": tracked,
            "check": {"equal": tracked == n, "series": 1, "mismatches": [] if tracked == n else [
                {"metric": "ketenmonitor_cases_tracked", "worker": tracked, "batch": n}
            ]},
            "rss_idle_bytes": loaded.rss_idle,
            "rss_loaded_bytes": loaded.rss_loaded,
            "rss_bytes_per_case": round(delta / n, 1),
            "state": state_bytes(chain, loaded.log.raw),
            "load": loaded.timing,
            "load_average": load_average(),
        }
    return out
