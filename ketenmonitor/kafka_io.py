"""Partner-side Kafka access with kafka-python: topic creation and a safe publisher.

    ensure_topics("127.0.0.1:9092", ["ketenmonitor.events.police"], partitions=6)
    with PartnerPublisher("127.0.0.1:9092") as publisher:
        publisher.send("ketenmonitor.events.police", event_dict)

The publisher is idempotent (no duplicates from its own retries), waits for all in-sync replicas
(acks=all) and retries transient errors; `flush()` raises if a send finally failed. Topics get
the replication of the settings (KETENMONITOR_REPLICATION_FACTOR, KETENMONITOR_MIN_INSYNC_REPLICAS),
else the cluster's defaults.

Against a secure broker both log in with the credentials of the environment (KETENMONITOR_KAFKA_*,
see Settings.kafka_python_security and docs/security.md) unless security settings are passed in:
a partner's publisher runs with that partner's principal and can write only that partner's topic.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterable, Mapping
from typing import Any, Self

from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from ketenmonitor.settings import Settings

# The keyword arguments by which a kafka-python client is configured for security.
_SECURITY_KEYS = ("security_protocol", "sasl_mechanism", "sasl_plain_username", "ssl_context")


def environment_security() -> dict[str, Any]:
    """kafka-python security settings from the environment ({} for a PLAINTEXT broker)."""
    return Settings().kafka_python_security()


def with_environment_security(config: dict[str, Any]) -> dict[str, Any]:
    """A client's `config` as given if it names any security setting, else on top of the
    environment's security settings."""
    if any(key in config for key in _SECURITY_KEYS):
        return config
    return {**environment_security(), **config}


class FlushOnExit:
    """What the publishers share: `with publisher:` flushes on a clean exit, and always closes."""

    def flush(self, timeout: float | None = 60.0) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if exc[0] is None:
                self.flush()
        finally:
            self.close()


def ensure_topics(
    bootstrap: str,
    names: Iterable[str],
    partitions: int,
    security: Mapping[str, Any] | None = None,
    settings: Settings | None = None,
) -> None:
    """Create the topics that do not exist yet; `security` defaults to the environment's, the
    replication to that of `settings` (default: the environment's)."""
    replication, configs = (settings or Settings()).new_topic_replication()
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="ketenmonitor-admin",
        **(environment_security() if security is None else security),
    )
    try:
        existing = set(admin.list_topics())
        missing = [
            NewTopic(
                name,
                num_partitions=partitions,
                replication_factor=replication,
                topic_configs=configs,
            )
            for name in names
            if name not in existing
        ]
        if missing:
            # Created concurrently by another process: fine.
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(missing)
            _wait_for_leaders(admin, [topic.name for topic in missing])
    finally:
        admin.close()


def _wait_for_leaders(admin: KafkaAdminClient, names: list[str], timeout: float = 120.0) -> None:
    """A topic just created has no partition leaders for a while (seconds on a busy machine):
    sends before then fail with NotLeaderForPartition and use up the producer's retries (a paced
    simulate on a busy machine logged 25 such retries within its first second). After `timeout`
    the producer's own errors report what is still wrong."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            described = admin.describe_topics(names)
        except KafkaError:
            return  # not allowed to describe, say: the producer's errors will tell
        if len(described) == len(names) and not any(map(_without_leaders, described)):
            return
        time.sleep(0.2)


def _without_leaders(topic: Mapping[str, Any]) -> bool:
    code = topic.get("error_code", 0)
    if code in (3, 5):  # UNKNOWN_TOPIC_OR_PARTITION, LEADER_NOT_AVAILABLE: not there yet
        return True
    partitions = topic.get("partitions") or []
    return code == 0 and (not partitions or any(p["leader_id"] < 0 for p in partitions))


class PartnerPublisher(FlushOnExit):
    def __init__(self, bootstrap: str, **config: Any) -> None:
        config = with_environment_security(config)
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
        if self._failures:  # a paced run must stop at its first lost message, not at its end
            raise PublishError(f"{len(self._failures)} sends failed; first: {self._failures[0]!r}")
        future = self._producer.send(topic, value=value, key=key)
        future.add_errback(self._failures.append)

    def send(self, topic: str, event: dict[str, Any], key_by_case: bool = False) -> None:
        """Keyed by the event id, or with `key_by_case` by the case key: Kafka's default
        partitioner then puts it in its case's partition (one hop, streams/placement.py)."""
        self.send_raw(
            topic,
            json.dumps(event, separators=(",", ":")).encode(),
            key=str(event.get("case_key" if key_by_case else "event_id", "")).encode() or None,
        )

    def flush(self, timeout: float | None = 60.0) -> None:
        self._producer.flush(timeout=timeout)
        if self._failures:
            raise PublishError(f"{len(self._failures)} sends failed; first: {self._failures[0]!r}")

    def close(self) -> None:
        self._producer.close()


class PublishError(RuntimeError):
    pass
