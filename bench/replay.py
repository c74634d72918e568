"""Replay throughput: a preloaded log through one worker, its ceiling, its peer, the naive baseline.

    result = run_replay(broker, chain, events=1_000_000, naive_timeout=600)

In one run, on the same log produced once, interleaved (ceiling, worker, peer, ceiling, naive):
- ceiling: bench/ceiling.py, an aiokafka loop and a confluent-kafka loop that only read the partner
  topics from the beginning (fresh group) and JSON-decode every value: what Python can read here;
  each runs before and after the worker and the peer, the median of the two is its figure;
- worker: `ketenmonitor worker` (streams/worker.py: aiokafka, one getmany batch at a time, one
  produce call per topic-partition per batch), timed until all is committed;
- peer: bench/quix_peer.py, the same kind of work as a Python user would write it with
  quixstreams (re-key by case, per-case state in RocksDB with a changelog, a counter per stage);
- naive: bench/naive_app.py (per-event Faust agents), same work, timed the same way (capped); it
  has its own app id, so its own consumer group, offsets and changelogs, and its own case topic;
- core loop: bench/core_loop.py, the worker's per-event code in a plain loop without Kafka;
- batch truth: tests/integration/batch_truth.py over the simulator's ground truth (an independent
  implementation), whose numbers both workers' /metrics must equal exactly.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from bench.ceiling import LOOPS, run_ceiling
from bench.core_loop import run_core_loop
from bench.correctness import expected_metrics, settled_comparison
from bench.kafka_env import LagWatch, create_topics, run_env
from bench.machine import load_average
from bench.naive_app import NaiveWorkerProcess, naive_cases_topic
from bench.peer import run_peer
from bench.worker_run import time_catch_up
from bench.workload import produce, replay_log
from ketenmonitor.domain.chain import Chain
from ketenmonitor.infra.kafka_broker import LocalKafkaBroker
from ketenmonitor.infra.worker_process import WorkerProcess
from ketenmonitor.settings import Settings

WORKER_RUNTIME = "streams/worker.py, aiokafka batches"


def age_reference_env(reference: float) -> dict[str, str]:
    from datetime import UTC, datetime

    return {
        "KETENMONITOR_AGE_REFERENCE_TIME": datetime.fromtimestamp(reference, UTC).isoformat()
    }


def run_replay(
    broker: LocalKafkaBroker,
    chain: Chain,
    events: int,
    logs: Path,
    naive: bool = True,
    worker_timeout: float = 1800,
    naive_timeout: float = 600,
    ceiling: bool = True,
    peer: bool = True,
) -> dict[str, Any]:
    log = replay_log(chain, events)
    out: dict[str, Any] = {"events": len(log), "cases": len(log.cases)}

    batch = expected_metrics(chain, log)
    out["batch_truth"] = {
        "what": "tests/integration/batch_truth.py over the simulator's ground truth "
        "(independent implementation, no Kafka, no ketenmonitor.domain)",
        "cpu_seconds": round(batch.cpu_seconds, 2),
        "events_per_cpu_second": round(batch.events_per_second, 1),
        "series": len(batch.samples),
    }
    core = run_core_loop(chain, log.raw)
    out["core_loop"] = {
        "what": "bench/core_loop.py: Ingestor.route + CaseProcessor per event in a plain loop, "
        "dict as table, no Kafka or Faust",
        "cpu_seconds": round(core.seconds, 2),
        "events_per_cpu_second": round(core.events_per_second, 1),
        "route_cpu_seconds": round(core.route_seconds, 2),
        "process_cpu_seconds": round(core.process_seconds, 2),
        "load_average": load_average(),
    }
    del core

    env = run_env(broker, "replay", **age_reference_env(log.reference_time))
    settings = Settings(
        kafka_bootstrap=broker.bootstrap_servers, topic_prefix=env["KETENMONITOR_TOPIC_PREFIX"]
    )
    partner_topics = [settings.partner_topic(p) for p in chain.partner_ids]
    create_topics(broker.bootstrap_servers, [*partner_topics, settings.cases_topic])
    t0 = time.monotonic()
    produce(broker.bootstrap_servers, log.raw, settings.partner_topic)
    produce_seconds = time.monotonic() - t0
    out["produce"] = {
        "seconds": round(produce_seconds, 2), "events_per_second": round(len(log) / produce_seconds)
    }
    ceiling_runs: dict[str, list[dict[str, Any]]] = {loop: [] for loop in LOOPS}

    def run_ceilings() -> None:
        for loop in LOOPS if ceiling else ():
            ceiling_runs[loop].append(
                run_ceiling(loop, broker.bootstrap_servers, partner_topics, len(log))
            )

    run_ceilings()
    watch = LagWatch(broker.bootstrap_servers)
    try:
        worker = WorkerProcess(env, log_path=logs / "replay-worker.log", loglevel="warning")
        try:
            timing = time_catch_up(
                worker, watch, env["KETENMONITOR_APP_ID"],
                [*partner_topics, settings.cases_topic], len(log), worker_timeout,
            )
            timing["check"] = settled_comparison(worker.scrape, batch.samples).as_dict()
        finally:
            worker.stop()
        out["worker"] = {"runtime": WORKER_RUNTIME, **timing}
        if peer:
            out["peer"] = run_peer(
                broker.bootstrap_servers, chain, partner_topics, log.raw, logs, worker_timeout
            )
        run_ceilings()
        if ceiling:
            out["ceiling"] = {loop: ceiling_figure(runs) for loop, runs in ceiling_runs.items()}
        out["ratios"] = ratios(out)
        if naive:
            # Its own group: it must not start from the offsets the worker committed.
            naive_env = {**env, "KETENMONITOR_APP_ID": f"{env['KETENMONITOR_APP_ID']}-naive"}
            baseline = NaiveWorkerProcess(naive_env, log_path=logs / "replay-naive.log")
            out["naive"] = {"error": "did not finish"}
            try:
                timing = time_catch_up(
                    baseline, watch, naive_env["KETENMONITOR_APP_ID"],
                    [*partner_topics, naive_cases_topic(settings)], len(log), naive_timeout,
                    case_topic=naive_cases_topic(settings),
                )
                if timing["completed"]:
                    timing["check"] = settled_comparison(baseline.scrape, batch.samples).as_dict()
                else:
                    timing["note"] = (
                        f"stopped after {naive_timeout:.0f} s; events_processed counts the case-"
                        "topic offsets it committed (events through both agents)"
                    )
            finally:
                baseline.stop()
            out["naive"] = timing
    finally:
        watch.close()
    return out


def ceiling_figure(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """A ceiling loop's figure: the median of its runs (before and after the others), and each."""
    def median(key: str) -> float:
        return round(statistics.median(run[key] for run in runs), 1)

    return {
        "what": runs[0]["what"],
        "events_per_second": median("events_per_second"),
        "events_per_cpu_second": median("events_per_cpu_second"),
        "completed": all(run["completed"] for run in runs),
        "runs": runs,
    }


def ratios(out: dict[str, Any]) -> dict[str, Any]:
    """The worker's rates over the ceiling loops' and the peer's, wall and per CPU-second."""
    worker = out.get("worker", {})
    if "events_per_second" not in worker:
        return {}
    found: dict[str, Any] = {}
    others = {f"ceiling_{loop}": figure for loop, figure in out.get("ceiling", {}).items()}
    if out.get("ceiling"):
        # "The ceiling": the faster of the two loops, wall and per CPU-second taken separately.
        others["ceiling"] = {
            key: max(figure[key] for figure in out["ceiling"].values())
            for key in ("events_per_second", "events_per_cpu_second")
        }
    if out.get("peer", {}).get("completed"):
        others["peer"] = out["peer"]
    for name, figure in others.items():
        found[f"worker_to_{name}"] = {
            "wall": round(worker["events_per_second"] / max(figure["events_per_second"], 1e-9), 3),
            "cpu": round(
                worker["events_per_cpu_second"] / max(figure["events_per_cpu_second"], 1e-9), 3
            ),
        }
    return found
