"""Every topic a worker uses, created before it joins the consumer group.

    prepare_topics(settings, chain)     # in `ketenmonitor worker`, before the consumer subscribes

A group member that subscribes to a topic the cluster metadata does not list yet is assigned none
of its partitions; creating every topic first, and waiting until the metadata lists them, closes
that race (it left a worker idle on a new cluster once). Changelogs are compacted: they are the
durable state, never subject to time-based deletion.
"""

from __future__ import annotations

import time
from typing import Any

from kafka import KafkaConsumer
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from ketenmonitor.domain.chain import Chain
from ketenmonitor.settings import Settings

CHANGELOG_CONFIG = {"cleanup.policy": "compact"}
# The worker's changelogged tables (streams/worker.py) and the published totals (streams/totals.py).
TABLES = ("cases", "ingest-stats", "totals")


def monitor_topics(settings: Settings, chain: Chain) -> list[tuple[str, int, dict[str, str]]]:
    """(name, partitions, config) of the partner, case and dead-letter topics."""
    return [
        *((settings.partner_topic(p), settings.partitions, {}) for p in chain.partner_ids),
        (settings.cases_topic, settings.partitions, {}),
        (settings.dead_letter_topic, 1, {}),
    ]


def create_monitor_topics(settings: Settings, chain: Chain) -> None:
    """`ketenmonitor topics`: the monitor's topics without starting a worker."""
    _create_missing(
        settings.kafka_bootstrap, monitor_topics(settings, chain), settings.kafka_python_security()
    )


def prepare_topics(settings: Settings, chain: Chain, timeout: float = 60.0) -> None:
    security = settings.kafka_python_security()
    wanted = [
        *monitor_topics(settings, chain),
        *((settings.changelog_topic(t), settings.partitions, CHANGELOG_CONFIG) for t in TABLES),
    ]
    _create_missing(settings.kafka_bootstrap, wanted, security)
    _wait_until_listed(settings.kafka_bootstrap, {name for name, _, _ in wanted}, security, timeout)
    # A case's state partition is computed from its pseudonym and `partitions`: the case topic and
    # the changelogs must have exactly that many partitions, or cases would be split or lost.
    keyed = [settings.cases_topic, *(settings.changelog_topic(t) for t in TABLES)]
    _check_partitions(settings.kafka_bootstrap, keyed, settings.partitions, security)


class TopicLayoutError(RuntimeError):
    """An existing topic does not have the partitions the worker's settings require."""


def _check_partitions(
    bootstrap: str, names: list[str], partitions: int, security: dict[str, Any]
) -> None:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, client_id="ketenmonitor-worker", **security)
    try:
        found = {name: len(consumer.partitions_for_topic(name) or ()) for name in names}
    finally:
        consumer.close()
    wrong = {name: n for name, n in found.items() if n != partitions}
    if wrong:
        listed = ", ".join(f"{name} has {n}" for name, n in sorted(wrong.items()))
        raise TopicLayoutError(
            f"KETENMONITOR_PARTITIONS is {partitions} but {listed} partitions: run the workers with "
            "the partition count the topics were created with (or recreate the topics and replay)"
        )


def _create_missing(
    bootstrap: str, wanted: list[tuple[str, int, dict[str, str]]], security: dict[str, Any]
) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="ketenmonitor-worker", **security)
    try:
        existing = set(admin.list_topics())
        for name, partitions, config in wanted:
            if name in existing:
                continue
            try:
                admin.create_topics(
                    [NewTopic(name, num_partitions=partitions, replication_factor=1, topic_configs=config)]
                )
            except TopicAlreadyExistsError:
                pass  # another worker was quicker
    finally:
        admin.close()


def _wait_until_listed(
    bootstrap: str, names: set[str], security: dict[str, Any], timeout: float
) -> None:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, client_id="ketenmonitor-worker", **security)
    try:
        deadline = time.monotonic() + timeout
        while True:
            missing = names - set(consumer.topics())
            if not missing:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"topics not in the cluster metadata after {timeout}s: {sorted(missing)}")
            time.sleep(0.2)
    finally:
        consumer.close()
