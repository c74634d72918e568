"""Numbers stay exact under kill -9, restarts, rescaling, broker restarts, duplicates, shuffles and
corrections. Each test compares the metrics of every live worker (each exports the whole chain)
with the independent batch computation of the clean log (tests/integration/batch_truth.py)."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import random
import re
import signal
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from batch_truth import (
    CASE_METRICS,
    WITHDRAWN_OF,
    comparable,
    expected_samples,
    net_samples,
    wait_for_truth,
)

from ketenmonitor.domain.chain import load_chain
from ketenmonitor.infra.consumer_progress import consumer_lag, wait_until_caught_up
from ketenmonitor.infra.worker_process import Samples, WorkerProcess, parse_samples
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
        while (owned := sum(_scrape(w, 30.0).get(owned_key, 0) for w in workers)) != 6:
            assert time.monotonic() < deadline, f"seed {self.seed}: {owned} partitions owned"
            time.sleep(1.0)
        expected = {k: v for k, v in self.expected.items() if k[0] in metrics}
        samples: Samples = {}
        for worker in workers:
            try:
                # A whole-chain scrape takes seconds when the shared test machine is loaded.
                scrape = functools.partial(_scrape, worker, 30.0)
                samples = wait_for_truth(scrape, expected, metrics, timeout)
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


# -- issue #16: never stuck, never doubled ------------------------------------------------------


def _health(worker: WorkerProcess, timeout: float = 2.0) -> tuple[int, float | None]:
    """(/healthz status, ketenmonitor_worker_healthy) of a live worker; (0, None) if it does not
    answer in time."""
    url = f"http://127.0.0.1:{worker.metrics_port}"
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=timeout) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except OSError:
        return 0, None
    try:
        samples = _scrape(worker, timeout)
    except OSError:
        return status, None
    return status, samples.get(("ketenmonitor_worker_healthy", frozenset()))


def _scrape(worker: WorkerProcess, timeout: float) -> Samples:
    with urllib.request.urlopen(worker.metrics_url, timeout=timeout) as response:
        return parse_samples(response.read().decode())


def _problem_lines(worker: WorkerProcess) -> list[str]:
    log = worker.log_path.read_text(errors="replace") if worker.log_path else ""
    return [line for line in log.splitlines() if " ERROR " in line or " WARNING " in line]


def _dump(engine):
    """Every row of the store (tests/integration/store/store_helpers.py, loaded by path)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parent / "store" / "store_helpers.py"
    spec = importlib.util.spec_from_file_location("ketenmonitor_tests_store_helpers", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dump(engine)


def _end_offsets(bootstrap: str, topic: str) -> dict:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, client_id="test-ends")
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        return dict(consumer.end_offsets(tps))
    finally:
        consumer.close()


def _committed(bootstrap: str, group: str) -> dict:
    """The group's committed offsets; retriable errors (NotCoordinatorError while a loaded broker
    loads the offsets partition) are retried with a new client for up to a minute."""
    from kafka.admin import KafkaAdminClient
    from kafka.errors import KafkaError

    deadline = time.monotonic() + 60
    while True:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="test-committed")
        try:
            offsets = admin.list_group_offsets(group).get(group, {})
            return {tp: meta.offset for tp, meta in offsets.items()}
        except KafkaError as exc:
            if not exc.retriable or time.monotonic() > deadline:
                raise
        finally:
            admin.close()
        time.sleep(1.0)


