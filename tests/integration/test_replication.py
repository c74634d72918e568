"""On a three-node cluster: topics replicated as the settings say, workers that refuse topics with
less replication, and a broker killed (kill -9) mid-stream that costs nothing and rejoins."""

from __future__ import annotations

import os
import random
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from batch_truth import CASE_METRICS, comparable, expected_samples, net_samples
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic
from kafka.errors import KafkaError
from ketenmonitor.streams.topics import TABLES, describe_topics, monitor_topics, prepare_topics

from ketenmonitor.domain.chain import load_chain
from ketenmonitor.infra.consumer_progress import wait_until_caught_up
from ketenmonitor.infra.kafka_cluster import LocalKafkaCluster
from ketenmonitor.infra.worker_process import WorkerProcess
from ketenmonitor.kafka_io import PartnerPublisher
from ketenmonitor.settings import Settings
from ketenmonitor.simulator import contract_events, load_scenario, simulate_cases

CHAIN = load_chain()
TEST_PSEUDONYM_KEY = "integration-test-key-0123456789"
REPLICATED = {"KETENMONITOR_REPLICATION_FACTOR": "3", "KETENMONITOR_MIN_INSYNC_REPLICAS": "2"}


@pytest.fixture
def cluster_env(kafka_cluster: LocalKafkaCluster) -> dict[str, str]:
    """Worker settings on the cluster, isolated per test: own topics, group and changelogs."""
    run = uuid.uuid4().hex[:8]
    return {
        "KETENMONITOR_KAFKA_BOOTSTRAP": kafka_cluster.bootstrap_servers,
        "KETENMONITOR_TOPIC_PREFIX": f"r{run}",
        "KETENMONITOR_APP_ID": f"ketenmonitor-{run}",
        "KETENMONITOR_PSEUDONYM_KEY": TEST_PSEUDONYM_KEY,
        "KETENMONITOR_PARTITIONS": "6",
        "KETENMONITOR_SESSION_TIMEOUT_SECONDS": "6",
    }


def settings_of(env: dict[str, str]) -> Settings:
    return Settings(
        kafka_bootstrap=env["KETENMONITOR_KAFKA_BOOTSTRAP"],
        topic_prefix=env["KETENMONITOR_TOPIC_PREFIX"],
        app_id=env["KETENMONITOR_APP_ID"],
        replication_factor=env.get("KETENMONITOR_REPLICATION_FACTOR"),
        min_insync_replicas=env.get("KETENMONITOR_MIN_INSYNC_REPLICAS"),
    )


def all_topics(settings: Settings) -> list[str]:
    """Every topic a worker creates: partner topics, case topic, dead letters, changelogs."""
    return [
        *(name for name, _, _ in monitor_topics(settings, CHAIN)),
        *(settings.changelog_topic(t) for t in TABLES),
    ]


def min_insync_configs(bootstrap: str, topics: list[str]) -> dict[str, tuple[str, str]]:
    """topic -> (min.insync.replicas, where the value comes from: TOPIC_CONFIG or a default).

    A node that has just rejoined the cluster can answer for a topic without its configs (seen
    in a CI run, right after a killed node came back): asked again for up to 30 s."""
    deadline = time.monotonic() + 30
    while True:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="test-replication")
        try:
            answer = admin.describe_configs(
                [
                    ConfigResource(ConfigResourceType.TOPIC, t, ["min.insync.replicas"])
                    for t in topics
                ],
                config_filter="all",
            )
        finally:
            admin.close()
        configs = answer.get("topic", {})
        if all("min.insync.replicas" in configs.get(t, {}) for t in topics):
            return {
                name: (
                    found["min.insync.replicas"]["value"],
                    found["min.insync.replicas"]["config_source"],
                )
                for name, found in configs.items()
            }
        if time.monotonic() > deadline:
            raise AssertionError(f"no min.insync.replicas in the brokers' answer: {answer}")
        time.sleep(1.0)


def replication_counts(bootstrap: str, topics: list[str]) -> dict[str, set[tuple[int, int]]]:
    """topic -> the distinct (replicas, in-sync replicas) counts over its partitions."""
    layout = describe_topics(bootstrap, topics, {})
    return {t: {(len(r), len(isr)) for r, isr in parts.values()} for t, parts in layout.items()}


