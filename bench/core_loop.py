"""The worker's per-event work as a plain loop, without Kafka or Faust.

    result = run_core_loop(chain, log.raw)     # CoreLoopResult: seconds, states, totals

Each event goes through exactly what the two agents call: Ingestor.route (contract validation by
ketenmonitor.schemas.events.parse_event, HMAC pseudonym, re-encoding) and CaseProcessor.apply with
PartitionTotals.fold (decode state, ketenmonitor.domain core, fold totals, encode state) with a
dict for the table. The gap between this loop's rate and the worker's is the cost of Kafka.
Also used to measure the bytes of state per case (the values the worker keeps in its table).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from ketenmonitor.streams.processing import CaseProcessor, Ingestor, PartitionTotals, Rejected

from ketenmonitor.domain.chain import Chain

BENCH_PSEUDONYM_KEY = "benchmark-pseudonym-key-0123456789"


@dataclass
class CoreLoopResult:
    events: int
    seconds: float  # process CPU time of the loop (wall time is in wall_seconds)
    wall_seconds: float
    route_seconds: float
    process_seconds: float
    rejected: int
    table: dict[bytes, bytes] = field(repr=False)
    totals: PartitionTotals = field(repr=False)

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def run_core_loop(
    chain: Chain, raw: Iterable[tuple[str, bytes]], partitions: int = 6
) -> CoreLoopResult:
    ingestor = Ingestor(chain, BENCH_PSEUDONYM_KEY.encode(), partitions)
    processor = CaseProcessor(chain)
    totals = PartitionTotals(chain)
    table: dict[bytes, bytes] = {}
    routed_events = []
    rejected = 0
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for organisation, value in raw:
        routed = ingestor.route(value, organisation)
        if isinstance(routed, Rejected):
            rejected += 1
            continue
        routed_events.append(routed)
    cpu1 = time.process_time()
    for routed in routed_events:
        key = routed.pseudonym.encode()
        step = processor.apply(routed.pseudonym, routed.payload, table.get(key))
        totals.fold(routed.partition, (step,))
        table[key] = step.stored
    cpu2, wall2 = time.process_time(), time.perf_counter()
    return CoreLoopResult(
        len(routed_events) + rejected, cpu2 - cpu0, wall2 - wall0, cpu1 - cpu0, cpu2 - cpu1,
        rejected, table, totals,
    )