def test_a_broker_down_for_two_minutes_leaves_workers_alive_unhealthy_quiet_then_exact(
    monitor_env, start_worker, kafka_broker
):
    # Issue #16: the broker process stopped for 120 s while two workers run and a feed is
    # pending. The workers stay up, say they are unhealthy (/healthz 503 and the gauge at 0),
    # log each change of state once rather than every retry, and end exact.
    run = Run(monitor_env, cases=10_000, seed=16)
    run.publish()
    workers = [start_worker(run.env), start_worker(run.env)]
    time.sleep(2)
    assert consumer_lag(run.settings.kafka_bootstrap, run.group, run.topics) > 0  # pending
    kafka_broker.stop()
    outage_start = time.monotonic()
    seen: list[list[tuple[float, int, float | None]]] = [[] for _ in workers]
    while (elapsed := time.monotonic() - outage_start) < 120:
        for worker, health in zip(workers, seen, strict=True):
            assert worker.process is not None and worker.process.poll() is None, "worker died"
            health.append((elapsed, *_health(worker)))
        time.sleep(2)
    kafka_broker.start()
    for worker, health in zip(workers, seen, strict=True):
        late = [(status, gauge) for t, status, gauge in health if t > 30]
        # From 30 s into the outage on, every answer says unhealthy, on both channels (a scrape
        # that timed out on the loaded test machine reads None and says nothing).
        answered = [g for _, g in late if g is not None]
        assert late and all(s == 503 for s, _ in late), (worker.metrics_url, late)
        assert answered and all(g == 0.0 for g in answered), (worker.metrics_url, late)
    run.assert_converges(workers, timeout=240)
    for worker in workers:
        assert worker.process is not None and worker.process.poll() is None
        deadline = time.monotonic() + 60
        while _health(worker)[0] != 200:
            assert time.monotonic() < deadline, f"{worker.metrics_url} still unhealthy"
            time.sleep(1)
        # Once per change of state, not per attempt: no line (logger and message, numbers
        # aside) more than 3 times, and few in all (aiokafka alone wrote ~14,000 per worker
        # before). Each client component reports going down and coming back once, so the total
        # is a few dozen (21 and 24 in a CI run), whatever the outage's length.
        problems = _problem_lines(worker)
        # A freeze of the event loop past the freeze limit is a change of state of its own (the
        # worker suspends itself until the group assigns again), reported once per episode; on
        # a machine at load 14 a loop starved of CPU had five such episodes in the two minutes.
        repeats = Counter(
            re.sub(r"\d+", "N", line.split(" ", 3)[-1][:120])
            for line in problems
            if "the worker was frozen for" not in line
        )
        assert max(repeats.values(), default=0) <= 3, repeats.most_common(5)
        assert len(problems) < 50, "\n".join(problems[:60])


@pytest.fixture(params=["sqlite", "postgresql"])
def stallable_store(request, tmp_path):
    """(store URL, lock): `lock()` takes every table of the case-fact store away from the worker
    (SQLite: an exclusive transaction on the file; PostgreSQL: ACCESS EXCLUSIVE locks on the
    tables in another session) until `release()`; a real PostgreSQL server for the second."""
    if request.param == "sqlite":
        db = tmp_path / "store.db"

        def lock_sqlite():
            conn = sqlite3.connect(db, timeout=30, isolation_level=None)
            conn.execute("BEGIN EXCLUSIVE")

            def release():
                conn.execute("ROLLBACK")
                conn.close()

            return release

        yield f"sqlite:///{db}", lock_sqlite
        return
    import shutil
    import tempfile

    import psycopg

    from ketenmonitor.infra.postgres import LocalPostgres
    from ketenmonitor.infra.worker_process import free_port

    base = Path(tempfile.mkdtemp(prefix="ketenmonitor-test-pg-"))  # the cluster runs as postgres
    base.chmod(0o755)
    server = LocalPostgres(port=free_port(), data_dir=base / "data", fsync=False)
    server.start()

    def lock_postgres():
        conn = psycopg.connect(f"postgresql://postgres@127.0.0.1:{server.port}/postgres")
        tables = [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        )]
        assert {"cases", "case_milestones"} <= set(tables), tables
        # NOWAIT, again until all are free at once: a LOCK that waits for one table while it
        # holds another can deadlock with a worker transaction holding one and wanting the other
        # (seen in a clean-clone run; PostgreSQL then fails one side, possibly the worker's).
        deadline = time.monotonic() + 30
        while True:
            try:
                conn.execute(f"LOCK TABLE {', '.join(tables)} IN ACCESS EXCLUSIVE MODE NOWAIT")
                break
            except psycopg.errors.LockNotAvailable:
                conn.rollback()
                assert time.monotonic() < deadline, "the store's tables were never all free"
                time.sleep(0.05)

        def release():
            conn.rollback()
            conn.close()

        return release

    try:
        yield server.url_for("postgres"), lock_postgres
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


