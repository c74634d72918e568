"""Per-event cost of the contract check: the compiled path against the pydantic reference.

    .venv/bin/python -m bench.contract_micro --events 100000 --rounds 7 [--wait-load 1.5]

The log is bench.workload.replay_log (simulated partner events as the worker reads them). Each
round times every candidate once over the whole log, in an order that rotates per round, with the
process's CPU time; the figure is the median over rounds (and the best). Candidates:
- parse_event: what the worker calls (compiled path, reference path for whatever it refers);
- parse_event_reference: the pydantic contract alone (what parse_event was before);
- msgspec decode only: the floor of the compiled path (no checks, no model built).
Prints a JSON document: machine, command, load average before and after, microseconds per event.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable

from ketenmonitor.schemas import events

from bench.machine import load_average, machine_facts
from bench.workload import replay_log
from ketenmonitor.domain.chain import load_chain


def wait_for_quiet(limit: float, give_up_seconds: float) -> list[float]:
    """Wait until the 1-minute load average is at most `limit` (or give up), then return it."""
    deadline = time.monotonic() + give_up_seconds
    while os.getloadavg()[0] > limit and time.monotonic() < deadline:
        time.sleep(5)
    return load_average()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--wait-load", type=float, default=None, help="wait for this load first")
    parser.add_argument("--wait-max", type=float, default=600.0, help="seconds to wait at most")
    args = parser.parse_args(argv)
    chain = load_chain()
    log = replay_log(chain, args.events)
    raw = log.raw
    now = log.reference_time + 3600
    for organisation, value in raw:  # the two paths agree on this log (the tests fuzz the rest)
        assert events.parse_event(value, chain, organisation, now) == events.parse_event_reference(
            value, chain, organisation, now
        )
    decode = events._compiled._decode

    def run_parse() -> None:
        for organisation, value in raw:
            events.parse_event(value, chain, organisation, now)

    def run_reference() -> None:
        for organisation, value in raw:
            events.parse_event_reference(value, chain, organisation, now)

    def run_decode() -> None:
        for _, value in raw:
            decode(value)

    candidates: dict[str, Callable[[], None]] = {
        "parse_event (compiled path)": run_parse,
        "parse_event_reference (pydantic)": run_reference,
        "msgspec decode only": run_decode,
    }
    load_before = (
        wait_for_quiet(args.wait_load, args.wait_max) if args.wait_load else load_average()
    )
    per_event: dict[str, list[float]] = {name: [] for name in candidates}
    names = list(candidates)
    for round_ in range(args.rounds):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            cpu0 = time.process_time()
            candidates[name]()
            per_event[name].append((time.process_time() - cpu0) / len(raw) * 1e6)
    result = {
        "command": "python -m bench.contract_micro " + " ".join(argv or sys.argv[1:]),
        "machine": machine_facts(),
        "events": len(raw),
        "rounds": args.rounds,
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "microseconds_per_event": {
            name: {"median": round(statistics.median(v), 2), "best": round(min(v), 2)}
            for name, v in per_event.items()
        },
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
