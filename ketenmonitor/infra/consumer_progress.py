"""How far a consumer group is behind, read from the broker (committed offsets vs log ends).

    consumer_lag("127.0.0.1:9092", "ketenmonitor", ["ketenmonitor.events.police", ...]) -> 0
    wait_until_caught_up(bootstrap, group, topics, timeout=120)

Against a secure broker pass `security` (kafka-python settings of a principal that may describe the
group and the topics, e.g. an operator); without it the environment's credentials are used.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError

from ketenmonitor.settings import Settings


def consumer_lag(
    bootstrap: str, group: str, topics: Iterable[str], security: Mapping[str, Any] | None = None
) -> int:
    config = {
        "bootstrap_servers": bootstrap,
        "client_id": "ketenmonitor-progress",
        **(Settings().kafka_python_security() if security is None else security),
    }
    admin = KafkaAdminClient(**config)
    consumer = KafkaConsumer(**config)
    try:
        committed = admin.list_group_offsets(group).get(group, {})
        partitions = [
            TopicPartition(t, p)
            for t in topics
            for p in sorted(consumer.partitions_for_topic(t) or ())
        ]
        return uncommitted(committed, consumer.end_offsets(partitions), partitions)
    finally:
        consumer.close()
        admin.close()


def uncommitted(
    committed: Mapping[TopicPartition, Any],
    ends: Mapping[TopicPartition, int],
    partitions: Iterable[TopicPartition],
) -> int:
    """Messages of `partitions` up to their log `ends` beyond the group's `committed` offsets
    (OffsetAndMetadata per partition, as KafkaAdminClient.list_group_offsets gives them; a
    partition without a commit counts from offset 0)."""
    total = 0
    for tp in partitions:
        meta = committed.get(tp)
        done = meta.offset if meta is not None and meta.offset >= 0 else 0
        total += max(0, ends[tp] - done)
    return total


def wait_until_caught_up(
    bootstrap: str,
    group: str,
    topics: list[str],
    timeout: float = 180.0,
    settle: float = 0.0,
    security: Mapping[str, Any] | None = None,
) -> None:
    """Wait until the group has committed every message of `topics` (twice in a row)."""
    deadline = time.monotonic() + timeout
    zero_seen = False
    last: int | str | None = None
    while time.monotonic() < deadline:
        try:
            last = consumer_lag(bootstrap, group, topics, security)
        except KafkaError as exc:  # e.g. the group coordinator is not there yet on a new broker
            if not exc.retriable:
                raise
            last = repr(exc)
        if last == 0:
            if zero_seen:
                time.sleep(settle)
                return
            zero_seen = True
        else:
            zero_seen = False
        time.sleep(1.0)
    raise TimeoutError(f"consumer group {group} still {last} messages behind after {timeout}s")