def test_topics_get_the_replication_of_the_settings_or_else_the_cluster_defaults(cluster_env):
    configured = settings_of(
        {
            **cluster_env,
            "KETENMONITOR_REPLICATION_FACTOR": "2",
            "KETENMONITOR_MIN_INSYNC_REPLICAS": "1",
        }
    )
    prepare_topics(configured, CHAIN)
    topics = all_topics(configured)
    # partner topics, case topic, dead letters, and the cases, ingest-stats and totals changelogs
    assert len(topics) == len(CHAIN.partner_ids) + 5
    assert replication_counts(configured.kafka_bootstrap, topics) == {t: {(2, 2)} for t in topics}
    assert min_insync_configs(configured.kafka_bootstrap, topics) == {
        t: ("1", "DYNAMIC_TOPIC_CONFIG") for t in topics
    }

    # Unset: replication factor -1 and no min.insync.replicas of the topic's own, so the cluster's
    # default.replication.factor (3) and min.insync.replicas (2) apply.
    defaults = settings_of(
        {
            **cluster_env,
            "KETENMONITOR_TOPIC_PREFIX": cluster_env["KETENMONITOR_TOPIC_PREFIX"] + "d",
            "KETENMONITOR_APP_ID": cluster_env["KETENMONITOR_APP_ID"] + "-d",
        }
    )
    assert defaults.replication_factor is None and defaults.min_insync_replicas is None
    prepare_topics(defaults, CHAIN)
    topics = all_topics(defaults)
    assert replication_counts(defaults.kafka_bootstrap, topics) == {t: {(3, 3)} for t in topics}
    for topic, (value, source) in min_insync_configs(defaults.kafka_bootstrap, topics).items():
        assert (topic, value) == (topic, "2") and source != "DYNAMIC_TOPIC_CONFIG"


def test_a_worker_refuses_topics_with_fewer_replicas_than_the_setting(cluster_env, tmp_path):
    prefix = cluster_env["KETENMONITOR_TOPIC_PREFIX"]
    admin = KafkaAdminClient(bootstrap_servers=cluster_env["KETENMONITOR_KAFKA_BOOTSTRAP"])
    try:
        admin.create_topics([NewTopic(f"{prefix}.cases", num_partitions=6, replication_factor=1)])
    finally:
        admin.close()
    worker = WorkerProcess({**cluster_env, **REPLICATED}, log_path=tmp_path / "worker.log")
    worker.start()
    try:
        with pytest.raises(RuntimeError, match="worker exited with 2"):
            worker.wait_ready(timeout=90)
    finally:
        worker.stop()
    log = (tmp_path / "worker.log").read_text()
    assert f"KETENMONITOR_REPLICATION_FACTOR is 3 but {prefix}.cases has 1 replica:" in log
    assert "Traceback" not in log
    assert (
        len([line for line in log.splitlines() if "KETENMONITOR_REPLICATION_FACTOR" in line]) == 1
    )


class Feed:
    """A simulated log published at a steady rate from a thread; failures are kept, not lost."""

    def __init__(self, bootstrap: str, settings: Settings, events: list[dict], rate: float) -> None:
        self.failure: BaseException | None = None
        self._args = (bootstrap, settings, events, rate)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        bootstrap, settings, events, rate = self._args
        try:
            with PartnerPublisher(bootstrap) as publisher:
                for n, event in enumerate(events):
                    publisher.send(settings.partner_topic(event["organisation"]), event)
                    if n % 100 == 99:
                        time.sleep(100 / rate)
        except BaseException as exc:
            self.failure = exc

    def join(self, timeout: float) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"publishing still running after {timeout}s"
        assert self.failure is None, f"publishing failed: {self.failure!r}"