def test_a_store_stalled_past_the_processing_timeout_holds_the_commits_without_livelock(
    monitor_env, start_worker, stallable_store, tmp_path, monkeypatch, capsys
):
    # Issue #16: another connection holds every table of the case-fact store (SQLite, then
    # PostgreSQL) for 4x the processing timeout while the feed runs. No offset moves while the
    # store cannot take the facts, the worker does not restore in a loop, and it ends exact with
    # every fact stored.
    from ketenmonitor.cli import main
    from ketenmonitor.store import make_engine

    store_url, lock_store = stallable_store
    run = Run(monitor_env, cases=3000, seed=23)
    worker = start_worker(
        {
            **run.env,
            "KETENMONITOR_STORE_URL": store_url,
            "KETENMONITOR_PROCESSING_TIMEOUT_SECONDS": "2",
        }
    )
    publisher = run.publish_in_background(rate=2000)
    bootstrap, cases_topic = run.settings.kafka_bootstrap, run.settings.cases_topic

    def case_offsets() -> dict:
        return {
            tp: offset
            for tp, offset in _committed(bootstrap, run.group).items()
            if tp.topic == cases_topic
        }

    deadline = time.monotonic() + 120
    while not any(case_offsets().values()):  # facts are being stored and committed
        assert time.monotonic() < deadline, "no case offset committed"
        time.sleep(0.5)
    release_store = lock_store()
    try:
        time.sleep(1)  # a store write that finished before the lock may still commit
        held = case_offsets()
        health = []
        for _ in range(7):
            time.sleep(1)
            # Partner offsets of batches without case events may commit; case offsets may not.
            assert case_offsets() == held
            health.append(_health(worker, 10.0)[0])
        ends = _end_offsets(bootstrap, cases_topic)
        assert sum(ends.values()) > sum(held.values())  # facts were waiting
        assert health[-1] == 503, health  # the store stage is overdue: unhealthy
    finally:
        release_store()
    publisher.join()
    run.assert_converges([worker])
    log = worker.log_path.read_text() if worker.log_path else ""
    # No restore after the first one, let alone a loop of them (a rejoin after a stall of the
    # loaded machine keeps its partitions without reading them again).
    assert "restoring" not in log, log[-3000:]
    assert log.count("streams.tables restored ") == 1, log[-3000:]
    assert worker.process is not None and worker.process.poll() is None

    # Every fact: the store equals a replay of the same log from the file.
    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps(e) + "\n" for e in run.events), encoding="utf-8")
    for name, value in monitor_env.items():
        monkeypatch.setenv(name, value)
    replayed = f"sqlite:///{tmp_path / 'replayed.db'}"
    assert main(["replay", "--from-file", str(events), "--no-progress",
                 "--store-url", replayed]) == 0
    capsys.readouterr()
    rows = []
    for url in (store_url, replayed):
        engine = make_engine(url)
        try:
            rows.append(_dump(engine))
        finally:
            engine.dispose()
    assert len(rows[0]["cases"]) == sum(1 for c in run.cases if c.steps)
    assert rows[0] == rows[1]


# Counters whose every series Prometheus must see only grow, per worker.
COUNTERS = {
    "ketenmonitor_events_accepted_total",
    "ketenmonitor_stage_inflow_cases_total",
    "ketenmonitor_stage_outflow_cases_total",
    "ketenmonitor_cases_closed_total",
    "ketenmonitor_segment_lead_time_seconds_count",
    *WITHDRAWN_OF.values(),
}
NET_TOTALS = {
    "ketenmonitor_stage_inflow_cases_total",
    "ketenmonitor_stage_outflow_cases_total",
    "ketenmonitor_cases_closed_total",
    "ketenmonitor_segment_lead_time_seconds_count",
}


