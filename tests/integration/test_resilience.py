"""Numbers stay exact under kill -9, restarts, rescaling, broker restarts, duplicates, shuffles and
corrections. Each test compares the metrics of every live worker (each exports the whole chain)
with the independent batch computation of the clean log (tests/integration/batch_truth.py)."""

from __future__ import annotations

import os
import random
import threading
import time
from datetime import UTC, datetime

import pytest
from batch_truth import CASE_METRICS, comparable, expected_samples, wait_for_truth

from ketenmonitor.domain.chain import load_chain
from ketenmonitor.infra.consumer_progress import wait_until_caught_up
from ketenmonitor.infra.worker_process import Samples, WorkerProcess
from ketenmonitor.kafka_io import PartnerPublisher, ensure_topics
from ketenmonitor.settings import Settings
from ketenmonitor.simulator import contract_events, load_scenario, simulate_cases

CHAIN = load_chain()
pytestmark = [pytest.mark.integration, pytest.mark.fault]

FAST_FAILOVER = {"KETENMONITOR_SESSION_TIMEOUT_SECONDS": "6"}


class Run:
    """One isolated monitor run: its log, its settings, its expected numbers."""

    def __init__(self, monitor_env: dict[str, str], cases: int, seed: int) -> None:
        self.reference = float(int(time.time()) - 3600)
        self.age_reference = datetime.fromtimestamp(self.reference, UTC).isoformat()
        self.env = {
            **monitor_env,
            **FAST_FAILOVER,
            "KETENMONITOR_AGE_REFERENCE_TIME": self.age_reference,
        }
        self.settings = Settings(
            kafka_bootstrap=monitor_env["KETENMONITOR_KAFKA_BOOTSTRAP"],
            topic_prefix=monitor_env["KETENMONITOR_TOPIC_PREFIX"],
        )
        self.group = monitor_env["KETENMONITOR_APP_ID"]
        self.seed = seed
        self.cases = simulate_cases(
            load_scenario(), cases, self.reference - 2 * 365 * 86400, self.reference, seed=seed
        )
        self.events = list(contract_events(self.cases, CHAIN, seed=seed))
        self.expected = comparable(
            expected_samples(CHAIN, self.cases, self.reference), CASE_METRICS
        )
        ensure_topics(
            self.settings.kafka_bootstrap,
            [self.settings.partner_topic(p) for p in CHAIN.partner_ids]
            + [self.settings.cases_topic],
            6,
        )

    @property
    def topics(self) -> list[str]:
        return [self.settings.partner_topic(p) for p in CHAIN.partner_ids] + [
            self.settings.cases_topic
        ]

    def publish(self, events: list[dict] | None = None, rate: float = 0.0) -> None:
        interval = 1.0 / rate if rate else 0.0
        with PartnerPublisher(self.settings.kafka_bootstrap) as publisher:
            for n, event in enumerate(self.events if events is None else events):
                publisher.send(self.settings.partner_topic(event["organisation"]), event)
                if interval and n % 100 == 99:
                    time.sleep(interval * 100)

    def publish_in_background(self, rate: float) -> threading.Thread:
        thread = threading.Thread(target=self.publish, kwargs={"rate": rate}, daemon=True)
        thread.start()
        return thread

    def assert_converges(
        self, workers: list[WorkerProcess], timeout: float = 120.0, metrics: set[str] = CASE_METRICS
    ) -> Samples:
        """Wait until the group has committed everything and owns every partition, then until
        EVERY live worker's /metrics (each exports the whole chain) equals the batch
        computation; fail with the difference if one never does."""
        wait_until_caught_up(self.settings.kafka_bootstrap, self.group, self.topics, timeout=300)
        deadline = time.monotonic() + timeout
        owned_key = ("ketenmonitor_worker_owned_partitions", frozenset())
        while (owned := sum(w.scrape().get(owned_key, 0) for w in workers)) != 6:
            assert time.monotonic() < deadline, f"seed {self.seed}: {owned} partitions owned"
            time.sleep(1.0)
        expected = {k: v for k, v in self.expected.items() if k[0] in metrics}
        samples: Samples = {}
        for worker in workers:
            try:
                samples = wait_for_truth(worker.scrape, expected, metrics, timeout)
            except AssertionError as exc:
                raise AssertionError(
                    f"seed {self.seed}, worker {worker.metrics_url}: {exc}"
                ) from None
        return samples


