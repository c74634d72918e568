"""What the side-by-side benchmarks share: medians per mode of interleaved runs, and ratios.

    medians = median_per_mode(runs, "path", ("two-hop", "one-hop"), MEASURES)
    throughput_ratios(medians["one-hop"], medians["two-hop"])  # {"wall_throughput_ratio": ..}

Used by bench/one_hop.py, bench/exactly_once.py and bench/national.py: each runs its candidates
in turn, round after round, on the same preloaded log, and reports the median of each.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from typing import Any

MEASURES = (
    "events_per_second",
    "events_per_cpu_second",
    "wall_seconds_from_start",
    "cpu_seconds_total",
)


def median_per_mode(
    runs: list[dict[str, Any]], key: str, modes: Iterable[Any], measures: Iterable[str] = MEASURES
) -> dict[Any, dict[str, float]]:
    """Per mode (the runs' value of `key`), the median of each measure over its completed runs;
    a mode without a completed run is left out."""
    out: dict[Any, dict[str, float]] = {}
    for mode in modes:
        done = [r for r in runs if r[key] == mode and r["completed"]]
        if done:
            out[mode] = {m: round(statistics.median(r[m] for r in done), 2) for m in measures}
    return out


def throughput_ratios(candidate: dict[str, float], baseline: dict[str, float]) -> dict[str, float]:
    """Events per second and per CPU-second of the candidate over the baseline's."""
    return {
        "wall_throughput_ratio": round(
            candidate["events_per_second"] / baseline["events_per_second"], 3
        ),
        "cpu_throughput_ratio": round(
            candidate["events_per_cpu_second"] / baseline["events_per_cpu_second"], 3
        ),
    }
