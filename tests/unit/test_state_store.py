"""Local checkpoints (streams/state_store.py): a restore reads the checkpoint and the changelog's
tail only; a missing, foreign or out-of-range checkpoint falls back to the whole changelog."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiokafka import TopicPartition
from ketenmonitor.streams.state_store import CheckpointStore
from ketenmonitor.streams.tables import Changelogs, OwnedTables
from test_owned_tables import FakeConsumer

CASES = "p.cases"
LOGS = Changelogs("app-cases-changelog", "app-ingest-stats-changelog")
CHANGELOG = TopicPartition(LOGS.cases, 0)


class SeekingConsumer(FakeConsumer):
    """FakeConsumer with the log start offset and seek a tail read needs; counts records read."""

    def __init__(self, logs, start: int = 0):
        super().__init__(logs)
        self.start = start
        self.read = 0

    async def beginning_offsets(self, tps):
        return {tp: self.start for tp in tps}

    def seek(self, tp, offset):
        self.positions[tp] = offset

    async def getmany(self, *tps, timeout_ms=0, max_records=0):
        out = await super().getmany(*tps, timeout_ms=timeout_ms, max_records=max_records)
        self.read += sum(len(rs) for rs in out.values())
        return out


LOG = [(f"k{i % 40}".encode(), f"v{i}".encode()) for i in range(200)]  # 40 keys, 200 records


def restore(store: CheckpointStore | None, consumer: FakeConsumer) -> OwnedTables:
    tables = OwnedTables(CASES, LOGS, checkpoints=store)
    asyncio.run(tables.restore(consumer, {TopicPartition(CASES, 0)}))
    return tables


def full_table(log) -> dict[bytes, bytes]:
    return dict(log)


def test_a_restore_with_a_checkpoint_reads_only_the_tail_and_ends_equal(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, topic_id="topic-A")
    first = SeekingConsumer({CHANGELOG: LOG[:150]})
    assert restore(store, first).cases[0] == full_table(LOG[:150])
    assert first.read == 150  # no checkpoint yet: the whole partition
    second = SeekingConsumer({CHANGELOG: LOG})
    assert restore(store, second).cases[0] == full_table(LOG)
    assert second.read == 50  # the tail written since offset 150
    third = SeekingConsumer({CHANGELOG: LOG})
    assert restore(store, third).cases[0] == full_table(LOG) and third.read == 0


def test_missing_foreign_or_out_of_range_checkpoints_fall_back_to_the_changelog(
    tmp_path: Path,
) -> None:
    store = CheckpointStore(tmp_path, topic_id="topic-A")
    restore(store, SeekingConsumer({CHANGELOG: LOG}))
    # the local copy is ahead of the changelog (another epoch): whole changelog
    shorter = LOG[:120]
    ahead = SeekingConsumer({CHANGELOG: shorter})
    assert restore(store, ahead).cases[0] == full_table(shorter) and ahead.read == 120
    # the checkpoint was rewritten by that restore: now at 120, usable again
    again = SeekingConsumer({CHANGELOG: LOG})
    assert restore(store, again).cases[0] == full_table(LOG) and again.read == 80
    # records before the checkpoint's offset were deleted (log start past it): whole changelog
    store.save(CHANGELOG, 100, 0, {b"k1": b"stale"}, replace=True)
    deleted = SeekingConsumer({CHANGELOG: LOG}, start=150)
    assert restore(store, deleted).cases[0] == full_table(LOG) and deleted.read == 200
    # another topic id (the topic was created again, another cluster): whole changelog
    other = CheckpointStore(tmp_path / "other", topic_id="topic-A")
    other.save(CHANGELOG, 150, 0, {b"k1": b"from-another-topic"}, replace=True)
    other.topic_id = "topic-B"
    foreign = SeekingConsumer({CHANGELOG: LOG})
    assert restore(other, foreign).cases[0] == full_table(LOG) and foreign.read == 200
    # no checkpoint at all, and no store
    assert restore(CheckpointStore(tmp_path / "empty", "topic-A"),
                   SeekingConsumer({CHANGELOG: LOG})).cases[0] == full_table(LOG)
    assert restore(None, SeekingConsumer({CHANGELOG: LOG})).cases[0] == full_table(LOG)


def test_a_zombie_write_in_the_tail_older_than_the_checkpoint_does_not_win(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, topic_id="topic-A")
    store.save(CHANGELOG, 2, 50, {b"a": b"checkpointed"}, replace=True)  # position 50
    consumer = SeekingConsumer({CHANGELOG: [(b"a", b"x"), (b"a", b"y"), (b"a", b"zombie")]})
    consumer.logs[CHANGELOG][2].headers = [("src", (40).to_bytes(8, "big"))]  # older than 50
    tables = restore(store, consumer)
    assert tables.cases[0] == {b"a": b"checkpointed"}
    assert [(key, value) for _, key, value, _ in tables.repairs] == [(b"a", b"checkpointed")]
