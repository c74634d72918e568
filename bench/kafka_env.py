"""A broker for the benchmark, isolated worker settings per run, and a fast lag watch.

    with bench_broker(port=39092) as broker:
        env = run_env(broker, "replay")                  # own topics, group, changelogs, key
        watch = LagWatch(broker.bootstrap_servers)
        watch.lag(env["KETENMONITOR_APP_ID"], topics)    # messages not yet committed

LagWatch keeps its Kafka clients open between polls (ketenmonitor.infra.consumer_progress opens
new ones per call, which is too slow to time a run at sub-second resolution).
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError

from bench.core_loop import BENCH_PSEUDONYM_KEY
from ketenmonitor.infra.consumer_progress import uncommitted
from ketenmonitor.infra.kafka_broker import LocalKafkaBroker
from ketenmonitor.kafka_io import ensure_topics

BENCH_DIR = Path(__file__).resolve().parents[1] / ".cache" / "bench"
PARTITIONS = 6


@contextmanager
def bench_broker(port: int) -> Iterator[LocalKafkaBroker]:
    """A fresh broker (empty data dir) for one benchmark run; stopped and wiped afterwards."""
    data_dir = BENCH_DIR / f"kafka-{port}"
    shutil.rmtree(data_dir, ignore_errors=True)
    # A JVM on the loaded shared 2-core machine may need minutes to start.
    broker = LocalKafkaBroker(
        port=port, controller_port=port + 1, data_dir=data_dir, start_timeout=180
    )
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def run_env(broker: LocalKafkaBroker, name: str, **extra: str) -> dict[str, str]:
    """Worker settings of one run: its own topic prefix and group, so its own changelog topics.

    The worker keeps no local state (streams/worker.py restores from the changelogs), so two
    workers started with the same env share their state through Kafka, as a restart does.
    """
    run = f"{name}-{uuid.uuid4().hex[:6]}"
    return {
        "KETENMONITOR_KAFKA_BOOTSTRAP": broker.bootstrap_servers,
        "KETENMONITOR_TOPIC_PREFIX": f"bench-{run}",
        "KETENMONITOR_APP_ID": f"bench-{run}",
        "KETENMONITOR_PSEUDONYM_KEY": BENCH_PSEUDONYM_KEY,
        "KETENMONITOR_PARTITIONS": str(PARTITIONS),
        **extra,
    }


def create_topics(bootstrap: str, topics: list[str]) -> None:
    ensure_topics(bootstrap, topics, PARTITIONS)
    # Topic metadata takes a moment to reach every client; producing too early only logs warnings.
    time.sleep(0.5)


class LagWatch:
    def __init__(self, bootstrap: str) -> None:
        self.admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="bench-lag")
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, client_id="bench-lag")
        self._partitions: dict[str, list[TopicPartition]] = {}

    def _partitions_of(self, topic: str) -> list[TopicPartition]:
        if topic not in self._partitions:
            found = self.consumer.partitions_for_topic(topic) or set()
            if not found:
                return []
            self._partitions[topic] = [TopicPartition(topic, p) for p in sorted(found)]
        return self._partitions[topic]

    def lag(self, group: str, topics: list[str]) -> int:
        """Messages of `topics` the group has not committed; -1 while the group is not known yet.

        Committed offsets are read before log ends, so 0 means every message that existed when
        the commits were read has been processed (forwards are produced before a commit).
        """
        try:
            committed = self.admin.list_group_offsets(group).get(group, {})
        except KafkaError as exc:  # e.g. no coordinator yet for a brand-new group
            if not exc.retriable:
                raise
            return -1
        partitions = [tp for t in topics for tp in self._partitions_of(t)]
        return uncommitted(committed, self.consumer.end_offsets(partitions), partitions)

    def committed(self, group: str, topic: str) -> int:
        """Sum of the group's committed offsets on `topic` (its messages processed, if fresh)."""
        try:
            committed = self.admin.list_group_offsets(group).get(group, {})
        except KafkaError as exc:
            if not exc.retriable:
                raise
            return 0
        return sum(
            max(0, meta.offset) for tp, meta in committed.items() if tp.topic == topic
        )

    def close(self) -> None:
        self.consumer.close()
        self.admin.close()