def committed(bootstrap: str, group: str) -> int:
    """Offsets the group has committed, summed over its topics' partitions (0 while the group's
    coordinator is not there yet)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="test-replication")
    try:
        offsets = admin.list_group_offsets(group).get(group, {})
    except KafkaError as exc:
        if not exc.retriable:
            raise
        return 0
    finally:
        admin.close()
    return sum(max(0, meta.offset) for meta in offsets.values())


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not within {timeout}s")
        time.sleep(1.0)


@pytest.mark.fault
def test_a_broker_killed_mid_stream_loses_nothing_and_rejoins(
    kafka_cluster, cluster_env, tmp_path: Path
):
    # KETENMONITOR_TEST_KILL_SEED replays a reported run (the log, the kill point, the victim).
    seed = int(
        os.environ.get("KETENMONITOR_TEST_KILL_SEED") or random.SystemRandom().randrange(10**6)
    )
    print(f"replication kill test seed {seed}")
    started = time.monotonic()

    def phase(what: str) -> None:
        print(f"{time.monotonic() - started:6.1f}s {what}", flush=True)

    rng = random.Random(seed)
    env_settings = settings_of({**cluster_env, **REPLICATED})
    bootstrap = kafka_cluster.bootstrap_servers
    reference = float(int(time.time()) - 3600)
    env = {
        **cluster_env,
        **REPLICATED,
        "KETENMONITOR_AGE_REFERENCE_TIME": datetime.fromtimestamp(reference, UTC).isoformat(),
    }
    cases = simulate_cases(load_scenario(), 3000, reference - 2 * 365 * 86400, reference, seed=seed)
    events = list(contract_events(cases, CHAIN, seed=seed))
    expected = comparable(expected_samples(CHAIN, cases, reference), CASE_METRICS)

    worker = WorkerProcess(env, log_path=tmp_path / "worker.log").start()
    try:
        worker.wait_ready()
        # The worker created every topic as the settings say: 3 replicas, all in sync, and
        # min.insync.replicas 2 of the topic's own.
        topics = all_topics(env_settings)
        assert replication_counts(bootstrap, topics) == {t: {(3, 3)} for t in topics}
        own_min_insync = {t: ("2", "DYNAMIC_TOPIC_CONFIG") for t in topics}
        assert min_insync_configs(bootstrap, topics) == own_min_insync
        phase("worker ready, topics replicated 3 with min.insync.replicas 2")

        feed = Feed(bootstrap, env_settings, events, rate=1500)
        # Mid-stream, once the worker has committed part of the log: the killed node then holds
        # replicas of committed offsets and changelog records the worker needs again.
        group = env["KETENMONITOR_APP_ID"]
        wait_for(lambda: committed(bootstrap, group) >= 3000, 60, "3000 events committed")
        time.sleep(rng.uniform(0.0, 3.0))
        phase(f"{committed(bootstrap, group)} events committed")
        victim = kafka_cluster.node(rng.randint(1, 3))
        # It leads partitions the worker reads and writes (leadership moves when it dies): with 3
        # replicas on 3 nodes every node is the first, preferred, replica of some partitions.
        layout = describe_topics(bootstrap, topics, {})
        assert any(r[0] == victim.node_id for parts in layout.values() for r, _ in parts.values())
        victim.kill()
        phase(f"node {victim.node_id} killed")
        # The cluster fences the dead node and takes it out of every ISR; its replicas stay
        # assigned. A worker asking for 3 in-sync replicas now refuses to start, with one line.
        wait_for(
            lambda: all(
                counts == {(3, 2)} for counts in replication_counts(bootstrap, topics).values()
            ),
            60,
            "the killed node out of every ISR",
        )
        phase("the killed node is out of every ISR")
        strict = WorkerProcess(
            {**env, "KETENMONITOR_MIN_INSYNC_REPLICAS": "3"}, log_path=tmp_path / "strict.log"
        ).start()
        try:
            with pytest.raises(RuntimeError, match="worker exited with 2"):
                strict.wait_ready(timeout=90)
        finally:
            strict.stop()
        strict_log = (tmp_path / "strict.log").read_text()
        assert "KETENMONITOR_MIN_INSYNC_REPLICAS is 3 but " in strict_log
        assert "has 2 in-sync replicas of 3" in strict_log
        assert "Traceback" not in strict_log
        assert (
            sum("KETENMONITOR_MIN_INSYNC_REPLICAS" in line for line in strict_log.splitlines()) == 1
        )
        phase("a worker asking 3 in-sync replicas refused to start")

        victim.start()
        phase(f"node {victim.node_id} restarted")
        feed.join(timeout=120)
        phase(f"{len(events)} events published")
        topics_read = [env_settings.partner_topic(p) for p in CHAIN.partner_ids]
        topics_read.append(env_settings.cases_topic)
        wait_until_caught_up(bootstrap, env["KETENMONITOR_APP_ID"], topics_read, timeout=180)
        phase("the worker committed everything")
        deadline = time.monotonic() + 120
        while True:
            samples = worker.scrape()
            actual = comparable(net_samples(samples), CASE_METRICS)
            owned = samples.get(("ketenmonitor_worker_owned_partitions", frozenset()))
            if actual == expected and owned == 6:
                break
            if time.monotonic() > deadline:
                wrong = {k: (actual.get(k), v) for k, v in expected.items() if actual.get(k) != v}
                raise AssertionError(
                    f"seed {seed}: owned {owned}, {len(wrong)} series differ, "
                    f"e.g. {list(wrong.items())[:5]}"
                )
            time.sleep(2.0)
        assert samples[("ketenmonitor_cases_tracked", frozenset())] == sum(
            1 for c in cases if c.steps
        )
        phase("metrics equal the batch computation")

        # The restarted node caught up: its replicas are back in every ISR, the cluster's internal
        # topic of committed offsets (replicated 3, min.insync.replicas 2 as well) included.
        internal = "__consumer_offsets"
        wait_for(
            lambda: all(
                counts == {(3, 3)}
                for counts in replication_counts(bootstrap, [*topics, internal]).values()
            ),
            120,
            f"node {victim.node_id} back in every ISR",
        )
        phase(f"node {victim.node_id} back in every ISR")
        assert min_insync_configs(bootstrap, [internal])[internal][0] == "2"
    finally:
        worker.stop()
