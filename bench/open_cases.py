"""A worker holding N open cases: the common start of the memory and recovery benchmarks.

    loaded = load_open_cases(broker, chain, 100_000, env, logs / "w.log")
    loaded.worker, loaded.log, loaded.rss_idle, loaded.rss_loaded, loaded.timing

The worker starts on empty topics; once it owns its partitions its RSS is taken (idle), then N
one-milestone cases are produced and consumed, and the RSS is taken again (loaded).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.kafka_env import LagWatch, create_topics
from bench.latency import _wait_owned
from bench.machine import CpuClock, load_average
from bench.workload import EventLog, open_cases_log, produce
from ketenmonitor.domain.chain import Chain
from ketenmonitor.infra.kafka_broker import LocalKafkaBroker
from ketenmonitor.infra.worker_process import WorkerProcess
from ketenmonitor.settings import Settings


@dataclass
class Loaded:
    worker: WorkerProcess
    log: EventLog
    topics: list[str]
    rss_idle: int
    rss_loaded: int
    timing: dict[str, Any]


def load_open_cases(
    broker: LocalKafkaBroker, chain: Chain, cases: int, env: dict[str, str], log_path: Path,
    timeout: float = 3600,
) -> Loaded:
    log = open_cases_log(chain, cases)
    settings = Settings(
        kafka_bootstrap=broker.bootstrap_servers, topic_prefix=env["KETENMONITOR_TOPIC_PREFIX"]
    )
    topics = [settings.partner_topic(p) for p in chain.partner_ids] + [settings.cases_topic]
    create_topics(broker.bootstrap_servers, topics)
    worker = WorkerProcess(env, log_path=log_path, loglevel="warning")
    worker.start()
    try:
        worker.wait_ready()
        _wait_owned(worker, timeout=120)
        assert worker.process is not None
        clock = CpuClock(worker.process.pid)
        time.sleep(2.0)  # let start-up garbage settle before the idle reading
        rss_idle = clock.rss_bytes()
        produce(broker.bootstrap_servers, log.raw, settings.partner_topic)
        started = time.monotonic()
        watch = LagWatch(broker.bootstrap_servers)
        try:
            while watch.lag(env["KETENMONITOR_APP_ID"], topics) != 0:
                if time.monotonic() - started > timeout:
                    raise TimeoutError(f"{cases} open cases not consumed within {timeout}s")
                time.sleep(0.5)
        finally:
            watch.close()
        timing = {
            "seconds_after_produce": round(time.monotonic() - started, 2),
            "cpu_seconds": round(clock.cpu_seconds(), 2),
            "load_average": load_average(),
        }
        return Loaded(worker, log, topics, rss_idle, clock.rss_bytes(), timing)
    except BaseException:
        worker.stop()
        raise
