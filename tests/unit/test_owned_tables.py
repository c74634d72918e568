"""OwnedTables and the changelog read (streams/tables.py, streams/changelog.py) against a fake
consumer that holds records per partition, including records written after the read began."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from aiokafka import TopicPartition
from ketenmonitor.streams.ingest import IngestStats
from ketenmonitor.streams.tables import Changelogs, OwnedTables

CASES = "p.cases"
LOGS = Changelogs("app-cases-changelog", "app-ingest-stats-changelog")


@dataclass
class Record:
    offset: int
    key: bytes
    value: bytes | None


class FakeConsumer:
    """The calls read_changelogs makes; `late` records appear after end_offsets was asked."""

    def __init__(
        self,
        logs: dict[TopicPartition, list[tuple[bytes, bytes | None]]],
        late: dict[TopicPartition, list[tuple[bytes, bytes | None]]] | None = None,
    ):
        self.logs = {
            tp: [Record(i, k, v) for i, (k, v) in enumerate(rs)] for tp, rs in logs.items()
        }
        self.late = late or {}
        self.positions: dict[TopicPartition, int] = {}
        self.assigned: list[TopicPartition] = []

    def assign(self, tps: list[TopicPartition]) -> None:
        self.assigned = list(tps)

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        ends = {tp: len(self.logs.get(tp, [])) for tp in tps}
        for tp, records in self.late.items():  # written by someone else after the read began
            log = self.logs.setdefault(tp, [])
            log.extend(Record(len(log) + i, k, v) for i, (k, v) in enumerate(records))
        return ends

    async def seek_to_beginning(self, *tps: TopicPartition) -> None:
        for tp in tps:
            self.positions[tp] = 0

    async def position(self, tp: TopicPartition) -> int:
        return self.positions[tp]

    async def getmany(
        self, *tps: TopicPartition, timeout_ms: int = 0, max_records: int = 0
    ) -> dict[TopicPartition, list[Any]]:
        out = {}
        for tp in tps:
            records = self.logs.get(tp, [])[self.positions[tp] : self.positions[tp] + 2]
            if records:
                out[tp] = records
                self.positions[tp] += len(records)
        return out


def tp(topic: str, partition: int) -> TopicPartition:
    return TopicPartition(topic, partition)


def test_a_restore_reads_each_changelog_to_the_end_it_had_and_no_further() -> None:
    stats = IngestStats(next_offset=7, accepted=6).encode()
    consumer = FakeConsumer(
        {
            tp(LOGS.cases, 2): [(b"a", b"1"), (b"b", b"2"), (b"a", b"3"), (b"b", None)],
            tp(LOGS.ingest, 2): [(b"p.events.om", stats)],
        },
        late={tp(LOGS.cases, 2): [(b"c", b"late"), (b"a", b"late")]},
    )
    tables = OwnedTables(CASES, LOGS)
    ends = asyncio.run(tables.restore(consumer, {tp(CASES, 2), tp("p.events.om", 2)}))
    assert tables.cases[2] == {b"a": b"3"}  # the tombstone deleted b; the late records unread
    assert tables.ingest[tp("p.events.om", 2)].accepted == 6
    assert ends == {tp(LOGS.cases, 2): 4, tp(LOGS.ingest, 2): 1}
    assert consumer.assigned == []  # the restorer is handed back unassigned


def test_a_partner_partition_without_counts_starts_from_zero_and_old_keys_are_read() -> None:
    old = IngestStats(next_offset=3, accepted=3).encode()
    consumer = FakeConsumer({tp(LOGS.ingest, 1): [(b"p.events.police:1", old)]})
    tables = OwnedTables(CASES, LOGS)
    asyncio.run(tables.restore(consumer, {tp("p.events.police", 1), tp("p.events.cjib", 1)}))
    assert tables.ingest[tp("p.events.police", 1)].accepted == 3  # key of format version 1
    assert tables.ingest[tp("p.events.cjib", 1)].next_offset == 0


def test_release_forgets_every_released_partition_and_keeps_the_others() -> None:
    tables = OwnedTables(CASES, LOGS)
    tables.cases = {0: {b"a": b"1"}, 1: {b"b": b"2"}}
    tables.ingest_stats(tp("p.events.om", 0)).count(0, 1.0, None)
    tables.ingest_stats(tp("p.events.om", 1)).count(0, 1.0, None)
    tables.release({tp(CASES, 0), tp("p.events.om", 0)})
    assert tables.case_partitions() == {1}
    assert set(tables.ingest) == {tp("p.events.om", 1)}


def test_an_older_write_appended_after_a_newer_one_loses_and_the_newer_is_queued_again() -> None:
    # A zombie's last batch (positions 5) lands after the next owner's records (position 9).
    from ketenmonitor.streams.changelog import source_header

    class Headed(FakeConsumer):
        def __init__(self, logs, positions):
            super().__init__(logs)
            for tp, records in self.logs.items():
                for record, position in zip(records, positions[tp], strict=True):
                    record.headers = source_header(position) if position >= 0 else []

    tp = TopicPartition(LOGS.cases, 0)
    consumer = Headed(
        {tp: [(b"a", b"a-old"), (b"a", b"a-new"), (b"a", b"a-zombie"), (b"b", b"b-only"),
              (b"c", b"c-legacy"), (b"c", b"c-newer")]},
        {tp: [3, 9, 5, 4, -1, -1]},
    )
    tables = OwnedTables(CASES, LOGS)
    asyncio.run(tables.restore(consumer, {TopicPartition(CASES, 0)}))
    assert tables.cases[0] == {b"a": b"a-new", b"b": b"b-only", b"c": b"c-newer"}
    assert tables.repairs == [(tp, b"a", b"a-new", 9)]
