"""Partner-side Kafka access with kafka-python: topic creation and a safe publisher.

    ensure_topics("127.0.0.1:9092", ["ketenmonitor.events.police"], partitions=6)
    with PartnerPublisher("127.0.0.1:9092") as publisher:
        publisher.send("ketenmonitor.events.police", event_dict)

The publisher is idempotent (no duplicates from its own retries), waits for all in-sync replicas
(acks=all) and retries transient errors; `flush()` raises if a send finally failed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError


def ensure_topics(bootstrap: str, names: Iterable[str], partitions: int) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="ketenmonitor-admin")
    try:
        existing = set(admin.list_topics())
        missing = [
            NewTopic(name, num_partitions=partitions, replication_factor=1)
            for name in names
            if name not in existing
        ]
        if missing:
            try:
                admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass  # created concurrently by another process: fine
    finally:
        admin.close()


class PartnerPublisher:
    def __init__(self, bootstrap: str, **config: Any) -> None:
        self._producer = KafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            enable_idempotence=True,
            retries=10,
            linger_ms=5,
            client_id="ketenmonitor-publisher",
            **config,
        )
        self._failures: list[BaseException] = []

    def send_raw(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        future = self._producer.send(topic, value=value, key=key)
        future.add_errback(self._failures.append)

    def send(self, topic: str, event: dict[str, Any]) -> None:
        self.send_raw(
            topic,
            json.dumps(event, separators=(",", ":")).encode(),
            key=str(event.get("event_id", "")).encode() or None,
        )

    def flush(self, timeout: float | None = 60.0) -> None:
        self._producer.flush(timeout=timeout)
        if self._failures:
            raise PublishError(f"{len(self._failures)} sends failed; first: {self._failures[0]!r}")

    def close(self) -> None:
        self._producer.close()

    def __enter__(self) -> PartnerPublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if exc[0] is None:
                self.flush()
        finally:
            self.close()


class PublishError(RuntimeError):
    pass
