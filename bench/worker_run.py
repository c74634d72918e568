"""Start a worker on a preloaded log and time it until everything is processed and committed.

    timing = time_catch_up(WorkerProcess(env, log_path=...), watch, group, topics, events)
    timing["events_per_second"], timing["events_per_cpu_second"], timing["equal"] ...

The clock starts when the process is started (imports, group join and table recovery included) and
stops at the first poll (every 0.25 s) at which the group's committed offsets reach the log end of
every topic it reads. `ketenmonitor worker` commits after every batch; the naive Faust baseline
commits every second, so its end time is late by up to ~1 s.
"""

from __future__ import annotations

import time
from typing import Any

from bench.kafka_env import LagWatch
from bench.machine import CpuClock, load_average
from ketenmonitor.infra.worker_process import WorkerProcess

POLL_SECONDS = 0.25


class NotCaughtUp(TimeoutError):
    """The worker did not finish within the time the benchmark allows it."""


def time_catch_up(
    worker: WorkerProcess,
    watch: LagWatch,
    group: str,
    topics: list[str],
    events: int,
    timeout: float,
    on_ready: Any = None,
    case_topic: str | None = None,
) -> dict[str, Any]:
    """Start `worker` and time it; the worker is left running (the caller scrapes and stops it)."""
    started = time.monotonic()
    worker.start()
    assert worker.process is not None
    clock = CpuClock(worker.process.pid)
    worker.wait_ready(timeout=120)
    ready_at = time.monotonic() - started
    cpu_at_ready = clock.cpu_seconds()
    counters_at_ready = clock.counters()
    if on_ready is not None:
        on_ready(worker)
    first_progress: tuple[float, int, float] | None = None  # (t, lag, cpu)
    peak_rss = clock.rss_bytes()
    lag = -1
    deadline = started + timeout
    while True:
        now = time.monotonic()
        lag = watch.lag(group, topics)
        cpu = clock.cpu_seconds()
        peak_rss = max(peak_rss, clock.rss_bytes())
        if first_progress is None and 0 <= lag < events:
            first_progress = (now - started, lag, cpu)
        if lag == 0:
            break
        if now > deadline:
            break
        time.sleep(POLL_SECONDS)
    elapsed = time.monotonic() - started
    cpu_total = clock.cpu_seconds()
    counters = clock.counters()
    done = lag == 0
    result: dict[str, Any] = {
        "events": events,
        "completed": done,
        "lag_at_end": lag,
        "wall_seconds_from_start": round(elapsed, 2),
        "ready_after_seconds": round(ready_at, 2),
        "cpu_seconds_total": round(cpu_total, 2),
        "cpu_seconds_processing": round(cpu_total - cpu_at_ready, 2),
        "peak_rss_bytes": peak_rss,
        "load_average": load_average(),
        # from HTTP ready to the end: user and system CPU, page faults, context switches
        "processing_counters": {
            name: round(value - counters_at_ready[name], 2) for name, value in counters.items()
        },
    }
    if done:
        processed = events
    elif case_topic is not None:
        # Every accepted event becomes one message on the (fresh) case topic: its committed
        # offsets count the events that went all the way through.
        processed = watch.committed(group, case_topic)
        result["events_ingested"] = sum(
            watch.committed(group, t) for t in topics if t != case_topic
        )
    else:
        processed = 0
    result["events_processed"] = processed
    result["events_per_second"] = round(processed / elapsed, 1)
    result["events_per_cpu_second"] = round(processed / max(cpu_total - cpu_at_ready, 1e-9), 1)
    if done:
        after_ready = max(elapsed - ready_at, 1e-9)
        result["events_per_second_after_ready"] = round(processed / after_ready, 1)
    if first_progress is not None:
        result["first_commit_after_seconds"] = round(first_progress[0], 2)
    return result



def race(
    workers: dict[str, WorkerProcess],
    watch: LagWatch,
    groups: dict[str, str],
    topics: list[str],
    events: int,
    timeout: float,
) -> dict[str, Any]:
    """Start every worker at once on the same log (each its own group) and compare them over the
    same minutes: when the first has committed the whole log, how many events each has committed
    and what CPU each has used. The machine's slow and fast moments fall on all of them alike; a
    worker's run after the first has finished (the others then have the machine to themselves)
    is not compared. Workers are left running (the caller scrapes and stops them)."""
    started = time.monotonic()
    for worker in workers.values():
        worker.start()
    clocks = {}
    for mode, worker in workers.items():
        assert worker.process is not None
        clocks[mode] = CpuClock(worker.process.pid)
    for worker in workers.values():
        worker.wait_ready(timeout=120)
    finished: dict[str, float] = {}
    window: dict[str, dict[str, Any]] = {}
    deadline = started + timeout
    while len(finished) < len(workers) and time.monotonic() < deadline:
        now = time.monotonic() - started
        lags = {mode: watch.lag(groups[mode], topics) for mode in workers}
        cpu = {mode: clock.cpu_seconds() for mode, clock in clocks.items()}
        for mode, lag in lags.items():
            if lag == 0 and mode not in finished:
                finished[mode] = round(now, 2)
        if finished and not window:
            window = {
                mode: {
                    "events_committed": events - lags[mode] if lags[mode] >= 0 else 0,
                    "cpu_seconds": round(cpu[mode], 2),
                }
                for mode in workers
            }
            for figures in window.values():
                figures["events_per_cpu_second"] = round(
                    figures["events_committed"] / max(figures["cpu_seconds"], 1e-9), 1
                )
            window_seconds = now
        time.sleep(POLL_SECONDS)
    if not window:
        raise NotCaughtUp(f"no worker committed the {events} events within {timeout} s")
    return {
        "window_seconds": round(window_seconds, 2),
        "first_finished": min(finished, key=finished.__getitem__),
        "finished_after_seconds": finished,
        "completed": len(finished) == len(workers),
        "in_window": window,
        "load_average": load_average(),
    }
