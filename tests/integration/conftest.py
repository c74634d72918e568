"""Fixtures for tests against real servers that the suite starts itself.

A server that cannot start makes the tests that need it fail (errors propagate): never a skip.
Ports can be moved with KETENMONITOR_TEST_KAFKA_PORT (the single broker: that port and the next)
and KETENMONITOR_TEST_KAFKA_CLUSTER_PORT (the three-node cluster: that port and the next five) so
that two suites can run side by side.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ketenmonitor.infra.kafka_broker import LocalKafkaBroker
from ketenmonitor.infra.kafka_cluster import DEFAULT_JVM_OPTS, LocalKafkaCluster
from ketenmonitor.infra.worker_process import WorkerProcess

# Not 9092/9093: a developer's own broker may be running there.
KAFKA_TEST_PORT = int(os.environ.get("KETENMONITOR_TEST_KAFKA_PORT", "19092"))
KAFKA_TEST_CONTROLLER_PORT = KAFKA_TEST_PORT + 1
KAFKA_TEST_CLUSTER_PORT = int(os.environ.get("KETENMONITOR_TEST_KAFKA_CLUSTER_PORT", "19300"))
TEST_PSEUDONYM_KEY = "integration-test-key-0123456789"
# The suite's brokers run with C1 only, as the test cluster's nodes do (infra/kafka_cluster.py):
# measured side by side, a broker took 3.6 instead of 5.2 CPU-seconds to be ready and 6.9 instead
# of 10.3 after 60,000 records and 20 s idle; test traffic never pays back C2's compilations.
TEST_BROKER_JVM_OPTS = DEFAULT_JVM_OPTS


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafkaBroker]:
    """A fresh single-node broker for the whole session.

    If it cannot start, BrokerStartError propagates and the tests using it error out with the
    script's output: a missing broker must never look like a pass.
    """
    broker = LocalKafkaBroker(
        port=KAFKA_TEST_PORT,
        controller_port=KAFKA_TEST_CONTROLLER_PORT,
        data_dir=tmp_path_factory.mktemp("kafka"),
        jvm_opts=TEST_BROKER_JVM_OPTS,
        # A restart mid-suite recovers every topic the suite made: slow on a loaded 2-core box.
        start_timeout=180,
    )
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="module")
def kafka_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafkaCluster]:
    """A fresh three-node KRaft cluster (each node broker and controller, -Xmx384m): replication
    factor 3 and min.insync.replicas 2 by default and for the internal topics. Started for the
    module that uses it (30-120 s on a busy 2-core machine) and stopped after it, so that three
    idle JVMs do not sit beside the rest of the suite."""
    cluster = LocalKafkaCluster(
        base_port=KAFKA_TEST_CLUSTER_PORT, data_dir=tmp_path_factory.mktemp("kafka-cluster")
    )
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def monitor_env(kafka_broker: LocalKafkaBroker, tmp_path: Path) -> dict[str, str]:
    """Worker settings isolated per test: own topics, consumer group and changelogs."""
    run = uuid.uuid4().hex[:8]
    return {
        "KETENMONITOR_KAFKA_BOOTSTRAP": kafka_broker.bootstrap_servers,
        "KETENMONITOR_TOPIC_PREFIX": f"t{run}",
        "KETENMONITOR_APP_ID": f"ketenmonitor-{run}",
        "KETENMONITOR_PSEUDONYM_KEY": TEST_PSEUDONYM_KEY,
        "KETENMONITOR_PARTITIONS": "6",
    }


@pytest.fixture
def start_worker(
    monitor_env: dict[str, str], tmp_path: Path
) -> Iterator[Callable[..., WorkerProcess]]:
    """Start real `ketenmonitor worker` processes; all are stopped at the end of the test."""
    workers: list[WorkerProcess] = []

    def start(
        extra_env: dict[str, str] | None = None, metrics_port: int | None = None
    ) -> WorkerProcess:
        n = len(workers)
        env = dict(monitor_env)
        worker = WorkerProcess(
            {**env, **(extra_env or {})}, metrics_port=metrics_port,
            log_path=tmp_path / f"worker-{n}.log",
        )
        workers.append(worker)
        worker.start()
        worker.wait_ready()
        return worker

    yield start
    for worker in workers:
        worker.stop()