@pytest.mark.parametrize("delivery", ["at-least-once", "exactly-once"])
def test_a_frozen_and_resumed_worker_never_doubles_or_lowers_the_chain(
    monitor_env, start_worker, delivery
):
    # Issue #16: one of two workers is frozen (SIGSTOP) past the session timeout while the feed
    # runs, then resumed. Both workers' /metrics are read over and over throughout (0.2 s apart;
    # a whole-chain collection alone takes 0.5-2 s of CPU here): no counter series ever goes
    # down, no figure is ever above the truth, and both end exact; in both delivery modes. (In
    # exactly-once mode the case state should also see every event once; runs on a loaded
    # machine still counted 211 to 960 duplicate case events, the cause of the last of them not
    # found: docs/operations.md, Delivery. Not asserted until it is.)
    run = Run(monitor_env, cases=3000, seed=31)
    if delivery == "exactly-once":
        env = {**run.env, "KETENMONITOR_EXACTLY_ONCE": "true"}
        stable = start_worker({**env, "KETENMONITOR_WORKER_ID": "stable"})
        zombie = start_worker({**env, "KETENMONITOR_WORKER_ID": "zombie"})
    else:
        stable, zombie = start_worker(run.env), start_worker(run.env)
    publisher = run.publish_in_background(rate=1500)
    scrapes: dict[WorkerProcess, list[tuple[float, Samples]]] = {stable: [], zombie: []}
    stop = threading.Event()

    def poll(worker: WorkerProcess) -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):  # frozen: no answer
                samples = _scrape(worker, 30.0)
                scrapes[worker].append((time.monotonic(), samples))
            time.sleep(0.2)

    pollers = [threading.Thread(target=poll, args=(w,), daemon=True) for w in scrapes]
    for thread in pollers:
        thread.start()
    time.sleep(4)
    # Frozen while it owns partitions and exports them (on a loaded machine the join can take
    # longer than the 4 s above; a worker frozen before its first assignment is no zombie).
    owned = ("ketenmonitor_worker_owned_partitions", frozenset())
    deadline = time.monotonic() + 120
    while not zombie.scrape().get(owned):
        assert time.monotonic() < deadline, "the second worker never got partitions"
        time.sleep(0.5)
    assert zombie.process is not None
    os.killpg(zombie.process.pid, signal.SIGSTOP)
    frozen_at = time.monotonic()
    time.sleep(12)  # twice the session timeout: the group moves the zombie's partitions
    os.killpg(zombie.process.pid, signal.SIGCONT)
    resumed_at = time.monotonic()
    publisher.join()
    try:
        run.assert_converges([stable, zombie])
    finally:
        stop.set()
        for thread in pollers:
            thread.join()
    # Read throughout the episode: the takeover while the zombie was frozen, its return and the
    # rebalances after it (a whole-chain scrape takes seconds on the loaded test machine).
    assert sum(1 for t, _ in scrapes[stable] if frozen_at < t < resumed_at + 30) >= 2
    assert sum(1 for t, _ in scrapes[zombie] if t > resumed_at) >= 2

    truth = run.expected
    truth_sums = {name: sum(v for k, v in truth.items() if k[0] == name) for name in NET_TOTALS}
    accepted = "ketenmonitor_events_accepted_total"
    tracked = ("ketenmonitor_cases_tracked", frozenset())
    for worker, samples_list in scrapes.items():
        last: dict = {}
        for n, (_, samples) in enumerate(samples_list):
            if tracked not in samples:
                continue  # totals view not caught up: no chain series at all, not lower ones
            where = f"{worker.metrics_url} scrape {n}"
            for key, before in last.items():
                assert samples.get(key, 0.0) >= before, (where, key, before, samples.get(key))
            last = {k: v for k, v in samples.items() if k[0] in COUNTERS}
            net = net_samples(samples)
            for key, value in net.items():
                if key[0] == accepted:
                    assert value <= truth.get(key, 0.0), (where, key, value)
            for name, expected in truth_sums.items():
                got = sum(v for k, v in net.items() if k[0] == name)
                assert got <= expected, (where, name, got, expected)
            assert samples[tracked] <= sum(1 for c in run.cases if c.steps), where
    log = zombie.log_path.read_text() if zombie.log_path else ""
    assert "the worker was frozen for" in log  # it knew it may no longer own its partitions


