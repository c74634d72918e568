"""Every topic a worker uses, created before it joins the consumer group.

    prepare_topics(settings, chain)     # in `ketenmonitor worker`, before the consumer subscribes

A group member that subscribes to a topic the cluster metadata does not list yet is assigned none
of its partitions; creating every topic first, and waiting until the metadata lists them, closes
that race (it left a worker idle on a new cluster once). Changelogs are compacted: they are the
durable state, never subject to time-based deletion.

Replication comes from the settings (KETENMONITOR_REPLICATION_FACTOR,
KETENMONITOR_MIN_INSYNC_REPLICAS), else the cluster's defaults (replication factor -1, no
min.insync.replicas of the topic's own). A worker refuses to start (TopicLayoutError, exit 2) when
a topic it uses has fewer replicas than the setting, or a partition fewer in-sync replicas than
the min.insync setting: an acks=all write there is weaker than the settings promise, or fails.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any, TypeVar

from kafka import KafkaConsumer
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import (
    KafkaConnectionError,
    LeaderNotAvailableError,
    NoError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
    for_code,
)

from ketenmonitor.domain.chain import Chain
from ketenmonitor.settings import Settings

CHANGELOG_CONFIG = {"cleanup.policy": "compact"}  # plus max.compaction.lag.ms: changelog_config
DEAD_LETTER_MAX_BYTES = 8 * 1024 * 1024
DEAD_LETTER_CONFIG = {"max.message.bytes": str(DEAD_LETTER_MAX_BYTES)}
# The worker's changelogged tables (streams/worker.py) and the published totals (streams/totals.py).
TABLES = ("cases", "ingest-stats", "totals")
PLACEMENT_TABLE = "placement"
CLIENT_ID = "ketenmonitor-worker"
T = TypeVar("T")


def monitor_topics(settings: Settings, chain: Chain) -> list[tuple[str, int, dict[str, str]]]:
    """(name, partitions, config) of the partner, case and dead-letter topics."""
    return [
        *((settings.partner_topic(p), settings.partitions, {}) for p in chain.partner_ids),
        (settings.cases_topic, settings.partitions, {}),
        # A dead letter is the original message plus headers: room for any partner message.
        (settings.dead_letter_topic, 1, DEAD_LETTER_CONFIG),
    ]


def create_monitor_topics(settings: Settings, chain: Chain) -> None:
    """`ketenmonitor topics`: the monitor's topics without starting a worker."""
    _create_missing(settings, monitor_topics(settings, chain))


def changelog_config(settings: Settings) -> dict[str, str]:
    """Compacted, and a superseded record compacted away within the setting's lag: without a
    lag, Kafka never compacts the active segment (up to 1 GiB or 7 days), and a restore reads
    every state a case ever had and the states of cases retired since."""
    lag_ms = round(settings.changelog_max_compaction_lag_seconds * 1000)
    return {**CHANGELOG_CONFIG, "max.compaction.lag.ms": str(lag_ms)}


def worker_topics(settings: Settings, chain: Chain) -> list[tuple[str, int, dict[str, str]]]:
    """(name, partitions, config) of every topic a worker uses: the monitor's topics, the table
    changelogs and the placement record (streams/placement.py: one record, one partition)."""
    changelog = changelog_config(settings)
    return [
        *monitor_topics(settings, chain),
        *((settings.changelog_topic(t), settings.partitions, changelog) for t in TABLES),
        (settings.changelog_topic(PLACEMENT_TABLE), 1, changelog),
    ]


def prepare_topics(settings: Settings, chain: Chain, timeout: float = 60.0) -> None:
    security = settings.kafka_python_security()
    wanted = worker_topics(settings, chain)
    names = [name for name, _, _ in wanted]
    _create_missing(settings, wanted)
    _wait_until_listed(settings.kafka_bootstrap, set(names), security, timeout)
    # One broker's view of every topic: on a cluster another broker may not know a new topic yet.
    layout = describe_topics(settings.kafka_bootstrap, names, security, timeout)
    # A case's state partition is computed from its pseudonym and `partitions`: the case topic and
    # the changelogs must have exactly that many partitions, or cases would be split or lost.
    # A one-hop partner's partition p is applied to state partition p: co-partitioned too.
    keyed = [
        settings.cases_topic,
        *(settings.changelog_topic(t) for t in TABLES),
        *(settings.partner_topic(p) for p in sorted(settings.one_hop_partner_ids)),
    ]
    _check_partitions(layout, keyed, settings.partitions)
    check_replication(settings, layout)


class TopicLayoutError(RuntimeError):
    """An existing topic does not have the partitions the worker's settings require."""


class UnderReplicatedError(TopicLayoutError):
    """A topic has fewer replicas, or fewer in-sync replicas, than the worker's settings require."""


# topic -> partition -> (replica broker ids, in-sync replica broker ids)
Layout = dict[str, dict[int, tuple[list[int], list[int]]]]


