"""Side-by-side microbenchmark of the case step, interleaved: how the marks are derived.

    nice -n 19 .venv/bin/python -m bench.case_step_micro --events 30000 --rounds 7

One delivered log with duplicates, out-of-order events and corrections (bench.core_micro's
faulty_raw), routed once (not timed). Each round runs every candidate once over the whole log, in
an order that alternates from round to round, and takes the process CPU time per event:
- `one walk`: CaseProcessor.apply as the worker runs it (streams/processing.py): the marks before
  and after come from the walk that apply_event makes (domain/flow.apply_event_marked);
- `three walks`: the step as it was before (commit 6c242a7): apply_event, then marks_of of the
  state before and of the state after, each walking the case's occurrences again;
- `no marks`: apply_event and the stored value only (the step before issue #15 added marks): the
  floor.
Before timing, `one walk` and `three walks` are checked to give identical stored values and marks
event by event. Figures: median and best of the rounds, microseconds per event.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

from ketenmonitor.streams.codec import decode_case_value, encode_case_value
from ketenmonitor.streams.processing import CaseProcessor, Ingestor, Rejected, decode_case_event

from bench.core_loop import BENCH_PSEUDONYM_KEY
from bench.core_micro import faulty_raw
from ketenmonitor.domain.case import apply_event
from ketenmonitor.domain.chain import Chain, load_chain
from ketenmonitor.domain.flow import marks_of

Step = Callable[[str, bytes, bytes | None], tuple[bytes, object]]


def _decode(
    pseudonym: str, payload: bytes, stored: bytes | None
) -> tuple[Any, Any, tuple[Any, ...]]:
    """The event, and the case state and withdrawn facts stored before it (none for a new case)."""
    event = decode_case_event(pseudonym, payload)
    if stored is None:
        return event, None, ()
    current, withdrawn = decode_case_value(stored)
    return event, current, withdrawn


def three_walks(chain: Chain) -> Step:
    """CaseProcessor.apply as of commit 6c242a7 (marks_of before and after)."""

    def step(pseudonym: str, payload: bytes, stored: bytes | None) -> tuple[bytes, object]:
        event, current, withdrawn = _decode(pseudonym, payload, stored)
        applied = apply_event(chain, current, event)
        marks = None
        if current is None or applied.state.records is not current.records:
            before = None if current is None else marks_of(chain, current)
            after = marks_of(chain, applied.state)
            marks = (before, after)
            gone = () if before is None else sorted(before.rework - after.rework)
            if applied.removed or gone:
                withdrawn = (*withdrawn, *map(tuple, applied.removed), *gone)
        elif applied.removed:
            withdrawn = (*withdrawn, *map(tuple, applied.removed))
        return encode_case_value(applied.state, withdrawn), marks

    return step


def one_walk(chain: Chain) -> Step:
    processor = CaseProcessor(chain)

    def step(pseudonym: str, payload: bytes, stored: bytes | None) -> tuple[bytes, object]:
        result = processor.apply(pseudonym, payload, stored)
        return result.stored, result.marks

    return step


def no_marks(chain: Chain) -> Step:
    def step(pseudonym: str, payload: bytes, stored: bytes | None) -> tuple[bytes, object]:
        event, current, withdrawn = _decode(pseudonym, payload, stored)
        applied = apply_event(chain, current, event)
        if applied.removed:
            withdrawn = (*withdrawn, *map(tuple, applied.removed))
        return encode_case_value(applied.state, withdrawn), None

    return step


CANDIDATES = {"one walk": one_walk, "three walks": three_walks, "no marks": no_marks}


def equivalent(chain: Chain, routed: list) -> int:
    """Stored values and marks of `one walk` and `three walks`, event by event."""
    a, b = one_walk(chain), three_walks(chain)
    table: dict[str, bytes] = {}
    compared = 0
    for r in routed:
        stored = table.get(r.pseudonym)
        out_a, out_b = a(r.pseudonym, r.payload, stored), b(r.pseudonym, r.payload, stored)
        marks_a, marks_b = out_a[1], out_b[1]
        if marks_a is None and marks_b is not None:  # unchanged: the reference computed equal
            before, after = marks_b
            assert (before is None and not after.waiting and not after.rework) or before == after
        else:
            assert marks_a == marks_b, r.pseudonym
        assert out_a[0] == out_b[0], r.pseudonym
        table[r.pseudonym] = out_a[0]
        compared += 1
    return compared


def run(step: Step, routed: list) -> float:
    table: dict[str, bytes] = {}
    cpu0 = time.process_time()
    for r in routed:
        table[r.pseudonym] = step(r.pseudonym, r.payload, table.get(r.pseudonym))[0]
    return time.process_time() - cpu0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    chain = load_chain()
    ingestor = Ingestor(chain, BENCH_PSEUDONYM_KEY.encode(), 6)
    raw = faulty_raw(chain, args.events)
    routed = [r for org, v in raw if not isinstance(r := ingestor.route(v, org), Rejected)]
    print(f"events: {len(routed)}; identical stored values and marks: {equivalent(chain, routed)}")
    print(f"load average before: {os.getloadavg()}")
    names = list(CANDIDATES)
    steps = {name: CANDIDATES[name](chain) for name in names}
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(args.rounds):
        order = names if round_ % 2 == 0 else names[::-1]
        for name in order:
            times[name].append(run(steps[name], routed) / len(routed) * 1e6)
    print(f"load average after: {os.getloadavg()}")
    for name in names:
        ts = times[name]
        print(f"{name:>12}: median {statistics.median(ts):6.2f} us/event, best {min(ts):6.2f}"
              f"  (rounds: {', '.join(f'{t:.1f}' for t in ts)})")


if __name__ == "__main__":
    main()
