"""Recovery: time from a worker restart to serving correct metrics, with N open cases in state.

    result = run_recovery(broker, chain, 1_000_000, logs)    # result["restore"]: the figure

A worker consumes N one-milestone cases (bench/open_cases.py), its /metrics are read (the
reference), and it is stopped with SIGTERM (it finishes the batch in progress, commits and leaves
the group). A new `ketenmonitor worker` with the same settings (same group, same changelog topics)
is started; the clock runs from its start until a scrape shows exactly the reference's case series
and cases_tracked == N. The worker (streams/worker.py, aiokafka) keeps its tables only in memory
and has no local store to reopen: on assignment it reads the partitions it owns of the compacted
`<app_id>-cases-changelog` and `<app_id>-ingest-stats-changelog` topics from the beginning (one
record per case here) and rebuilds the totals from the restored case states, before consuming.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.correctness import CASE_METRICS, compare
from bench.kafka_env import run_env
from bench.machine import CpuClock, load_average
from bench.open_cases import load_open_cases
from bench.replay import age_reference_env
from bench.workload import reference_time
from ketenmonitor.domain.chain import Chain
from ketenmonitor.infra.kafka_broker import LocalKafkaBroker
from ketenmonitor.infra.worker_process import Samples, WorkerProcess

TRACKED = ("ketenmonitor_cases_tracked", frozenset())
RUNTIME = "changelog restore (streams/worker.py, aiokafka)"


def run_recovery(
    broker: LocalKafkaBroker, chain: Chain, cases: int, logs: Path, timeout: float = 900,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "method": __doc__.split("\n\n", 2)[2].strip(),
        "cases": cases,
        "runtime": RUNTIME,
    }
    # A fixed age reference: backlog ages must not move between the two scrapes compared.
    env = run_env(broker, "recovery", **age_reference_env(reference_time()))
    try:
        loaded = load_open_cases(broker, chain, cases, env, logs / "recovery-1.log")
        try:
            reference = loaded.worker.scrape()
        finally:
            loaded.worker.stop()
        out["restore"] = _restart(env, reference, cases, logs / "recovery-2.log", timeout)
        out["restore"]["load"] = loaded.timing
    except Exception as exc:  # keep what was measured; the runner records the failure
        out["restore"] = {"error": repr(exc)[:2000], "recovered": False,
                          "check": {"equal": False, "series": 0, "mismatches": []}}
    return out


def _restart(
    env: dict[str, str], reference: Samples, cases: int, log_path: Path, timeout: float
) -> dict[str, Any]:
    expected = {k: v for k, v in reference.items() if k[0] in CASE_METRICS and v != 0}
    worker = WorkerProcess(env, log_path=log_path, loglevel="warning")
    started = time.monotonic()
    worker.start()
    try:
        assert worker.process is not None
        clock = CpuClock(worker.process.pid)
        worker.wait_ready(timeout=timeout)
        ready = time.monotonic() - started
        check = None
        slow_scrapes = 0
        while time.monotonic() - started < timeout:
            try:
                samples = worker.scrape()
            except OSError:  # /metrics did not answer within 5 s: the event loop is busy
                slow_scrapes += 1
                continue
            if samples.get(TRACKED) == cases:
                check = compare(samples, expected)
                if check.equal:
                    break
            time.sleep(0.25)
        elapsed = time.monotonic() - started
        rss = clock.rss_bytes()
        cpu = clock.cpu_seconds()
    finally:
        worker.stop()
    return {
        "recovered": bool(check and check.equal),
        "seconds_to_correct_metrics": round(elapsed, 2),
        "seconds_to_http_ready": round(ready, 2),
        "scrapes_unanswered_within_5s": slow_scrapes,
        "cpu_seconds": round(cpu, 2),
        "rss_bytes": rss,
        "check": (check.as_dict() if check else {"equal": False, "series": 0, "mismatches": []}),
        "load_average": load_average(),
    }