def describe_topics(
    bootstrap: str, names: list[str], security: dict[str, Any], timeout: float = 10.0
) -> Layout:
    """The partitions of `names` with their replicas and in-sync replicas, from the cluster
    metadata (needs only Describe on the topics). A topic the answering broker does not know yet
    is asked again until `timeout`."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id=CLIENT_ID, **security)
    deadline = time.monotonic() + timeout
    try:
        while True:
            layout: Layout = {}
            pending = []
            for topic in _retrying(lambda: admin.describe_topics(names), timeout):
                error = for_code(topic["error_code"])
                not_yet = error in (UnknownTopicOrPartitionError, LeaderNotAvailableError)
                if not_yet or (error is NoError and not topic["partitions"]):
                    pending.append(topic["name"])
                elif error is not NoError:
                    raise error(f"describing topic {topic['name']}")
                else:
                    layout[topic["name"]] = {
                        p["partition_index"]: (list(p["replica_nodes"]), list(p["isr_nodes"]))
                        for p in topic["partitions"]
                    }
            if not pending:
                return layout
            if time.monotonic() > deadline:
                raise TimeoutError(f"topics without partitions after {timeout}s: {sorted(pending)}")
            time.sleep(0.2)
    finally:
        admin.close()


def check_replication(settings: Settings, layout: Layout) -> None:
    """Raise UnderReplicatedError, naming the topics (the first three), if a topic of `layout` has
    fewer replicas than KETENMONITOR_REPLICATION_FACTOR or a partition fewer in-sync replicas than
    KETENMONITOR_MIN_INSYNC_REPLICAS; nothing to check when neither is set."""
    rf, min_isr = settings.replication_factor, settings.min_insync_replicas
    few_replicas, few_in_sync = [], []
    for name in sorted(layout):
        partitions = layout[name]
        fewest = min((len(replicas) for replicas, _ in partitions.values()), default=0)
        if rf is not None and fewest < rf:
            few_replicas.append(f"{name} has {_count(fewest, 'replica')}")
            continue
        if min_isr is None:
            continue
        n, partition = min(((len(isr), p) for p, (_, isr) in partitions.items()), default=(0, 0))
        if n < min_isr:
            in_sync = _count(n, "in-sync replica")
            of = len(partitions[partition][0])
            few_in_sync.append(f"{name} partition {partition} has {in_sync} of {of}")
    problems = []
    if few_replicas:
        problems.append(f"KETENMONITOR_REPLICATION_FACTOR is {rf} but {_first(few_replicas)}")
    if few_in_sync:
        problems.append(f"KETENMONITOR_MIN_INSYNC_REPLICAS is {min_isr} but {_first(few_in_sync)}")
    if problems:
        raise UnderReplicatedError(
            "; ".join(problems) + ": recreate the topics with that replication, or bring the "
            "missing brokers back, before starting workers"
        )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _first(items: list[str], shown: int = 3) -> str:
    more = f" (and {len(items) - shown} more topics)" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more


def _check_partitions(layout: Layout, names: list[str], partitions: int) -> None:
    found = {name: len(layout.get(name, {})) for name in names}
    wrong = {name: n for name, n in found.items() if n != partitions}
    if wrong:
        listed = ", ".join(f"{name} has {n}" for name, n in sorted(wrong.items()))
        raise TopicLayoutError(
            f"KETENMONITOR_PARTITIONS is {partitions} but {listed} partitions: run the workers "
            "with the partition count the topics were created with (or recreate the topics and "
            "replay)"
        )


def _create_missing(settings: Settings, wanted: list[tuple[str, int, dict[str, str]]]) -> None:
    admin = KafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap,
        client_id=CLIENT_ID,
        **settings.kafka_python_security(),
    )
    replication, replication_configs = settings.new_topic_replication()
    try:
        existing = set(_retrying(admin.list_topics, 30.0))
        for name, partitions, config in wanted:
            if name in existing:
                continue
            topic = NewTopic(
                name,
                num_partitions=partitions,
                replication_factor=replication,
                topic_configs={**replication_configs, **config},
            )
            with contextlib.suppress(TopicAlreadyExistsError):  # another worker was quicker
                _retrying(lambda topic=topic: admin.create_topics([topic]), 30.0)
    finally:
        admin.close()


def _retrying(call: Callable[[], T], timeout: float) -> T:
    """`call()`, again while it cannot connect. kafka-python's admin client sends a request to one
    broker and fails if that one is down, where it could ask another of the cluster."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except KafkaConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _wait_until_listed(
    bootstrap: str, names: set[str], security: dict[str, Any], timeout: float
) -> None:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, client_id=CLIENT_ID, **security)
    try:
        deadline = time.monotonic() + timeout
        while True:
            missing = names - set(consumer.topics())
            if not missing:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"topics not in the cluster metadata after {timeout}s: {sorted(missing)}"
                )
            time.sleep(0.2)
    finally:
        consumer.close()