def test_kill_9_of_a_worker_at_random_points_loses_and_doubles_nothing(monitor_env, start_worker):
    # KETENMONITOR_TEST_KILL_SEED replays a reported run's kill points.
    seed = int(
        os.environ.get("KETENMONITOR_TEST_KILL_SEED") or random.SystemRandom().randrange(1_000_000)
    )
    print(f"kill test seed {seed}")
    rng = random.Random(seed)
    run = Run(monitor_env, cases=10_000, seed=seed)
    stable = start_worker(run.env)
    victim = start_worker(run.env)
    publisher = run.publish_in_background(rate=4000)
    for _ in range(3):
        time.sleep(rng.uniform(3.0, 12.0))
        victim.kill()
        victim = start_worker(run.env)
    publisher.join()
    total = run.assert_converges([stable, victim])
    assert total[("ketenmonitor_cases_tracked", frozenset())] == sum(
        1 for c in run.cases if c.steps
    )


def test_rescaling_1_3_1_workers_while_the_stream_runs_keeps_the_numbers(monitor_env, start_worker):
    run = Run(monitor_env, cases=3000, seed=42)
    first = start_worker(run.env)
    publisher = run.publish_in_background(rate=1500)
    time.sleep(4)
    second, third = start_worker(run.env), start_worker(run.env)
    time.sleep(6)
    second.stop()
    third.stop()
    publisher.join()
    run.assert_converges([first])


def test_a_broker_restart_mid_stream_loses_nothing(monitor_env, start_worker, kafka_broker):
    run = Run(monitor_env, cases=3000, seed=7)
    worker = start_worker(run.env)
    run.publish()
    time.sleep(3)  # the worker is mid-stream
    kafka_broker.stop()
    time.sleep(2)
    kafka_broker.start()
    run.assert_converges([worker], timeout=180)


def test_duplicates_shuffles_and_corrections_end_in_the_numbers_of_the_clean_log(
    monitor_env, start_worker
):
    run = Run(monitor_env, cases=2000, seed=99)
    rng = random.Random(99)
    noisy: list[dict] = []
    for event in run.events:
        roll = rng.random()
        if roll < 0.10:
            # First reported with a wrong time, then corrected with a higher revision.
            wrong = {
                **event,
                "event_id": event["event_id"] + "-wrong",
                "occurred_at": run.events[0]["occurred_at"],
            }
            noisy += [wrong, {**event, "event_id": event["event_id"] + "-fix", "revision": 1}]
        elif roll < 0.15 and "outcome" not in event:
            # A milestone reported by mistake and retracted: the real one follows at revision 2.
            noisy += [
                {**event, "event_id": event["event_id"] + "-oops"},
                {
                    **event,
                    "event_id": event["event_id"] + "-undo",
                    "revision": 1,
                    "retracted": True,
                },
                {**event, "event_id": event["event_id"] + "-real", "revision": 2},
            ]
        else:
            noisy.append(event)
    duplicates = rng.sample(noisy, len(noisy) // 10)
    noisy += duplicates
    rng.shuffle(noisy)  # across and within partners
    worker = start_worker(run.env)
    run.publish(noisy)
    # Accepted deliveries include the duplicates and corrections; every case number must match.
    total = run.assert_converges(
        [worker], metrics=CASE_METRICS - {"ketenmonitor_events_accepted_total"}
    )
    # What counters cannot unsay is explicit: the duplicates and corrections are counted.
    assert total[("ketenmonitor_events_duplicate_total", frozenset())] == len(duplicates)
    assert total[("ketenmonitor_corrections_total", frozenset())] > 0


def test_a_broker_that_stops_answering_mid_batch_fails_the_batch_and_it_is_redone_exactly(
    monitor_env, start_worker, kafka_broker
):
    # A backlog keeps batches in flight; the broker then freezes (SIGSTOP) for longer than the
    # processing timeout: the batch in flight is not committed, the worker restores its partitions
    # from the changelogs and re-reads from the committed offsets once the broker answers again.
    run = Run(monitor_env, cases=10_000, seed=11)
    run.publish()
    worker = start_worker({**run.env, "KETENMONITOR_PROCESSING_TIMEOUT_SECONDS": "1"})
    time.sleep(2)  # mid-backlog
    with kafka_broker.frozen():
        time.sleep(3)
    run.assert_converges([worker], timeout=240)
    log = worker.log_path.read_text() if worker.log_path else ""
    assert "restoring owned partitions and retrying" in log  # the failure path did run
