"""What exactly-once mode costs: the replay log through one worker without and with
KETENMONITOR_EXACTLY_ONCE, interleaved (off, on, off, on, ...) on one broker.

    result = run_exactly_once(broker, chain, events=200_000, logs=..., rounds=2)

Each run has its own topics, group and changelogs (bench/kafka_env.py run_env), gets the same log
produced first (not timed), and is timed like the replay worker (bench/worker_run.py: from process
start until the group's committed offsets reach the end of every topic it reads); its /metrics are
compared with the independent batch computation. Interleaving spreads the shared machine's load
drift over both modes; the median of each mode is reported.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.correctness import expected_metrics, settled_comparison
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

DUPLICATES = "ketenmonitor_events_duplicate_total"
SCRAPE_PATIENCE = 120.0  # a whole-chain scrape can take more than 5 s on the loaded shared box


def _patient(scrape: Callable[[], Any]) -> Callable[[], Any]:
    """`scrape`, tried again on a timeout or refused connection for up to SCRAPE_PATIENCE s."""

    def patient() -> Any:
        deadline = time.monotonic() + SCRAPE_PATIENCE
        while True:
            try:
                return scrape()
            except OSError:  # TimeoutError and URLError are OSErrors
                if time.monotonic() > deadline:
                    raise
                time.sleep(1.0)

    return patient


def run_exactly_once(
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
        "events": len(log), "cases": len(log.cases), "runtime": WORKER_RUNTIME, "runs": [],
    }
    watch = LagWatch(broker.bootstrap_servers)
    try:
        for round_ in range(1, rounds + 1):
            for exactly_once in (False, True):
                mode = {"KETENMONITOR_EXACTLY_ONCE": "true"} if exactly_once else {}
                env = run_env(
                    broker, "eos" if exactly_once else "alo",
                    **age_reference_env(log.reference_time), **mode,
                )
                settings = Settings(
                    kafka_bootstrap=broker.bootstrap_servers,
                    topic_prefix=env["KETENMONITOR_TOPIC_PREFIX"],
                )
                topics = [settings.partner_topic(p) for p in chain.partner_ids]
                create_topics(broker.bootstrap_servers, [*topics, settings.cases_topic])
                produce(broker.bootstrap_servers, log.raw, settings.partner_topic)
                load_before = load_average()
                name = f"exactly-once-{round_}-{'on' if exactly_once else 'off'}.log"
                worker = WorkerProcess(env, log_path=logs / name, loglevel="warning")
                try:
                    timing = time_catch_up(
                        worker, watch, env["KETENMONITOR_APP_ID"],
                        [*topics, settings.cases_topic], len(log), worker_timeout,
                    )
                    scrape = _patient(worker.scrape)
                    timing["check"] = settled_comparison(scrape, batch.samples).as_dict()
                    timing["duplicates"] = sum(
                        v for (metric, _), v in scrape().items() if metric == DUPLICATES
                    )
                finally:
                    worker.stop()
                out["runs"].append({
                    "round": round_, "exactly_once": exactly_once,
                    "load_average_before": load_before, **timing,
                })
                print(
                    f"[bench] exactly-once round {round_} {'on' if exactly_once else 'off'}: "
                    f"{timing.get('events_per_second')} events/s", flush=True,
                )
    finally:
        watch.close()
    by_mode = median_per_mode(out["runs"], "exactly_once", (True, False), MEASURES)
    out["median"] = {"on" if mode else "off": m for mode, m in by_mode.items()}
    if {"on", "off"} <= out["median"].keys():
        out["cost"] = throughput_ratios(out["median"]["on"], out["median"]["off"])
    return out
