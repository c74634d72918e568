"""Recovery: time from a worker restart to serving correct metrics, with N open cases in state.

    result = run_recovery(broker, chain, 1_000_000, logs)    # result["restore"]: the figure

A worker consumes N one-milestone cases (bench/open_cases.py), its /metrics are read (the
reference), and it is stopped with SIGTERM (it finishes the batch in progress, commits and leaves
the group). A new `ketenmonitor worker` with the same settings (same group, same changelog topics)
is started; two clocks run from its start: until a scrape shows exactly the reference's case series
and cases_tracked == N (what Prometheus sees: since every worker reads the chain's totals from the
compacted totals topic, this no longer waits for the restore), and until the worker's log says it
restored all N cases into its own tables (the restore itself, after which it processes new events;
the log line "restored N cases ... in S s" per assignment). The loading worker runs with a local
state directory (KETENMONITOR_STATE_DIR) and checkpoints on its way out; the restart is timed
twice from the same changelog: without the state directory (`restore`: the whole changelog) and
then with it (`restore_local_state`: the LMDB checkpoint and the changelog's tail). Without a
state directory the worker (streams/worker.py, aiokafka) has no local store to reopen: on
assignment it reads the partitions it owns of the compacted
`<app_id>-cases-changelog` and `<app_id>-ingest-stats-changelog` topics from the beginning (one
record per case here) and rebuilds the totals from the restored case states, before consuming.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from bench.correctness import case_series, compare
from bench.kafka_env import run_env
from bench.machine import CpuClock, load_average
from bench.open_cases import load_open_cases
from bench.replay import age_reference_env
from bench.workload import reference_time
from ketenmonitor.domain.chain import Chain
from ketenmonitor.infra.kafka_broker import LocalKafkaBroker
from ketenmonitor.infra.worker_process import Samples, WorkerProcess

TRACKED = ("ketenmonitor_cases_tracked", frozenset())
RESTORED = re.compile(r"restored (\d+) cases and \d+ partner partitions for .* in ([\d.]+)s")


RESUMED = "owned partitions now"  # streams/worker.py, once an assignment is restored and folded


def resumed(log_path: Path) -> bool:
    """Whether the worker's log says it took its partitions (and processes events again)."""
    return log_path.exists() and RESUMED in log_path.read_text(errors="replace")


def restored_cases(log_path: Path) -> tuple[int, float]:
    """Cases the worker's log says it restored, and the seconds its restores took, summed."""
    found = RESTORED.findall(log_path.read_text(errors="replace")) if log_path.exists() else []
    return sum(int(c) for c, _ in found), sum(float(s) for _, s in found)
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
    local = {**env, "KETENMONITOR_STATE_DIR": str(logs / f"state-{env['KETENMONITOR_APP_ID']}")}
    try:
        loaded = load_open_cases(broker, chain, cases, local, logs / "recovery-1.log")
        try:
            reference = loaded.worker.scrape()
        finally:
            loaded.worker.stop()
        out["restore"] = timed_restart(env, reference, cases, logs / "recovery-2.log", timeout)
        out["restore"]["load"] = loaded.timing
        out["restore_local_state"] = timed_restart(
            local, reference, cases, logs / "recovery-3.log", timeout
        )
    except Exception as exc:  # keep what was measured; the runner records the failure
        out["restore"] = {"error": repr(exc)[:2000], "recovered": False,
                          "check": {"equal": False, "series": 0, "mismatches": []}}
    return out


def timed_restart(
    env: dict[str, str], reference: Samples, cases: int, log_path: Path, timeout: float
) -> dict[str, Any]:
    """Start a worker with `env` and time it until its /metrics equal `reference` (the case
    series and cases_tracked) and until its log says it restored `cases` cases (those held in
    its tables: retired ones are not); the worker is stopped afterwards."""
    expected = case_series(reference)
    tracked = reference.get(TRACKED)
    worker = WorkerProcess(env, log_path=log_path, loglevel="info")
    started = time.monotonic()
    worker.start()
    try:
        assert worker.process is not None
        clock = CpuClock(worker.process.pid)
        worker.wait_ready(timeout=timeout)
        ready = time.monotonic() - started
        check = None
        slow_scrapes = 0
        metrics_correct = restored_at = resumed_at = None
        while time.monotonic() - started < timeout:
            if restored_at is None and restored_cases(log_path)[0] >= cases:
                restored_at = time.monotonic() - started
            if restored_at is not None and resumed_at is None and resumed(log_path):
                resumed_at = time.monotonic() - started
            if metrics_correct is not None:
                if resumed_at is not None:
                    break
                time.sleep(0.1)
                continue
            try:
                samples = worker.scrape()
            except OSError:  # /metrics did not answer within 5 s: the event loop is busy
                slow_scrapes += 1
                continue
            if samples.get(TRACKED) == tracked:
                check = compare(samples, expected)
                if check.equal:
                    metrics_correct = time.monotonic() - started
                    continue
            time.sleep(0.25)
        elapsed = time.monotonic() - started
        restored, restore_log_seconds = restored_cases(log_path)
        rss = clock.rss_bytes()
        rss_parts = clock.rss_parts()
        cpu = clock.cpu_seconds()
    finally:
        worker.stop()
    return {
        "recovered": bool(check and check.equal) and resumed_at is not None,
        "seconds_to_correct_metrics": (
            round(metrics_correct, 2) if metrics_correct is not None else None
        ),
        "seconds_to_restored_state": round(restored_at, 2) if restored_at is not None else None,
        # the totals folded (or taken from the checkpoint), partitions owned: processing again
        "seconds_to_processing": round(resumed_at, 2) if resumed_at is not None else None,
        "cases_restored_per_log": restored,
        "restore_seconds_per_log": round(restore_log_seconds, 2),
        "seconds_observed": round(elapsed, 2),
        "seconds_to_http_ready": round(ready, 2),
        "scrapes_unanswered_within_5s": slow_scrapes,
        "cpu_seconds": round(cpu, 2),
        "rss_bytes": rss,
        "rss_parts": rss_parts,
        "check": (check.as_dict() if check else {"equal": False, "series": 0, "mismatches": []}),
        "load_average": load_average(),
    }
