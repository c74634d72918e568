"""The worker's state of the partitions it owns, and how it is restored and released.

    tables = OwnedTables(cases_topic)
    await tables.restore(restorer, {TopicPartition(cases_topic, 3),
                                    TopicPartition("p.events.om", 3)})
    tables.cases[3][pseudonym]          -> stored case value (streams/codec.py)
    tables.ingest[TopicPartition(...)]  -> IngestStats of one partner-topic partition
    tables.release({...})               -> partitions handed to another worker are dropped

Each table mirrors a changelog: partition p of the `cases` changelog holds the case values of
case-topic partition p; partition p of the `ingest-stats` changelog holds the counts of partition p
of every partner topic, keyed by the partner topic's name.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from ketenmonitor.streams.changelog import read_changelogs_checked
from ketenmonitor.streams.ingest import IngestStats

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Changelogs:
    cases: str  # topic of the `cases` table
    ingest: str  # topic of the `ingest-stats` table

    def of(self, tp: TopicPartition, cases_topic: str) -> TopicPartition:
        """The changelog partition that holds the state of input partition `tp`."""
        return TopicPartition(self.cases if tp.topic == cases_topic else self.ingest, tp.partition)


class OwnedTables:
    def __init__(self, cases_topic: str, changelogs: Changelogs) -> None:
        self.cases_topic = cases_topic
        self.changelogs = changelogs
        self.cases: dict[int, dict[bytes, bytes]] = {}  # partition -> pseudonym -> stored value
        # Records a restore found superseded by an older write appended after them: the owner
        # appends them again (streams/changelog.py); (changelog partition, key, value, position).
        self.repairs: list[tuple[TopicPartition, bytes, bytes, int]] = []
        self.ingest: dict[TopicPartition, IngestStats] = {}  # partner partition -> counts
        # Per restored case partition: the highest record position its changelog held
        # (streams/changelog.py, next_case_position); -1 for none.
        self.highest_source: dict[int, int] = {}

    def case_partitions(self) -> set[int]:
        return set(self.cases)

    def ingest_stats(self, tp: TopicPartition) -> IngestStats:
        stats = self.ingest.get(tp)
        if stats is None:
            stats = self.ingest[tp] = IngestStats()
        return stats

    def release(self, tps: Iterable[TopicPartition]) -> None:
        for tp in tps:
            if tp.topic == self.cases_topic:
                self.cases.pop(tp.partition, None)
                self.highest_source.pop(tp.partition, None)
            else:
                self.ingest.pop(tp, None)

    def restored_position(self, tp: TopicPartition) -> int:
        """The input offset the restored state of `tp` reflects: the next partner offset its
        ingest counts expect; -1 if unknown, as for the case topic (its changelog records carry
        ownership epochs, not case-topic offsets, since one-hop partner topics feed a case
        partition too: streams/changelog.py)."""
        if tp.topic == self.cases_topic:
            return -1
        stats = self.ingest.get(tp)
        return stats.next_offset if stats is not None else -1

    async def restore(
        self, restorer: AIOKafkaConsumer, tps: Iterable[TopicPartition]
    ) -> dict[TopicPartition, int]:
        """Read the changelog partitions behind `tps` from their beginning to the end they had
        when the read began; returns those end offsets per changelog partition."""
        tps = set(tps)
        if not tps:
            return {}
        started = time.monotonic()
        changelogs = {self.changelogs.of(tp, self.cases_topic) for tp in tps}
        checked = await read_changelogs_checked(restorer, changelogs)
        read, ends = checked.tables, checked.ends
        self.repairs.extend(checked.repairs())
        for tp in tps:
            changelog = self.changelogs.of(tp, self.cases_topic)
            table = read[changelog]
            if tp.topic == self.cases_topic:
                self.cases[tp.partition] = table
                sources = checked.sources[self.changelogs.of(tp, self.cases_topic)].values()
                self.highest_source[tp.partition] = max(sources, default=-1)
            else:
                raw = table.get(tp.topic.encode())
                if raw is None:  # the key before version 2: "topic:partition"
                    raw = table.get(f"{tp.topic}:{tp.partition}".encode())
                self.ingest[tp] = IngestStats.decode(raw) if raw is not None else IngestStats()
        log.info(
            "restored %d cases and %d partner partitions for %s in %.2fs",
            sum(len(self.cases[tp.partition]) for tp in tps if tp.topic == self.cases_topic),
            sum(1 for tp in tps if tp.topic != self.cases_topic),
            sorted({tp.partition for tp in tps}),
            time.monotonic() - started,
        )
        if self.repairs:
            log.warning(
                "%d changelog records were followed by older writes of the same key (a worker "
                "that lost its partitions while writing); the newer ones are written again",
                len(self.repairs),
            )
        return ends
