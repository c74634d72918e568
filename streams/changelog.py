"""Reading a worker's changelog partitions back into memory.

    tables, ends = await read_changelogs(consumer, [TopicPartition("km-cases-changelog", 3)])
    tables[tp]   -> {key: latest value}    (a None value deletes its key)
    ends[tp]     -> the end offset the read stopped at

`consumer` is a group-less AIOKafkaConsumer that the caller started; it is assigned the partitions
for the read and unassigned after. Each partition is read from its beginning (compaction may have
moved it) to the end offset it had when the read began: records written later belong to whoever
writes them and are not part of this restore.
"""

from __future__ import annotations

from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition

FETCH_RECORDS = 50_000  # records per fetch while reading


async def read_changelogs(
    consumer: AIOKafkaConsumer, partitions: Iterable[TopicPartition]
) -> tuple[dict[TopicPartition, dict[bytes, bytes]], dict[TopicPartition, int]]:
    tps = list(partitions)
    tables: dict[TopicPartition, dict[bytes, bytes]] = {tp: {} for tp in tps}
    if not tps:
        return tables, {}
    consumer.assign(tps)
    try:
        ends = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
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
                for m in messages:
                    if m.offset >= end:
                        break
                    if m.value is None:
                        table.pop(m.key, None)
                    else:
                        table[m.key] = m.value
    finally:
        consumer.assign([])
    return tables, ends
