"""BatchPublisher against a real broker: every record once, spread over the partitions, and a
broker's refusal surfaces as PublishError from flush()."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from ketenmonitor.batch_publish import BatchPublisher
from ketenmonitor.kafka_io import PublishError, ensure_topics


def read_all(bootstrap: str, topic: str) -> list[tuple[int, bytes, bytes]]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        partitions = [
            TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))
        ]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        out: list[tuple[int, bytes, bytes]] = []
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            for tp, records in consumer.poll(timeout_ms=1000).items():
                out.extend((tp.partition, r.key, r.value) for r in records)
        return out
    finally:
        consumer.close()


def test_every_record_arrives_once_with_its_key_on_every_partition(kafka_broker):
    bootstrap = kafka_broker.bootstrap_servers
    topic = f"batch{uuid.uuid4().hex[:8]}.events.om"
    ensure_topics(bootstrap, [topic], partitions=6)
    sent = {f"e-{n}".encode(): b'{"n": %d}' % n for n in range(20_000)}
    # Small batches: many of them, so partitions rotate and back-pressure is exercised.
    with BatchPublisher(bootstrap, batch_bytes=16 * 1024, max_in_flight=4) as publisher:
        for key, value in sent.items():
            publisher.send_raw(topic, value, key=key)
    assert publisher.sent == len(sent)
    records = read_all(bootstrap, topic)
    assert Counter((k, v) for _, k, v in records) == Counter(sent.items())  # each exactly once
    per_partition = Counter(p for p, _, _ in records)
    assert set(per_partition) == set(range(6))
    assert max(per_partition.values()) < 2 * min(per_partition.values())


def test_a_refused_batch_makes_flush_raise(kafka_broker):
    bootstrap = kafka_broker.bootstrap_servers
    topic = f"small{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, 1, 1, topic_configs={"max.message.bytes": "2000"})])
    finally:
        admin.close()
    publisher = BatchPublisher(bootstrap, batch_bytes=64 * 1024)
    try:
        for n in range(500):  # ~30 KiB in one batch: larger than the topic allows
            publisher.send_raw(topic, b"x" * 50, key=b"%d" % n)
        with pytest.raises(PublishError):
            publisher.flush()
    finally:
        publisher.close()


def test_simulate_to_kafka_sends_exactly_what_it_writes_to_a_file(kafka_broker, tmp_path):
    import json
    import os
    import subprocess
    import sys

    bootstrap = kafka_broker.bootstrap_servers
    prefix = f"sim{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "KETENMONITOR_KAFKA_BOOTSTRAP": bootstrap,
        "KETENMONITOR_TOPIC_PREFIX": prefix,
        "KETENMONITOR_PSEUDONYM_KEY": "integration-test-key-0123456789",
    }
    flags = [
        "--cases",
        "400",
        "--seed",
        "4",
        "--end",
        "1764000000",
        "--duplicates",
        "0.05",
        "--malformed",
        "0.01",
        "--quiet",
    ]
    out = tmp_path / "sim.jsonl"
    for extra in (["--output", str(out)], []):
        done = subprocess.run(
            [sys.executable, "-m", "ketenmonitor.cli", "simulate", *flags, *extra],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        # --quiet: no progress bar (a fresh topic may still log a retried produce on stderr)
        assert "%|" not in done.stderr and "cases/s" not in done.stderr, done.stderr
    expected: Counter[tuple[str, bytes]] = Counter()
    for value in out.read_bytes().splitlines():
        try:
            organisation = json.loads(value).get("organisation")
        except ValueError:
            organisation = None
        expected[(organisation, value)] += 1
    received: Counter[tuple[str, bytes]] = Counter()
    for partner in ("police", "om", "courts", "cjib"):
        for _, _, value in read_all(bootstrap, f"{prefix}.events.{partner}"):
            received[(partner, value)] += 1
    # Malformed messages may not parse or name no organisation: compare the values per topic
    # for the parseable ones and the totals for all.
    assert sum(received.values()) == sum(expected.values())
    assert Counter(v for _, v in received.elements()) == Counter(v for _, v in expected.elements())
    for (organisation, value), n in expected.items():
        if organisation in ("police", "om", "courts", "cjib"):
            assert received[(organisation, value)] == n
