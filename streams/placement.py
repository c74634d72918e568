"""Where a case's state lives: the placement rule, and the record that pins it per deployment.

    place = placement_function("case-key", partitions=6)
    place(pseudonym, case_key)  -> the state partition of the case (0..5)
    kafka_partition(b"PARKET-13-123456-24", 6)   -> what Kafka's default partitioner picks
    await check_placement(consumer, producer, settings)   # at start: refuse a changed rule

A case's state (the `cases` table, streams/tables.py) lives in exactly one partition p, and every
event of the case must be applied in that partition, whichever way it arrives. Two rules exist:

    pseudonym  (version 1, the default): int(pseudonym[:8], 16) % partitions. Partners cannot
               compute it (they do not hold the pseudonymisation key), so every event goes the
               re-keying path: partner topic -> worker -> case topic partition p -> state.
    case-key   (version 2): Kafka's default partitioner over the case key as the partner keys its
               message, (murmur2(utf-8 case key) & 0x7fffffff) % partitions, the rule of the Java
               client, kafka-python and aiokafka (librdkafka clients: partitioner=murmur2_random).
               A partner that keys its messages by the case key puts each event in partition p
               of its own topic already: the worker applies it there (one hop). Events of
               partners that cannot key by case are re-keyed to case-topic partition p, chosen by
               the same rule, so both paths meet in the same state partition.

The case-topic record is keyed by the pseudonym in both rules (the case key never leaves the
partner topic); under `case-key` its partition is set explicitly.

Changing the rule of a deployment that has state moves every case to another partition: that is
a migration (rebuild the state from the partner topics under a new app id), not a setting to
flip. The first worker of a deployment records its rule in the compacted placement topic
(`<app_id>-placement-changelog`); a worker configured otherwise refuses to start. A deployment
whose state predates the record (a non-empty `cases` changelog, no record) is `pseudonym`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Literal

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from ketenmonitor.domain.pseudonym import partition_of
from ketenmonitor.partitioning import kafka_partition

log = logging.getLogger(__name__)

Placement = Literal["pseudonym", "case-key"]
PLACEMENTS: tuple[Placement, ...] = ("pseudonym", "case-key")
PLACEMENT_VERSION = {"pseudonym": 1, "case-key": 2}
PLACEMENT_RECORD_VERSION = 1
PLACEMENT_KEY = b"placement"


def placement_function(placement: Placement, partitions: int) -> Callable[[str, str], int]:
    """place(pseudonym, case_key) -> the state partition of the case under `placement`."""
    if placement == "pseudonym":
        return lambda pseudonym, case_key: partition_of(pseudonym, partitions)
    if placement == "case-key":
        return lambda pseudonym, case_key: kafka_partition(case_key.encode("utf-8"), partitions)
    raise ValueError(f"unknown placement {placement!r}; known: {', '.join(PLACEMENTS)}")


class PlacementError(RuntimeError):
    """The placement rule or the one-hop partners do not fit this deployment (exit 2)."""


def encode_placement(placement: Placement, partitions: int) -> bytes:
    return orjson.dumps(
        {
            "v": PLACEMENT_RECORD_VERSION,
            "placement": placement,
            "rule_version": PLACEMENT_VERSION[placement],
            "partitions": partitions,
        }
    )


def decode_placement(raw: bytes) -> tuple[str, int]:
    doc = orjson.loads(raw)
    if doc.get("v") != PLACEMENT_RECORD_VERSION:
        raise PlacementError(
            f"placement record of format version {doc.get('v')!r}; this worker reads version "
            f"{PLACEMENT_RECORD_VERSION}: run a worker version that wrote it"
        )
    return doc["placement"], int(doc["partitions"])


def check_recorded(recorded: tuple[str, int] | None, placement: str, partitions: int) -> None:
    """Raise PlacementError unless the recorded rule is the configured one."""
    if recorded is None or recorded == (placement, partitions):
        return
    was, was_partitions = recorded
    raise PlacementError(
        f"this deployment's case states are placed by the {was!r} rule over {was_partitions} "
        f"partitions; this worker is configured for {placement!r} over {partitions} "
        "(KETENMONITOR_CASE_PLACEMENT, KETENMONITOR_PARTITIONS). Its events would be applied in "
        "other partitions than their cases' states. Set the recorded values again, or migrate: "
        "rebuild the state under a new KETENMONITOR_APP_ID (docs/operations.md, Placement)"
    )


async def check_placement(
    consumer: AIOKafkaConsumer,
    producer: AIOKafkaProducer,
    placement_topic: str,
    cases_changelog: str,
    placement: Placement,
    partitions: int,
) -> None:
    """Read the deployment's recorded rule; record `placement` if there is none yet (an existing
    state without a record counts as `pseudonym`); raise PlacementError on a mismatch.
    `consumer` is a started group-less consumer, assigned nothing (left so)."""
    recorded = await _read_recorded(consumer, placement_topic)
    if recorded is None:
        changelog = [TopicPartition(cases_changelog, p) for p in range(partitions)]
        ends = await consumer.end_offsets(changelog)
        if any(ends.values()):
            recorded = ("pseudonym", partitions)  # state from before the placement record
        check_recorded(recorded, placement, partitions)
        await (
            await producer.send(
                placement_topic,
                encode_placement(placement, partitions),
                key=PLACEMENT_KEY,
                partition=0,
            )
        )
        log.info("recorded the case placement of this deployment: %s", placement)
        return
    check_recorded(recorded, placement, partitions)


async def _read_recorded(consumer: AIOKafkaConsumer, topic: str) -> tuple[str, int] | None:
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    try:
        end = (await consumer.end_offsets([tp]))[tp]
        await consumer.seek_to_beginning(tp)
        found: Any = None
        while await consumer.position(tp) < end:
            batch = await consumer.getmany(tp, timeout_ms=500)
            for message in batch.get(tp, []):
                if message.offset < end and message.key == PLACEMENT_KEY and message.value:
                    found = message.value
    finally:
        consumer.assign([])
    return decode_placement(found) if found is not None else None
