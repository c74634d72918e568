"""Does a worker's /metrics say what an independent batch computation says about the same log?

    expected = expected_metrics(chain, log)          # tests/integration/batch_truth.py
    report = compare(worker.scrape(), expected)      # Comparison(equal, series, mismatches)

The batch computation is tests/integration/batch_truth.py: written from the chain definition and the
simulator's ground truth, without ketenmonitor.domain, so it is a second implementation and not
the same code run twice. It is loaded from its file because tests/ is not a package.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from bench.workload import EventLog
from ketenmonitor.domain.chain import Chain
from ketenmonitor.infra.worker_process import Samples
from ketenmonitor.simulator import SimulatedCase

BATCH_TRUTH_FILE = Path(__file__).resolve().parents[1] / "tests" / "integration" / "batch_truth.py"

def _batch_truth() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_batch_truth", BATCH_TRUTH_FILE)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"the independent batch computation is missing: {BATCH_TRUTH_FILE}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The case series the batch computation predicts (one list, kept beside that computation).
CASE_METRICS: frozenset[str] = frozenset(_batch_truth().CASE_METRICS)


@dataclass
class BatchResult:
    samples: dict[Any, float] = field(repr=False)
    cpu_seconds: float
    events: int

    @property
    def events_per_second(self) -> float:
        return self.events / self.cpu_seconds if self.cpu_seconds else 0.0


def expected_metrics(chain: Chain, log: EventLog) -> BatchResult:
    return expected_metrics_of(chain, log.cases, log.reference_time, len(log))


def expected_metrics_of(
    chain: Chain, cases: Iterable[SimulatedCase], reference_time: float, events: int
) -> BatchResult:
    """The batch computation over `cases`, read once (a generator keeps a big log out of memory)."""
    truth = _batch_truth()
    cpu0 = time.process_time()
    samples = truth.expected_samples(chain, cases, reference_time)
    cpu = time.process_time() - cpu0
    return BatchResult(truth.comparable(samples, CASE_METRICS), cpu, events)


def case_series(samples: Samples) -> dict[Any, float]:
    """A worker's non-zero case series, net (added - withdrawn): what `compare` compares."""
    net = _batch_truth().net_samples(samples)
    return {k: v for k, v in net.items() if k[0] in CASE_METRICS and v != 0}


@dataclass
class Comparison:
    equal: bool
    series: int  # non-zero series compared
    mismatches: list[dict[str, Any]]  # the first few differences, for the results file
    # every difference summed per metric: (series that differ, worker - batch over them)
    by_metric: dict[str, tuple[int, float]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "equal": self.equal, "series": self.series, "mismatches": self.mismatches,
            "by_metric": {m: list(v) for m, v in sorted(self.by_metric.items())},
        }


def compare(actual: Samples, expected: dict[Any, float], show: int = 10) -> Comparison:
    """Exact comparison of every non-zero case series (absent counts as zero), on the net
    figures (a worker exports added and withdrawn counts apart)."""
    actual = case_series(actual)
    differences = []
    for key in sorted(set(actual) | set(expected), key=repr):
        if actual.get(key, 0.0) != expected.get(key, 0.0):
            differences.append({
                "metric": key[0], "labels": dict(sorted(key[1])),
                "worker": actual.get(key, 0.0), "batch": expected.get(key, 0.0),
            })
    by_metric: dict[str, tuple[int, float]] = {}
    for d in differences:
        n, delta = by_metric.get(d["metric"], (0, 0.0))
        by_metric[d["metric"]] = (n + 1, delta + d["worker"] - d["batch"])
    return Comparison(not differences, len(expected), differences[:show], by_metric)


def settled_comparison(
    scrape: Callable[[], Samples], expected: dict[Any, float], timeout: float = 30.0
) -> Comparison:
    """Compare until equal or `timeout`: /metrics trails the committed offsets by the totals
    publication interval (docs/metrics.md), so the first scrape after catch-up may be early."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            samples = scrape()
        except OSError:  # a scrape timed out (a heavily loaded machine): again, until the deadline
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
            continue
        result = compare(samples, expected)
        if result.equal or time.monotonic() > deadline:
            return result
        time.sleep(0.5)
