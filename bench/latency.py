"""Live latency: events produced at a steady rate, time until /metrics reflects them.

    result = run_latency(broker, chain, rate=2000, seconds=30, logs=Path(...))

Method. Every event opens a new case (its first milestone), so each processed event raises
`ketenmonitor_cases_tracked` by exactly one. A producer (confluent-kafka, linger 5 ms, as a live
partner sends) sends event i at t0 + i/rate and notes the send time; a scraper reads
/metrics?name[]=ketenmonitor_cases_tracked every SCRAPE_SECONDS and notes (time the read began,
cases_tracked), the way Prometheus stamps a scrape. The latency of event i is the time of the
first scrape at which cases_tracked >= i + 1, minus its send time. That takes events to finish in
send order (they are spread over 6 partitions: an approximation per event, not for the
distribution), and includes both steps (partner topic -> case topic -> case state), the totals'
publication and the view's read of them, and the scrape interval (resolution SCRAPE_SECONDS). If
the worker cannot keep up at the asked rate (all events reflected, at >= 90% of the rate sent) the
result says so, and the measurement is repeated at 70% of the rate it reached.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

from bench.kafka_env import create_topics, run_env
from bench.machine import CpuClock, load_average
from bench.workload import open_cases_log, produce_paced
from ketenmonitor.domain.chain import Chain
from ketenmonitor.infra.kafka_broker import LocalKafkaBroker
from ketenmonitor.infra.worker_process import WorkerProcess
from ketenmonitor.settings import Settings

RUNTIME = "streams/worker.py, aiokafka batches"
SCRAPE_SECONDS = 0.1
# Read with /metrics?name[]=...: the worker collects for the reader, as for any reader, but does
# not encode the whole chain ten times a second (a full read took 0.1-0.3 s of the worker's
# CPU whenever the totals view had changed: a quarter of its samples at 5,000 events/s).
SCRAPED = ("ketenmonitor_cases_tracked",)
DRAIN_SECONDS = 30.0
SUSTAINED_SHARE = 0.9  # after the last send, how long the worker may take to catch up
_TRACKED = re.compile(rb"^ketenmonitor_cases_tracked (\S+)$", re.MULTILINE)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def latencies(sent: list[float], scrapes: list[tuple[float, int]]) -> list[float | None]:
    """Per event i: first scrape time with count >= i + 1, minus sent[i] (None: never seen)."""
    out: list[float | None] = []
    j = 0
    for i, t_sent in enumerate(sent):
        while j < len(scrapes) and scrapes[j][1] < i + 1:
            j += 1
        out.append(scrapes[j][0] - t_sent if j < len(scrapes) else None)
    return out


def run_latency(
    broker: LocalKafkaBroker, chain: Chain, rate: float, seconds: float, logs: Path
) -> dict[str, Any]:
    first = _measure(broker, chain, rate, seconds, logs)
    out: dict[str, Any] = {
        "method": __doc__.split("Method. ")[1].strip(), "runtime": RUNTIME, "runs": [first]
    }
    if not first["sustained"]:
        lower = max(50.0, round(first["achieved_events_per_second"] * 0.7, -1))
        out["runs"].append(_measure(broker, chain, lower, seconds, logs))
    return out


def _measure(
    broker: LocalKafkaBroker, chain: Chain, rate: float, seconds: float, logs: Path
) -> dict[str, Any]:
    count = int(rate * seconds)
    log = open_cases_log(chain, count, seed=int(rate))
    env = run_env(broker, f"latency{int(rate)}")
    settings = Settings(
        kafka_bootstrap=broker.bootstrap_servers, topic_prefix=env["KETENMONITOR_TOPIC_PREFIX"]
    )
    topics = [settings.partner_topic(p) for p in chain.partner_ids]
    create_topics(broker.bootstrap_servers, [*topics, settings.cases_topic])
    worker = WorkerProcess(env, log_path=logs / f"latency-{int(rate)}.log", loglevel="warning")
    scrapes: list[tuple[float, int]] = []
    scrape_seconds: list[float] = []  # how long each /metrics call took (it costs the worker CPU)
    stop = threading.Event()
    try:
        worker.start()
        worker.wait_ready()
        _wait_owned(worker, timeout=120)
        assert worker.process is not None
        clock = CpuClock(worker.process.pid)

        def scrape_loop() -> None:
            while not stop.is_set():
                before = time.monotonic()  # a read begins every SCRAPE_SECONDS (or when the
                try:  # last one ended, if it took longer)
                    text = worker.scrape_text(SCRAPED).encode()
                    scrape_seconds.append(time.monotonic() - before)
                    found = _TRACKED.search(text)
                    # Timed at its start, as Prometheus stamps a scrape: the collection the worker
                    # answers with starts after the request (it never serves an older one to a
                    # reader without a scrape timeout, streams/web.py).
                    scrapes.append((before, int(float(found.group(1))) if found else 0))
                except OSError:
                    pass
                time.sleep(max(0.0, before + SCRAPE_SECONDS - time.monotonic()))

        scraper = threading.Thread(target=scrape_loop, daemon=True)
        scraper.start()
        sent: list[float] = []
        t0 = time.monotonic() + 0.5  # moved to the first event's turn, below

        def pace(i: int) -> None:
            nonlocal t0
            if i == 0:  # the producer is connected and knows the topics: a partner's long-
                t0 = time.monotonic() + 0.1  # running producer, not a cold client's first fetch
            due = t0 + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            sent.append(time.monotonic())

        produce_paced(broker.bootstrap_servers, log.raw, settings.partner_topic, pace)
        produced_in = time.monotonic() - t0
        deadline = time.monotonic() + DRAIN_SECONDS
        while time.monotonic() < deadline and (not scrapes or scrapes[-1][1] < count):
            time.sleep(0.2)
        stop.set()
        scraper.join()
        cpu = clock.cpu_seconds()
    finally:
        stop.set()
        worker.stop()
    seen = [x for x in latencies(sent, scrapes) if x is not None]
    timeline = os.environ.get("KETENMONITOR_BENCH_LATENCY_TIMELINE")
    if timeline:  # every send and scrape, for reading where the tail comes from
        Path(timeline).write_text(json.dumps({"sent": sent, "scrapes": scrapes}))
    last_seen_at = scrapes[-1][0] if scrapes else t0
    reached = (scrapes[-1][1] if scrapes else 0) / max(last_seen_at - t0, 1e-9)
    # Kept up: everything reflected, at (nearly) the rate it was sent.
    sustained = len(seen) == count and reached >= SUSTAINED_SHARE * rate
    result: dict[str, Any] = {
        "rate_asked": rate,
        "events": count,
        "produce_seconds": round(produced_in, 2),
        "produce_rate_achieved": round(count / produced_in, 1),
        "events_reflected": len(seen),
        "sustained": sustained,
        "achieved_events_per_second": round(reached, 1),
        "scrape_interval_seconds": SCRAPE_SECONDS,
        "scrapes": len(scrapes),
        "scrape_seconds_mean": round(sum(scrape_seconds) / max(len(scrape_seconds), 1), 4),
        "worker_cpu_seconds": round(cpu, 2),
        "load_average": load_average(),
    }
    if seen:
        result.update({
            "p50_seconds": round(percentile(seen, 50), 3),
            "p90_seconds": round(percentile(seen, 90), 3),
            "p99_seconds": round(percentile(seen, 99), 3),
            "max_seconds": round(max(seen), 3),
        })
    return result


def _wait_owned(worker: WorkerProcess, timeout: float) -> None:
    """Wait until the worker owns its case partitions (the group has settled)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = worker.scrape_text()
        match = re.search(r"^ketenmonitor_worker_owned_partitions (\S+)$", text, re.MULTILINE)
        if match and float(match.group(1)) > 0:
            return
        time.sleep(0.5)
    raise TimeoutError(f"worker owns no partitions after {timeout}s")


__all__ = ["latencies", "percentile", "run_latency"]
