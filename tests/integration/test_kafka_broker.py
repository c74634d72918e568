"""The local broker from deploy/kafka really stores and serves messages."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

from ketenmonitor.infra.kafka_broker import BrokerStartError, LocalKafkaBroker
from ketenmonitor.infra.script_server import ServerStartError
from ketenmonitor.infra.worker_process import free_port
from tests.integration.conftest import TEST_BROKER_JVM_OPTS

N_MESSAGES = 100
N_PARTITIONS = 3


def test_broker_is_running(kafka_broker: LocalKafkaBroker) -> None:
    assert kafka_broker.is_running()
    assert kafka_broker.bootstrap_servers == f"127.0.0.1:{kafka_broker.port}"


def test_produce_and_consume_round_trip(kafka_broker: LocalKafkaBroker) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    topic = f"roundtrip-{uuid.uuid4().hex[:8]}"

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="test-admin")
    try:
        admin.create_topics(
            [NewTopic(topic, num_partitions=N_PARTITIONS, replication_factor=1)]
        )
    finally:
        admin.close()

    # Keys spread the messages over the partitions; acks=all so that flush()
    # returning means the broker has them.
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    try:
        futures = [
            producer.send(topic, key=f"k{i % 10}".encode(), value=f"msg-{i}".encode())
            for i in range(N_MESSAGES)
        ]
        producer.flush(timeout=30)
        metadata = [f.get(timeout=30) for f in futures]
    finally:
        producer.close(timeout=10)
    assert {m.partition for m in metadata} == set(range(N_PARTITIONS))

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=f"test-{topic}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    try:
        consumer.subscribe([topic])
        received: list[tuple[int, bytes]] = []
        deadline = time.monotonic() + 60
        while len(received) < N_MESSAGES and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                received.extend((r.partition, r.value) for r in records)
        assert consumer.partitions_for_topic(topic) == set(range(N_PARTITIONS))
        assignment = consumer.assignment()
        end_offsets = consumer.end_offsets(list(assignment))
    finally:
        consumer.close()

    assert sorted(v for _, v in received) == sorted(
        f"msg-{i}".encode() for i in range(N_MESSAGES)
    )
    assert {p for p, _ in received} == set(range(N_PARTITIONS))
    assert assignment == {TopicPartition(topic, p) for p in range(N_PARTITIONS)}
    assert sum(end_offsets.values()) == N_MESSAGES


def test_a_restarted_broker_keeps_its_topics_and_a_stopped_one_is_not_running(
    tmp_path: Path,
) -> None:
    broker = LocalKafkaBroker(port=free_port(), controller_port=free_port(), data_dir=tmp_path,
                              jvm_opts=TEST_BROKER_JVM_OPTS)
    topic = f"kept-{uuid.uuid4().hex[:8]}"
    with broker as started:
        assert started is broker
        assert "Kafka Server started" in broker.log_tail()
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
        try:
            admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
        finally:
            admin.close()
    assert not broker.is_running()
    with broker:
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
        try:
            assert topic in admin.list_topics()
        finally:
            admin.close()
    assert not broker.is_running()
    # The second run's log replaced the first one's, which was kept beside it.
    assert (tmp_path / "kafka.log.prev").exists()


def test_a_broker_on_a_taken_port_fails_to_start_with_the_scripts_message(
    kafka_broker: LocalKafkaBroker, tmp_path: Path
) -> None:
    other = LocalKafkaBroker(port=kafka_broker.port, controller_port=free_port(), data_dir=tmp_path)
    with pytest.raises(BrokerStartError, match="already in use") as raised:
        other.start()
    assert isinstance(raised.value, ServerStartError)
    assert kafka_broker.is_running()


def test_a_secure_brokers_repr_never_shows_a_password(tmp_path: Path) -> None:
    password = "not-in-repr-0123456789"
    broker = LocalKafkaBroker(
        port=free_port(), data_dir=tmp_path, secure=True, users={"admin": password}
    )
    assert password not in repr(broker)
    assert "secure=True" in repr(broker)
