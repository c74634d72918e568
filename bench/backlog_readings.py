"""Side-by-side microbenchmark of a publication's backlog readings, interleaved.

    nice -n 19 .venv/bin/python -m bench.backlog_readings --cases 17000 --rounds 7

What the periodic publication needs of a partition's totals (domain/totals.py
`backlog_readings`: the active visits per age band, the oldest active entry per stage, the dormant
visits) read two ways from the same totals: the scan of every open visit (`dormant_entries_by_hour`,
`active_entries_by_hour`, `backlog_by_age`, `oldest_active_entry`, `dormant`: how every
publication read them before) and the readings kept up to date since the last publication
(`BacklogReadings`). The totals hold `--cases` open cases that each reached their first milestone
(bench/workload.py `_first_steps`: the simulator's case type, district and milestone mix, entry
times spread over a year, as in the live-latency benchmark: 100,000 cases over 6 partitions is
about 17,000 a partition); between two readings `--between` more such cases arrive (at 5,000
events/s and a publication every 0.25 s, about 200 a partition). Both readings are first checked
equal. Each round times, in an order that alternates per round, one reading each way after
`--between` new cases (best of 20), and the fold of 20,000 new cases into totals with and without
kept readings (`record` and `mark` of events applied beforehand: what keeping the readings costs
each event). Figures: the median of the rounds, process CPU time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.machine import load_average, standalone_record
from bench.workload import _first_steps, reference_time
from ketenmonitor.domain.case import Applied, CaseEvent, apply_event
from ketenmonitor.domain.chain import Chain, load_chain
from ketenmonitor.domain.flow import Marks, marks_of
from ketenmonitor.domain.totals import ChainTotals

FOLD_CASES = 20_000
READS = 20


def first_events(chain: Chain, reference: float, seed: int) -> Iterator[CaseEvent]:
    """An endless stream of first events of new cases."""
    index = 0
    while True:
        for case in _first_steps(10_000, reference, seed + index):
            step = case.steps[0]
            yield CaseEvent(
                f"b{index}-{case.index}", f"{case.case_key}-{index}", step.milestone,
                step.occurred_at, case.case_type, case.district, step.outcome, 0, False, None,
            )
        index += 1


Folded = tuple[Applied, Marks]


def folded_cases(chain: Chain, reference: float, n: int) -> Iterator[Folded]:
    """`n` new cases' first events applied (outside any timing), with their marks."""
    events = first_events(chain, reference, seed=9)
    for _ in range(n):
        applied = apply_event(chain, None, next(events))
        yield applied, marks_of(chain, applied.state)


def fold(totals: ChainTotals, cases: Iterator[Folded], n: int) -> None:
    """What the worker does with each new case's event after applying it: record and mark."""
    for _ in range(n):
        applied, marks = next(cases)
        totals.record(applied, new_case=True)
        totals.mark(None, marks)


def scan(totals: ChainTotals, at: float) -> tuple[Any, Any, Any]:
    dormant = totals.dormant_entries_by_hour(at)
    active = totals.active_entries_by_hour(at, dormant)
    return (totals.backlog_by_age(at, active), totals.oldest_active_entry(at, active),
            totals.dormant(at, dormant))


def nonzero(d: dict) -> dict:
    return {k: n for k, n in d.items() if n}


def reading_seconds(
    totals: ChainTotals, cases: Iterator[Folded], between: int, read: Callable[[], object]
) -> float:
    best = float("inf")
    for _ in range(READS):
        fold(totals, cases, between)
        started = time.process_time()
        read()
        best = min(best, time.process_time() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=17_000)
    parser.add_argument("--between", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--name", default="backlog-readings")
    args = parser.parse_args()
    chain = load_chain()
    reference = reference_time()
    at = reference + 0.5 * 3600  # within one reading phase throughout
    totals = ChainTotals(chain)
    needed = args.cases + args.rounds * 2 * (READS * args.between + FOLD_CASES)
    cases = iter(list(folded_cases(chain, reference, needed)))
    fold(totals, cases, args.cases)
    kept = totals.backlog_readings(at)
    scanned = scan(totals, at)
    if (kept[0], kept[1], kept[2]) != (nonzero(scanned[0]), scanned[1], nonzero(scanned[2])):
        raise SystemExit("the kept readings differ from the scan")
    started_load = load_average()
    rows: dict[str, list[float]] = {
        "scan_ms": [], "kept_ms": [], "fold_us_without": [], "fold_us_kept": []
    }
    for round_ in range(args.rounds):
        order = ["scan", "kept"] if round_ % 2 == 0 else ["kept", "scan"]
        for way in order:
            read = (lambda: scan(totals, at)) if way == "scan" else (
                lambda: totals.backlog_readings(at))
            rows[f"{way}_ms"].append(
                1000 * reading_seconds(totals, cases, args.between, read))
        for way in (["without", "kept"] if round_ % 2 == 0 else ["kept", "without"]):
            fresh = ChainTotals(chain)
            if way == "kept":
                fresh.backlog_readings(at)
            started = time.process_time()
            fold(fresh, cases, FOLD_CASES)
            rows[f"fold_us_{way}"].append(1e6 * (time.process_time() - started) / FOLD_CASES)
    medians = {k: round(statistics.median(v), 4) for k, v in rows.items()}
    command = (f"python -m bench.backlog_readings --cases {args.cases} --between "
               f"{args.between} --rounds {args.rounds} --name {args.name}")
    result = {
        **standalone_record(command, started_load, __doc__),
        "open_cases_at_end": sum(totals.backlog().values()),
        "rounds": rows,
        "medians": medians,
    }
    out = Path("bench/results") / f"{time.strftime('%Y-%m-%d')}-{args.name}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(medians), f"-> {out}")


if __name__ == "__main__":
    main()
