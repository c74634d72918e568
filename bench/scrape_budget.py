"""Series and bytes of one worker's /metrics at national dimensions: the scrape budget.

    python -m bench.scrape_budget [--partitions 24] [--output bench/results/DATE-scrape-budget.json]

Every label combination the chain definition allows is given a value (all districts, case types,
stages, segments, outcomes, age bands, rejection reasons; lead-time and withdrawn histograms with
every bucket filled), which is what the national chain reaches within days. Two exposition designs:
- whole chain per worker (what streams/metrics.py does): every worker exports the sum over all
  partitions of the totals topic, so one target carries the chain's series once;
- per-partition series (the alternative: a `partition` label on every chain series, max'ed across
  workers in PromQL): a worker carries its share of partitions x the chain's series, and
  Prometheus ingests partitions x the chain's series in total.
It measures the exposition the worker's own collector produces (prometheus_client's encoders), in
the Prometheus text format and in OpenMetrics, plain and gzip-compressed, and the time to collect.
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
from itertools import product
from pathlib import Path

from ketenmonitor.schemas.events import REJECTION_REASONS
from ketenmonitor.streams.ingest import IngestStats
from ketenmonitor.streams.metrics import ChainCollector, WorkerCollector, WorkerHealth
from ketenmonitor.streams.totals import LocalTotals
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from bench.machine import load_average, machine_facts
from ketenmonitor.domain.case import (
    CASE_CLOSED,
    SEGMENT_COMPLETED,
    STAGE_ENTERED,
    STAGE_LEFT,
)
from ketenmonitor.domain.chain import SECONDS_PER_DAY as DAY
from ketenmonitor.domain.chain import Chain, load_chain
from ketenmonitor.domain.totals import ChainTotals

NOW = 1_790_000_000.0


def national_totals(chain: Chain) -> ChainTotals:
    """Totals in which every allowed label combination and every bucket has a value."""
    totals = ChainTotals(chain)
    bounds = [*chain.lead_time_buckets_seconds, 3 * 365 * DAY]
    for ct, d in product(chain.case_types, chain.districts):
        for stage in chain.stage_ids:
            for age_days in (1, 10, 40, 100, 200, 400, 800):
                entered = NOW - age_days * DAY
                totals._fold((stage, ct, d, entered, STAGE_ENTERED), +1)
            totals._fold((stage, ct, d, NOW - 5 * DAY, NOW - DAY, STAGE_LEFT), +1)
        for segment in chain.segment_ids:
            for lead in bounds:
                fact = (segment, ct, d, NOW - lead, NOW, SEGMENT_COMPLETED)
                totals._fold(fact, +1)
                totals._fold(fact, -1)
                totals._fold(fact, +1)
        for outcome in chain.outcomes_of_closures():
            fact = (outcome, "closing", ct, d, NOW, CASE_CLOSED)
            totals._fold(fact, +1)
            totals._fold(fact, -1)
            totals._fold(fact, +1)
    return totals


def measure(chain: Chain, totals: list[ChainTotals]) -> dict[str, float]:
    ingest = [
        (p, IngestStats(1, 1, dict.fromkeys(REJECTION_REASONS, 1), NOW, [1] * 8, 1.0))
        for p in chain.partner_ids
    ]
    registry = CollectorRegistry()
    registry.register(
        ChainCollector(
            chain,
            LocalTotals(lambda: totals, lambda: ingest, lambda: NOW),
            {p: p for p in chain.partner_ids},
            reference_time=lambda: NOW,
        )
    )
    registry.register(WorkerCollector(lambda: WorkerHealth(4, {"t": 1}, NOW, {"cases": 0.0})))
    started = time.process_time()
    text = generate_latest(registry)
    collect_seconds = time.process_time() - started
    openmetrics = generate_openmetrics(registry)
    series = sum(
        1 for line in text.decode().splitlines() if line and not line.startswith("#")
    )
    return {
        "series": series,
        "text_bytes": len(text),
        "text_gzip_bytes": len(gzip.compress(text)),
        "openmetrics_bytes": len(openmetrics),
        "openmetrics_gzip_bytes": len(gzip.compress(openmetrics)),
        "collect_and_encode_cpu_seconds": round(collect_seconds, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--partitions", type=int, default=24)
    parser.add_argument("--workers", type=int, default=6)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    chain = load_chain()
    load = load_average()
    whole = measure(chain, [national_totals(chain)])
    per_partition_target = whole["series"] * args.partitions / args.workers
    result = {
        "command": f"python -m bench.scrape_budget --partitions {args.partitions} "
        f"--workers {args.workers}",
        "machine": machine_facts(),
        "load_average": load,
        "dimensions": {
            "stages": len(chain.stage_ids),
            "case_types": len(chain.case_types),
            "districts": len(chain.districts),
            "segments": len(chain.segment_ids),
            "lead_time_buckets": len(chain.lead_time_buckets_seconds) + 1,
            "age_bands": len(chain.backlog_age_bands),
            "closure_outcomes": len(chain.outcomes_of_closures()),
            "rejection_reasons": len(REJECTION_REASONS),
        },
        "whole_chain_per_worker": whole,
        "per_partition_design": {
            "partitions": args.partitions,
            "workers": args.workers,
            "series_per_target_estimate": per_partition_target,
            "series_ingested_estimate": whole["series"] * args.partitions,
        },
    }
    text = json.dumps(result, indent=2, default=str)
    print(text)
    if args.output is not None:
        args.output.write_text(text + "\n")


if __name__ == "__main__":
    main()
