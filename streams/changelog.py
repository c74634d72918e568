"""Reading a worker's changelog partitions back into memory.

    tables, ends = await read_changelogs(consumer, [TopicPartition("km-cases-changelog", 3)])
    tables[tp]   -> {key: latest value}    (a None value deletes its key)
    ends[tp]     -> the end offset the read stopped at

`consumer` is a group-less AIOKafkaConsumer that the caller started; it is assigned the partitions
for the read and unassigned after. Each partition is read from its beginning (compaction may have
moved it) to the end offset it had when the read began: records written later belong to whoever
writes them and are not part of this restore.

A record may carry the input position it reflects (header `SOURCE_HEADER`: for the ingest counts
the next partner offset to count; for the cases table, since a case partition is fed by the case
topic and by one-hop partner topics (streams/placement.py), the writer's ownership epoch:
CASE_POSITION_BASE + 1 + the highest epoch its restore found (`next_case_position`); records
written before this rule carry the case-topic offset after the last event applied, below
CASE_POSITION_BASE). A worker thrown out of its group while its last batch was in the
producer (frozen past the session timeout, then thawed) can land that batch's records after the
next owner wrote newer ones for the same keys. Per key the record with the highest position wins,
whatever the append order; `stale` lists the keys whose winner is not their last record, so that
the caller appends the winner again (compaction keeps the last record of a key).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

FETCH_RECORDS = 50_000  # records per fetch while reading
SOURCE_HEADER = "src"


# Case-record positions at or above this are ownership epochs; below it, case-topic offsets of
# workers from before one hop (the offsets of a partition never get near 2**62).
CASE_POSITION_BASE = 1 << 62


def next_case_position(highest: int) -> int:
    """The position a new owner of a case partition writes with, from the highest it restored:
    above every record there, so that a late write of an earlier owner (frozen past its session,
    then thawed) is recognised as stale whichever input topic its events came from."""
    epoch = highest - CASE_POSITION_BASE if highest >= CASE_POSITION_BASE else 0
    return CASE_POSITION_BASE + epoch + 1


def source_header(position: int) -> list[tuple[str, bytes]]:
    return [(SOURCE_HEADER, position.to_bytes(8, "big"))]


def _source(message: Any) -> int:
    for name, value in getattr(message, "headers", None) or ():
        if name == SOURCE_HEADER:
            return int.from_bytes(value, "big")
    return -1


class ChangelogRead:
    """What read_changelogs found: tables, end offsets and the keys to write again."""

    def __init__(self, tps: list[TopicPartition]) -> None:
        self.tables: dict[TopicPartition, dict[bytes, bytes]] = {tp: {} for tp in tps}
        self.sources: dict[TopicPartition, dict[bytes, int]] = {tp: {} for tp in tps}
        self.ends: dict[TopicPartition, int] = {}
        self.stale: dict[TopicPartition, set[bytes]] = {tp: set() for tp in tps}
        # Keys a checkpoint holds outside its table (retired cases) whose tail record lost to it.
        self.stale_held: dict[TopicPartition, set[bytes]] = {tp: set() for tp in tps}
        self.from_checkpoint: dict[TopicPartition, int] = {}  # partition -> offset read from

    def repairs(self) -> list[tuple[TopicPartition, bytes, bytes, int]]:
        """(changelog partition, key, winning value, its position) to append again."""
        return [
            (tp, key, self.tables[tp][key], self.sources[tp][key])
            for tp, keys in self.stale.items()
            for key in sorted(keys)
            if key in self.tables[tp]
        ]


async def read_changelogs(
    consumer: AIOKafkaConsumer, partitions: Iterable[TopicPartition]
) -> tuple[dict[TopicPartition, dict[bytes, bytes]], dict[TopicPartition, int]]:
    read = await read_changelogs_checked(consumer, partitions)
    return read.tables, read.ends


async def read_changelogs_checked(
    consumer: AIOKafkaConsumer,
    partitions: Iterable[TopicPartition],
    tails: dict[TopicPartition, tuple[int, int, dict[bytes, bytes]]] | None = None,
    held: dict[TopicPartition, Callable[[bytes], bool]] | None = None,
) -> ChangelogRead:
    """`tails`: per partition (offset, position, table) of a local checkpoint
    (streams/state_store.py): the read starts from that table at that offset instead of from the
    beginning, each key of the table taken as written at `position`. A checkpoint whose offset is
    not within the partition's [log start, end] is not used (`read.from_checkpoint` says which
    were). `held`: per partition, the keys the checkpoint holds outside its table (its retired
    cases), also taken as written at `position`; a tail record that loses to one is listed in
    `read.stale_held`."""
    tps = list(partitions)
    read = ChangelogRead(tps)
    tables = read.tables
    if not tps:
        return read
    consumer.assign(tps)
    floors: dict[TopicPartition, int] = {}
    outside: dict[TopicPartition, Callable[[bytes], bool]] = {}
    try:
        ends = read.ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps) if tails else {}
        await consumer.seek_to_beginning(*tps)
        for tp, (offset, position, table) in (tails or {}).items():
            if tp in ends and starts[tp] <= offset <= ends[tp]:
                tables[tp] = table
                floors[tp] = position
                if held and tp in held:
                    outside[tp] = held[tp]
                read.from_checkpoint[tp] = offset
                consumer.seek(tp, offset)
        remaining = {tp for tp in tps if ends[tp] > 0}
        while remaining:
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
            if not remaining:
                break
            batch = await consumer.getmany(*remaining, timeout_ms=500, max_records=FETCH_RECORDS)
            for tp, messages in batch.items():
                table, end = tables[tp], ends[tp]
                sources, stale = read.sources[tp], read.stale[tp]
                floor = floors.get(tp)
                holds = outside.get(tp)
                for m in messages:
                    if m.offset >= end:
                        break
                    key = m.key
                    if m.value is None:
                        table.pop(key, None)
                        sources.pop(key, None)
                        stale.discard(key)
                        continue
                    source = _source(m)
                    previous = sources.get(key, -1)
                    if floor is not None and previous < 0 and key in table:
                        previous = sources[key] = floor  # held by the checkpoint
                    elif holds is not None and previous < 0 and holds(key):
                        previous = floor  # retired in the checkpoint
                        if source >= 0 and source < previous:
                            read.stale_held[tp].add(key)
                            continue
                    if source >= 0 and source < previous:
                        stale.add(key)  # older than the record it follows: a zombie's write
                        continue
                    table[key] = m.value
                    sources[key] = source
                    stale.discard(key)
    finally:
        consumer.assign([])
    return read
