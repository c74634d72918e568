"""The worker's state of the partitions it owns, and how it is restored and released.

    tables = OwnedTables(cases_topic)
    await tables.restore(restorer, {TopicPartition(cases_topic, 3),
                                    TopicPartition("p.events.om", 3)})
    tables.cases[3][pseudonym]          -> stored case value (streams/codec.py)
    tables.ingest[TopicPartition(...)]  -> IngestStats of one partner-topic partition
    tables.release({...})               -> partitions handed to another worker are dropped
    tables.retired[3]                   -> what partition 3 has retired (streams/retirement.py)

Each table mirrors a changelog: partition p of the `cases` changelog holds the case values of
case-topic partition p; partition p of the `ingest-stats` changelog holds the counts of partition p
of every partner topic, keyed by the partner topic's name. A restore takes the retired cases'
markers and the partition's aggregate out of the `cases` table into `retired`: `cases` holds the
states of the cases that are not retired only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from ketenmonitor.streams.changelog import ChangelogRead, read_changelogs_checked
from ketenmonitor.streams.ingest import IngestStats
from ketenmonitor.streams.retirement import (
    AGGREGATE_KEY,
    RETIRED_MARKER,
    PartitionRetirement,
    RetiredKeys,
    is_marker,
    key_digest,
)
from ketenmonitor.streams.state_store import CheckpointStore

from ketenmonitor.domain.chain import Chain

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Changelogs:
    cases: str  # topic of the `cases` table
    ingest: str  # topic of the `ingest-stats` table

    def of(self, tp: TopicPartition, cases_topic: str) -> TopicPartition:
        """The changelog partition that holds the state of input partition `tp`."""
        return TopicPartition(self.cases if tp.topic == cases_topic else self.ingest, tp.partition)


class OwnedTables:
    def __init__(
        self,
        cases_topic: str,
        changelogs: Changelogs,
        chain: Chain | None = None,
        checkpoints: CheckpointStore | None = None,
    ) -> None:
        self.cases_topic = cases_topic
        # Local checkpoints of the `cases` changelog (streams/state_store.py); None: none kept.
        self.checkpoints = checkpoints
        # Per case partition, what was written to its changelog since its last checkpoint.
        self.written_since_checkpoint: dict[int, dict[bytes, bytes]] = {}
        self.records_since_checkpoint = 0  # changelog records noted since the last checkpoint
        self.chain = chain  # None: no retirement (tests of the tables alone)
        self.retired: dict[int, PartitionRetirement] = {}
        self.changelogs = changelogs
        self.cases: dict[int, dict[bytes, bytes]] = {}  # partition -> pseudonym -> stored value
        # Records a restore found superseded by an older write appended after them: the owner
        # appends them again (streams/changelog.py); (changelog partition, key, value, position).
        self.repairs: list[tuple[TopicPartition, bytes, bytes, int]] = []
        self.ingest: dict[TopicPartition, IngestStats] = {}  # partner partition -> counts
        # Per restored case partition: the highest record position its changelog held
        # (streams/changelog.py, next_case_position); -1 for none.
        self.highest_source: dict[int, int] = {}
        # Per case partition restored from a local checkpoint with no tail after it: the totals
        # the checkpoint saved (state_store.py), for the owner to take instead of a fold.
        self.totals_snapshots: dict[int, bytes] = {}

    def case_partitions(self) -> set[int]:
        return set(self.cases)

    def note_written(self, partition: int, records: dict[bytes, bytes]) -> None:
        """Records handed to the `cases` changelog: in the partition's next checkpoint."""
        if self.checkpoints is not None:
            self.written_since_checkpoint.setdefault(partition, {}).update(records)
            self.records_since_checkpoint += len(records)

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
                self.retired.pop(tp.partition, None)
                self.written_since_checkpoint.pop(tp.partition, None)
                self.totals_snapshots.pop(tp.partition, None)
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
        tails = {}
        retired_keys: dict[TopicPartition, RetiredKeys] = {}
        saved_totals: dict[TopicPartition, bytes | None] = {}
        if self.checkpoints is not None:
            for changelog in changelogs:
                if changelog.topic == self.changelogs.cases:
                    found = await asyncio.to_thread(self.checkpoints.load, changelog)
                    if found is not None:
                        tails[changelog] = (found.offset, found.position, found.table)
                        retired_keys[changelog] = RetiredKeys.from_bytes(
                            found.retired, self.checkpoints.directory
                        )
                        saved_totals[changelog] = found.totals
        held = {tp: _holds(keys) for tp, keys in retired_keys.items() if len(keys)}
        checked = await read_changelogs_checked(restorer, changelogs, tails, held)
        read, ends = checked.tables, checked.ends
        self.repairs.extend(checked.repairs())
        for changelog, keys in checked.stale_held.items():  # a zombie's state after a marker
            if keys:
                floor = tails[changelog][1]
                self.repairs.extend((changelog, key, RETIRED_MARKER, floor) for key in sorted(keys))
        for changelog in changelogs:  # every retired key, the checkpoint's and the changelog's
            if changelog.topic == self.changelogs.cases:
                used = changelog in checked.from_checkpoint
                directory = None if self.checkpoints is None else self.checkpoints.directory
                keys = retired_keys[changelog] if used else RetiredKeys(directory)
                keys.update(key_digest(key) for key, value in read[changelog].items()
                            if is_marker(value))
                retired_keys[changelog] = keys
        if self.checkpoints is not None:
            await self._checkpoint_restored(checked, changelogs, tails, retired_keys)
        for tp in tps:
            changelog = self.changelogs.of(tp, self.cases_topic)
            table = read[changelog]
            if tp.topic == self.cases_topic:
                self.cases[tp.partition] = table
                highest = max(checked.sources[changelog].values(), default=-1)
                used = changelog in checked.from_checkpoint
                if used:  # its keys' records are below it
                    highest = max(highest, tails[changelog][1])
                self.highest_source[tp.partition] = highest
                self.totals_snapshots.pop(tp.partition, None)
                snapshot = saved_totals.get(changelog)
                if used and snapshot is not None and ends[changelog] == tails[changelog][0] \
                        and not checked.stale[changelog] and not checked.stale_held[changelog]:
                    self.totals_snapshots[tp.partition] = snapshot  # nothing after it
                if self.chain is not None:
                    self.retired[tp.partition] = _take_retired(
                        self.chain, table, retired_keys[changelog]
                    )
            else:
                raw = table.get(tp.topic.encode())
                if raw is None:  # the key before version 2: "topic:partition"
                    raw = table.get(f"{tp.topic}:{tp.partition}".encode())
                self.ingest[tp] = IngestStats.decode(raw) if raw is not None else IngestStats()
        for changelog, offset in sorted(checked.from_checkpoint.items()):
            log.info(
                "%s/%s: local checkpoint at offset %d, changelog tail of %d records read",
                changelog.topic, changelog.partition, offset, ends[changelog] - offset,
            )
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

    async def _checkpoint_restored(
        self,
        checked: ChangelogRead,
        changelogs: set[TopicPartition],
        tails: dict,
        retired_keys: dict[TopicPartition, RetiredKeys],
    ) -> None:
        """Bring the local checkpoints up to what the restore read: the tail's records onto a
        checkpoint that was used, the whole partition where none was (missing, stale, another
        topic id). A used checkpoint with no tail is left as it is (its totals still hold)."""
        assert self.checkpoints is not None
        for changelog in sorted(changelogs):
            if changelog.topic != self.changelogs.cases:
                continue
            table, end = checked.tables[changelog], checked.ends[changelog]
            used = changelog in checked.from_checkpoint
            if not used and changelog in tails:
                log.warning(
                    "%s/%s: local checkpoint at offset %d is outside the changelog (end %d): "
                    "read from the changelog's beginning", changelog.topic, changelog.partition,
                    tails[changelog][0], end,
                )
            sources = checked.sources[changelog]
            if used and end == tails[changelog][0]:
                continue
            if not used and end == 0 and not self.checkpoints.holds(changelog):
                continue  # an empty changelog and nothing saved: the first checkpoint writes it
            changes = {k: table[k] for k in sources if k in table} if used else dict(table)
            position = max((s for s in sources.values()), default=0)
            if used:
                position = max(position, tails[changelog][1])
            markers = any(map(is_marker, changes.values()))
            retired = retired_keys[changelog].to_bytes() if markers or not used else None
            await asyncio.to_thread(
                self.checkpoints.save, changelog, end, position, changes, not used, retired
            )


def _take_retired(
    chain: Chain, table: dict[bytes, bytes], keys: RetiredKeys
) -> PartitionRetirement:
    """Take the aggregate and the retired cases' markers out of a restored `cases` table; `keys`:
    the digests of every retired key (the checkpoint's and the markers')."""
    retirement = PartitionRetirement.restored(chain, table.pop(AGGREGATE_KEY, None))
    for key in [key for key, value in table.items() if is_marker(value)]:
        del table[key]
    retirement.keys = keys
    return retirement


def _holds(keys: RetiredKeys) -> Callable[[bytes], bool]:
    return lambda key: key_digest(key) in keys
