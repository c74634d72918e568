"""One hop against two hops: the replay log through one worker with every partner keying by
case (placement `case-key`, every partner in KETENMONITOR_ONE_HOP_PARTNERS: each event applied in
the partition where it arrives) and with today's path (placement `pseudonym`, partners key
nothing: each event re-keyed through the case topic and read twice), interleaved (two-hop,
one-hop, two-hop, ...) on one broker.

    result = run_one_hop(broker, chain, events=300_000, logs=..., rounds=2)

Each run has its own topics, group and changelogs (bench/kafka_env.py run_env) and the same log,
produced before the worker starts (not timed): keyed by case key for the one-hop runs (kafka-
python's default partitioner, Kafka's murmur2, as a partner's client would), unkeyed for the
two-hop runs. Timed like the replay worker (bench/worker_run.py: from process start until the
group's committed offsets reach the end of every topic it reads, the case topic included); its
/metrics compared with the independent batch computation. The median of each path is reported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.correctness import expected_metrics, settled_comparison
from bench.exactly_once import _patient
from bench.interleaved import MEASURES, median_per_mode, throughput_ratios
from bench.kafka_env import LagWatch, create_topics, run_env
from bench.machine import load_average
from bench.replay import WORKER_RUNTIME, age_reference_env
from bench.worker_run import time_catch_up
from bench.workload import produce, replay_log
from ketenmonitor.domain.chain import Chain
from ketenmonitor.infra.kafka_broker import LocalKafkaBroker
from ketenmonitor.infra.worker_process import WorkerProcess
from ketenmonitor.settings import Settings

PATHS = ("two-hop", "one-hop")


def path_env(chain: Chain, path: str) -> dict[str, str]:
    if path == "one-hop":
        return {
            "KETENMONITOR_CASE_PLACEMENT": "case-key",
            "KETENMONITOR_ONE_HOP_PARTNERS": ",".join(chain.partner_ids),
        }
    return {"KETENMONITOR_CASE_PLACEMENT": "pseudonym"}


def run_one_hop(
    broker: LocalKafkaBroker,
    chain: Chain,
    events: int,
    logs: Path,
    rounds: int = 2,
    worker_timeout: float = 1800,
) -> dict[str, Any]:
    log = replay_log(chain, events)
    batch = expected_metrics(chain, log)
    out: dict[str, Any] = {
        "events": len(log),
        "cases": len(log.cases),
        "runtime": WORKER_RUNTIME,
        "runs": [],
    }
    watch = LagWatch(broker.bootstrap_servers)
    try:
        for round_ in range(1, rounds + 1):
            for path in PATHS:
                env = run_env(
                    broker, path, **age_reference_env(log.reference_time), **path_env(chain, path)
                )
                settings = Settings(
                    kafka_bootstrap=broker.bootstrap_servers,
                    topic_prefix=env["KETENMONITOR_TOPIC_PREFIX"],
                )
                topics = [settings.partner_topic(p) for p in chain.partner_ids]
                create_topics(broker.bootstrap_servers, [*topics, settings.cases_topic])
                produce(
                    broker.bootstrap_servers,
                    log.raw,
                    settings.partner_topic,
                    key_by_case=path == "one-hop",
                )
                load_before = load_average()
                worker = WorkerProcess(
                    env, log_path=logs / f"one-hop-{round_}-{path}.log", loglevel="warning"
                )
                try:
                    timing = time_catch_up(
                        worker,
                        watch,
                        env["KETENMONITOR_APP_ID"],
                        [*topics, settings.cases_topic],
                        len(log),
                        worker_timeout,
                    )
                    timing["check"] = settled_comparison(
                        _patient(worker.scrape), batch.samples
                    ).as_dict()
                finally:
                    worker.stop()
                # Events that went through the case topic (0 when every one took one hop).
                timing["case_topic_records"] = watch.committed(
                    env["KETENMONITOR_APP_ID"], settings.cases_topic
                )
                out["runs"].append(
                    {
                        "round": round_,
                        "path": path,
                        "load_average_before": load_before,
                        "load_average_after": load_average(),
                        **timing,
                    }
                )
                print(
                    f"[bench] one-hop round {round_} {path}: "
                    f"{timing.get('events_per_second')} events/s",
                    flush=True,
                )
    finally:
        watch.close()
    out["median"] = median_per_mode(out["runs"], "path", PATHS, MEASURES)
    if set(PATHS) <= out["median"].keys():
        out["gain"] = throughput_ratios(out["median"]["one-hop"], out["median"]["two-hop"])
    return out
