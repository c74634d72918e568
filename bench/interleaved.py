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


def order_of_round(modes: tuple[Any, ...], round_: int) -> tuple[Any, ...]:
    """The modes in the order a round runs them: as given in odd rounds, reversed in even ones
    (ABBA). Whatever the run before leaves behind on a shared machine (the broker compacting its
    changelogs, the page cache) then falls on each mode equally often."""
    return modes if round_ % 2 else modes[::-1]


def paired_ratios(
    runs: list[dict[str, Any]], key: str, candidate: Any, baseline: Any
) -> dict[str, Any]:
    """Per round, the candidate's run over the baseline's of that round (both completed), and
    the median of those ratios: a pair ran minutes apart, so a slow minute of the machine falls
    on both of it rather than on one mode's median."""
    by_round: dict[int, dict[Any, dict[str, Any]]] = {}
    for r in runs:
        if r["completed"]:
            by_round.setdefault(r["round"], {})[r[key]] = r
    pairs = [
        (round_, throughput_ratios(pair[candidate], pair[baseline]))
        for round_, pair in sorted(by_round.items())
        if candidate in pair and baseline in pair
    ]
    out: dict[str, Any] = {"rounds": [dict(round=n, **ratios) for n, ratios in pairs]}
    for measure in ("wall_throughput_ratio", "cpu_throughput_ratio"):
        values = [ratios[measure] for _, ratios in pairs]
        if values:
            out[f"median_{measure}"] = round(statistics.median(values), 3)
    return out
