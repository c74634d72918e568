"""The local broker from deploy/kafka really stores and serves messages."""

from __future__ import annotations

import time
import uuid

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

from ketenmonitor.infra.kafka_broker import LocalKafkaBroker

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
