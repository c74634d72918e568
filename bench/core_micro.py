"""Microbenchmark of the worker's per-event core, part by part, without Kafka or Faust.

    .venv/bin/python -m bench.core_micro --events 50000 [--repeat 3] [--faults]

The log (bench.workload.replay_log, or with --faults a delivery with duplicates, out-of-order
events and corrections) is routed once by streams/processing.py's Ingestor (not timed). Then, per
event, with process CPU time, best of --repeat runs:
- process: CaseProcessor.apply, the whole per-event work of the case agent;
- decode / encode: ketenmonitor.streams.codec on the states the loop met;
- apply_event: the domain core on the decoded states (facts included);
- facts_of: the facts of every state the loop produced;
- fold: ChainTotals.record of the recorded `Applied` results.
Figures are microseconds per event; the parts overlap `process` and need not add up to it.
bench/core_build_compare.py runs this with the domain core interpreted and compiled (mypyc),
interleaved.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from ketenmonitor.streams.codec import decode_state, encode_state
from ketenmonitor.streams.processing import CaseProcessor, Ingestor, Rejected, decode_case_event

from bench.core_loop import BENCH_PSEUDONYM_KEY
from bench.workload import replay_log
from ketenmonitor.domain.case import apply_event, facts_of
from ketenmonitor.domain.chain import Chain, load_chain
from ketenmonitor.domain.totals import ChainTotals


def faulty_raw(chain: Chain, events: int, seed: int = 8) -> list[tuple[str, bytes]]:
    """A delivered log with duplicates, late and out-of-order events and corrections."""
    from ketenmonitor.delivery import DeliveryPlanner, deliveries_in_order
    from ketenmonitor.simulator import Faults, load_scenario, stream_cases

    log = replay_log(chain, 1, seed)  # only for its reference time
    end = log.reference_time
    start = end - 2 * 365 * 86_400
    scenario = load_scenario()
    faults = Faults(duplicate_rate=0.05, out_of_order_rate=0.1, late_rate=0.02,
                    correction_rate=0.05)
    cases = stream_cases(scenario, max(1, int(events / 7.2)), start, end, seed=seed)
    planner = DeliveryPlanner(chain, scenario.publish_delay, faults, start, end, seed=seed)
    return [(d.organisation, d.value) for d in deliveries_in_order(cases, planner, start, end)]


def best_of(repeat: int, run: Callable[[], None]) -> float:
    best = float("inf")
    for _ in range(repeat):
        cpu0 = time.process_time()
        run()
        best = min(best, time.process_time() - cpu0)
    return best


def measure(chain: Chain, raw: list[tuple[str, bytes]], repeat: int) -> dict[str, float]:
    ingestor = Ingestor(chain, BENCH_PSEUDONYM_KEY.encode(), 6)
    routed = [r for org, v in raw if not isinstance(r := ingestor.route(v, org), Rejected)]
    n = len(routed)

    # One recording pass: the inputs each part sees.
    table: dict[str, bytes] = {}
    inputs = []  # (partition, event, state bytes or None)
    recorder = CaseProcessor(chain)
    for r in routed:
        before = table.get(r.pseudonym)
        inputs.append((r.partition, decode_case_event(r.pseudonym, r.payload), before))
        table[r.pseudonym] = recorder.apply(r.pseudonym, r.payload, before).stored
    raw_states = [s for _, _, s in inputs if s is not None]
    decoded = {s: decode_state(s) for s in raw_states}
    states_in = [decoded[s] if s is not None else None for _, _, s in inputs]
    applied = [apply_event(chain, st, ev) for st, (_, ev, _) in zip(states_in, inputs, strict=True)]
    states_out = [a.state for a in applied]

    def process() -> None:
        proc, tab = CaseProcessor(chain), {}
        for r in routed:
            tab[r.pseudonym] = proc.apply(r.pseudonym, r.payload, tab.get(r.pseudonym)).stored

    def decode() -> None:
        for s in raw_states:
            decode_state(s)

    def encode() -> None:
        for s in states_out:
            encode_state(s)

    def apply() -> None:
        # Fresh decoded states each run: a core that caches on the state must not get a free ride.
        fresh = [decode_state(s) if s is not None else None for _, _, s in inputs]
        cpu0 = time.process_time()
        for st, (_, ev, _) in zip(fresh, inputs, strict=True):
            apply_event(chain, st, ev)
        timings["apply_event"] = min(timings.get("apply_event", 1e9), time.process_time() - cpu0)

    def facts() -> None:
        fresh = [decode_state(encode_state(s)) for s in states_out]
        cpu0 = time.process_time()
        for s in fresh:
            facts_of(chain, s)
        timings["facts_of"] = min(timings.get("facts_of", 1e9), time.process_time() - cpu0)

    def fold() -> None:
        totals = ChainTotals(chain)
        for a, st in zip(applied, states_in, strict=True):
            totals.record(a, new_case=st is None)

    timings: dict[str, float] = {}
    timings["process"] = best_of(repeat, process)
    timings["decode"] = best_of(repeat, decode)
    timings["encode"] = best_of(repeat, encode)
    for _ in range(repeat):
        apply()
        facts()
    timings["fold"] = best_of(repeat, fold)
    out = {name: seconds / n * 1e6 for name, seconds in timings.items()}
    out["events"] = n
    out["state_bytes_per_case"] = sum(len(v) for v in table.values()) / len(table)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--faults", action="store_true")
    args = parser.parse_args()
    chain = load_chain()
    raw = faulty_raw(chain, args.events) if args.faults else replay_log(chain, args.events).raw
    result = measure(chain, raw, args.repeat)
    print(f"events: {int(result.pop('events'))}")
    print(f"state bytes per case: {result.pop('state_bytes_per_case'):.1f}")
    for name, us in result.items():
        print(f"{name:>12}: {us:7.2f} us/event")


if __name__ == "__main__":
    main()
