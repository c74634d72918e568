"""Side-by-side microbenchmark of case-value formats (streams/codec.py), interleaved.

    nice -n 19 .venv/bin/python -m bench.codec_micro --events 30000 --rounds 7

Two logs (bench.workload.replay_log, and bench.core_micro's faulty delivery with duplicates,
out-of-order events and corrections) are run once through CaseProcessor (not timed); the case
values stored before each event are the inputs, as the worker meets them. Candidates:
- `json v3`: the format before (orjson; codec.encode_case_value_v3, read by decode_case_value);
- `msgpack v4`: what the worker writes now (codec.encode_case_value / decode_case_value);
- `columns`, `columns int-t`, `columns int-t index`: a compact layout tried and not taken (here
  only): one MessagePack array of columns (occurrence keys, event ids, times; case type and
  district once per case when all records agree; outcomes, revisions and retractions only when
  not all default), then times as integers when all are whole seconds, then milestones as indexes
  into a fixed name table (the shipped chain's milestones; other names written out).
Each candidate is first checked to give back exactly the state and withdrawn facts of every
input. Each round times every candidate once over all inputs (decode each value, encode each
decoded state), in an order that alternates per round; then the whole case step (CaseProcessor.
apply's code with the candidate's decode and encode) over the faulty log. Figures: bytes per value
and the median of the rounds in microseconds of process CPU time per value (per event for the
step).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from functools import partial
from itertools import repeat
from operator import itemgetter
from types import MappingProxyType
from typing import Any

import msgspec
from ketenmonitor.streams.codec import (
    decode_case_value,
    encode_case_value,
    encode_case_value_v3,
)
from ketenmonitor.streams.processing import CaseProcessor, Ingestor, Rejected, decode_case_event

from bench.core_loop import BENCH_PSEUDONYM_KEY
from bench.core_micro import faulty_raw
from bench.workload import replay_log
from ketenmonitor.domain.case import CaseState, MilestoneRecord
from ketenmonitor.domain.chain import Chain, load_chain
from ketenmonitor.domain.flow import apply_event_marked

Encode = Callable[[CaseState, tuple], bytes]
Decode = Callable[[bytes], tuple[CaseState, tuple]]

_new = tuple.__new__
_record = partial(_new, MilestoneRecord)
_event_id = itemgetter(0)
_encode = msgspec.msgpack.Encoder().encode


def columns_codec(chain: Chain, integer_times: bool, indexed: bool) -> tuple[Encode, Decode]:
    """The compact column layout (not used by the worker; see the module docstring)."""
    names = tuple(chain.milestones)
    index_of = {n: i for i, n in enumerate(names)}
    name_of = dict(enumerate(names))
    body = tuple[
        int,
        list[str | int] if indexed else list[str],
        list[str],
        list[float],
        list[str],
        list[str],
        list[str | None],
        list[int],
        list[bool],
        list[str],
        int,
        tuple[tuple[Any, ...], ...],
    ]
    decode_body = msgspec.msgpack.Decoder(body).decode

    def encode(state: CaseState, withdrawn: tuple = ()) -> bytes:
        records = state.records
        keys: Any = list(records)
        if indexed:  # a name missing from the table is written out (dict.get's default)
            keys = list(map(index_of.get, keys, keys))
        ids, times, types, districts, outcomes, revisions, retracted = zip(
            *records.values(), strict=True
        )
        n = len(ids)
        if integer_times and all(map(float.is_integer, times)):
            times = tuple(map(int, times))
        seen = state.seen_event_ids
        extra = sorted(seen.difference(ids)) if len(seen) != n else ()
        return _encode(
            (
                5,
                keys,
                ids,
                times,
                types[:1] if types.count(types[0]) == n else types,
                districts[:1] if districts.count(districts[0]) == n else districts,
                () if outcomes.count(None) == n else outcomes,
                revisions if any(revisions) else (),
                retracted if any(retracted) else (),
                extra,
                state.duplicates,
                withdrawn,
            )
        )

    def decode(raw: bytes) -> tuple[CaseState, tuple]:
        (
            _,
            keys,
            ids,
            times,
            types,
            districts,
            outcomes,
            revisions,
            retracted,
            extra,
            duplicates,
            withdrawn,
        ) = decode_body(raw)
        n = len(ids)
        if indexed:
            keys = map(name_of.get, keys, keys)
        records = dict(
            zip(
                keys,
                map(
                    _record,
                    zip(
                        ids,
                        times,
                        types if len(types) == n else repeat(types[0]),
                        districts if len(districts) == n else repeat(districts[0]),
                        outcomes or repeat(None),
                        revisions or repeat(0),
                        retracted or repeat(False),
                        strict=False,  # the repeats are endless
                    ),
                ),
                strict=False,
            )
        )
        seen = frozenset(ids)
        if extra:
            seen = seen.union(extra)
        return _new(CaseState, (MappingProxyType(records), seen, duplicates)), withdrawn

    return encode, decode


def candidates(chain: Chain) -> dict[str, tuple[Encode, Decode]]:
    return {
        "json v3": (encode_case_value_v3, decode_case_value),
        "msgpack v4": (encode_case_value, decode_case_value),
        "columns": columns_codec(chain, False, False),
        "columns int-t": columns_codec(chain, True, False),
        "columns int-t index": columns_codec(chain, True, True),
    }


def step_with(chain: Chain, encode: Encode, decode: Decode) -> Callable[..., bytes]:
    """CaseProcessor.apply (streams/processing.py) with another codec: the stored value only."""

    def step(pseudonym: str, payload: bytes, stored: bytes | None) -> bytes:
        event = decode_case_event(pseudonym, payload)
        if stored is None:
            current, withdrawn = None, ()
        else:
            current, withdrawn = decode(stored)
        applied, marks = apply_event_marked(chain, current, event)
        if marks is not None:
            before, after = marks
            gone = () if before is None else sorted(before.rework - after.rework)
            if applied.removed or gone:
                withdrawn = (*withdrawn, *map(tuple, applied.removed), *gone)
        elif applied.removed:
            withdrawn = (*withdrawn, *map(tuple, applied.removed))
        return encode(applied.state, withdrawn)

    return step


def routed_log(chain: Chain, raw: list[tuple[str, bytes]]) -> list:
    ingestor = Ingestor(chain, BENCH_PSEUDONYM_KEY.encode(), 6)
    return [r for org, v in raw if not isinstance(r := ingestor.route(v, org), Rejected)]


def stored_before(chain: Chain, routed: list) -> list[bytes]:
    """The stored value each event meets (events of new cases meet none)."""
    processor, table, values = CaseProcessor(chain), {}, []
    for r in routed:
        stored = table.get(r.pseudonym)
        if stored is not None:
            values.append(stored)
        table[r.pseudonym] = processor.apply(r.pseudonym, r.payload, stored).stored
    return values


def measure(chain: Chain, events: int, rounds: int) -> dict[str, Any]:
    logs = {
        "replay": routed_log(chain, replay_log(chain, events).raw),
        "faulty": routed_log(chain, faulty_raw(chain, events)),
    }
    cands = candidates(chain)
    names = list(cands)
    out: dict[str, Any] = {"load_before": os.getloadavg(), "logs": {}}
    for log_name, routed in logs.items():
        decoded = [decode_case_value(v) for v in stored_before(chain, routed)]
        encoded = {}
        for name, (encode, decode) in cands.items():
            encoded[name] = [encode(s, w) for s, w in decoded]
            for (s, w), raw in zip(decoded, encoded[name], strict=True):
                assert decode(raw) == (s, w), (name, raw)
        times: dict[str, dict[str, list[float]]] = {n: {"decode": [], "encode": []} for n in names}
        for round_ in range(rounds):
            for name in names if round_ % 2 == 0 else names[::-1]:
                encode, decode = cands[name]
                raws = encoded[name]
                cpu0 = time.process_time()
                for raw in raws:
                    decode(raw)
                cpu1 = time.process_time()
                for s, w in decoded:
                    encode(s, w)
                cpu2 = time.process_time()
                times[name]["decode"].append((cpu1 - cpu0) / len(raws) * 1e6)
                times[name]["encode"].append((cpu2 - cpu1) / len(raws) * 1e6)
        out["logs"][log_name] = {
            "events": len(routed),
            "values": len(decoded),
            "candidates": {
                name: {
                    "bytes_per_value": sum(map(len, encoded[name])) / len(decoded),
                    "decode_us": statistics.median(times[name]["decode"]),
                    "encode_us": statistics.median(times[name]["encode"]),
                }
                for name in names
            },
        }
    # The whole case step on the faulty log, per candidate (same outcome checked first).
    routed = logs["faulty"]
    steps = {name: step_with(chain, *cands[name]) for name in names}
    reference = CaseProcessor(chain)
    tables: dict[str, dict[str, bytes]] = {name: {} for name in names}
    for r in routed:
        for name in names:
            table = tables[name]
            table[r.pseudonym] = steps[name](r.pseudonym, r.payload, table.get(r.pseudonym))
    checked = {name: {k: cands[name][1](v) for k, v in tables[name].items()} for name in names}
    for name in names:  # every candidate ends with the states the worker's step ends with
        assert checked[name] == checked["msgpack v4"], name
    assert checked["msgpack v4"] == {
        k: decode_case_value(v) for k, v in _run(reference.apply, routed).items()
    }
    step_times: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(rounds):
        for name in names if round_ % 2 == 0 else names[::-1]:
            step_times[name].append(_timed(steps[name], routed) / len(routed) * 1e6)
    out["step_faulty_us"] = {name: statistics.median(ts) for name, ts in step_times.items()}
    out["step_faulty_rounds"] = step_times
    out["load_after"] = os.getloadavg()
    return out


def _run(apply: Callable[..., Any], routed: list) -> dict[str, bytes]:
    table: dict[str, bytes] = {}
    for r in routed:
        table[r.pseudonym] = apply(r.pseudonym, r.payload, table.get(r.pseudonym)).stored
    return table


def _timed(step: Callable[..., bytes], routed: list) -> float:
    table: dict[str, bytes] = {}
    cpu0 = time.process_time()
    for r in routed:
        table[r.pseudonym] = step(r.pseudonym, r.payload, table.get(r.pseudonym))
    return time.process_time() - cpu0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    result = measure(load_chain(), args.events, args.rounds)
    print(
        f"load average before: {tuple(round(x, 2) for x in result['load_before'])}, "
        f"after: {tuple(round(x, 2) for x in result['load_after'])}"
    )
    for log_name, r in result["logs"].items():
        print(
            f"{log_name} log: {r['events']} events, {r['values']} stored values met; "
            "median of rounds, us per value:"
        )
        for name, c in r["candidates"].items():
            print(
                f"  {name:>20}: {c['bytes_per_value']:6.1f} bytes, decode "
                f"{c['decode_us']:5.2f}, encode {c['encode_us']:5.2f}, both "
                f"{c['decode_us'] + c['encode_us']:5.2f}"
            )
    print("whole case step on the faulty log (CaseProcessor.apply's code), us per event:")
    for name, us in result["step_faulty_us"].items():
        rounds = ", ".join(f"{t:.1f}" for t in result["step_faulty_rounds"][name])
        print(f"  {name:>20}: median {us:6.2f}  (rounds: {rounds})")


if __name__ == "__main__":
    main()
