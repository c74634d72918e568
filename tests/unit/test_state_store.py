"""Local checkpoints (streams/state_store.py): a restore reads the checkpoint and the changelog's
tail only; a missing, foreign or out-of-range checkpoint falls back to the whole changelog."""

from __future__ import annotations

import asyncio
import threading
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


# -- retired cases and totals in a checkpoint -----------------------------------------------------
def retired_log():
    """A changelog with states, a retirement (markers and the aggregate) and the live totals."""
    from ketenmonitor.streams.retirement import AGGREGATE_KEY, RETIRED_MARKER, PartitionRetirement
    from test_retirement import CHAIN, CUTOFF, simulated_table

    table, live, _ = simulated_table()
    retirement = PartitionRetirement(CHAIN)
    retirement.sweep(table, CUTOFF)
    plan = retirement.plan(dict(table), CUTOFF, limit=10_000)
    assert plan is not None and len(plan.keys) > 50
    log = [(k, v) for k, v in table.items()]
    log += [(k, RETIRED_MARKER) for k in plan.keys] + [(AGGREGATE_KEY, plan.value)]
    return CHAIN, log, plan.keys, live


def restore_with_chain(store, consumer, chain) -> OwnedTables:
    tables = OwnedTables(CASES, LOGS, chain, checkpoints=store)
    asyncio.run(tables.restore(consumer, {TopicPartition(CASES, 0)}))
    return tables


def test_a_checkpoint_keeps_retired_cases_as_digests_not_records(tmp_path: Path) -> None:
    from ketenmonitor.streams.retirement import RETIRED_MARKER, RetiredKeys, key_digest

    chain, log, retired, _ = retired_log()
    store = CheckpointStore(tmp_path, topic_id="topic-A")
    whole = restore_with_chain(store, SeekingConsumer({CHANGELOG: log}), chain)
    found = store.load(CHANGELOG)
    assert found is not None and found.offset == len(log)
    assert not any(v == RETIRED_MARKER for v in found.table.values())  # no marker records
    assert set(found.table) == set(whole.cases[0]) | {b"\x00retired-cases"}
    assert sorted(RetiredKeys.from_bytes(found.retired)._sorted) == sorted(
        key_digest(k) for k in retired
    )
    # from the checkpoint: the same table and retired keys, nothing read
    consumer = SeekingConsumer({CHANGELOG: log})
    again = restore_with_chain(store, consumer, chain)
    assert consumer.read == 0 and again.cases[0] == whole.cases[0]
    assert all(again.retired[0].is_retired(k) for k in retired)
    assert not any(again.retired[0].is_retired(k) for k in again.cases[0])
    # a tail that retires one more case: its marker joins the digests, its record leaves
    more = next(iter(again.cases[0]))
    tail = [*log, (more, RETIRED_MARKER)]
    third = restore_with_chain(store, SeekingConsumer({CHANGELOG: tail}), chain)
    assert more not in third.cases[0] and third.retired[0].is_retired(more)
    found = store.load(CHANGELOG)
    assert found is not None and more not in found.table
    assert key_digest(more) in RetiredKeys.from_bytes(found.retired)


def test_a_zombie_state_after_a_checkpointed_retirement_loses_and_the_marker_is_written_again(
    tmp_path: Path,
) -> None:
    from ketenmonitor.streams.retirement import RETIRED_MARKER

    chain, log, retired, _ = retired_log()
    store = CheckpointStore(tmp_path, topic_id="topic-A")
    store.save(CHANGELOG, len(log), 50, dict(log), replace=True,
               retired=_digests(retired))
    zombie = [*log, (retired[0], dict(log)[retired[0]])]
    consumer = SeekingConsumer({CHANGELOG: zombie})
    consumer.logs[CHANGELOG][-1].headers = [("src", (40).to_bytes(8, "big"))]  # older than 50
    tables = restore_with_chain(store, consumer, chain)
    assert retired[0] not in tables.cases[0] and tables.retired[0].is_retired(retired[0])
    assert [(k, v, p) for _, k, v, p in tables.repairs] == [(retired[0], RETIRED_MARKER, 50)]


def _digests(keys) -> bytes:
    from ketenmonitor.streams.retirement import RetiredKeys, key_digest

    digests = RetiredKeys()
    digests.update(key_digest(k) for k in keys)
    return digests.to_bytes()


def test_saved_totals_are_offered_only_with_no_tail_and_dropped_by_a_save_without_them(
    tmp_path: Path,
) -> None:
    from ketenmonitor.streams.retirement import (
        chain_fingerprint,
        decode_totals_snapshot,
        encode_totals_snapshot,
    )

    chain, log, retired, live = retired_log()
    fingerprint = chain_fingerprint(chain)
    totals = encode_totals_snapshot(fingerprint, live.of(0))
    back = decode_totals_snapshot(chain, fingerprint, totals)
    assert back == live.of(0) and back is not live.of(0)  # every field round-trips
    assert back.waiting_by_hours and back.lead_times and back.cases == live.of(0).cases
    assert decode_totals_snapshot(chain, b"another-chain", totals) is None
    store = CheckpointStore(tmp_path, topic_id="topic-A")
    store.save(CHANGELOG, len(log), 0, dict(log), replace=True, retired=_digests(retired),
               totals=totals)
    at_rest = restore_with_chain(store, SeekingConsumer({CHANGELOG: log}), chain)
    assert at_rest.totals_snapshots == {0: totals}
    tail = [*log, (b"new-case", log[0][1])]
    with_tail = restore_with_chain(store, SeekingConsumer({CHANGELOG: tail}), chain)
    assert with_tail.totals_snapshots == {}  # records after them: folded again
    found = store.load(CHANGELOG)
    assert found is not None and found.totals is None  # that restore's save dropped them


def test_a_checkpoint_of_the_earlier_format_is_not_used(tmp_path: Path) -> None:
    from ketenmonitor.streams.state_store import _META

    store = CheckpointStore(tmp_path, topic_id="topic-A")
    store.save(CHANGELOG, 150, 0, dict(LOG[:150]), replace=True)
    with store._env.begin(write=True) as txn:
        key = f"{CHANGELOG.topic}/{CHANGELOG.partition}".encode()
        raw = txn.get(key, db=store._db)
        _, offset, position = _META.unpack_from(raw)
        txn.put(key, _META.pack(1, offset, position) + raw[_META.size :], db=store._db)
    assert store.load(CHANGELOG) is None
    consumer = SeekingConsumer({CHANGELOG: LOG})
    assert restore(store, consumer).cases[0] == full_table(LOG) and consumer.read == 200


class _Pipeline:
    failure = None

    def __init__(self) -> None:
        self.in_flight: list = []  # (worker, records) of batches sent, not yet acknowledged
        self.drains = 0

    async def drain(self) -> None:
        self.drains += 1
        for worker, records in self.in_flight:
            worker.write(records)
        self.in_flight.clear()


class _Worker:
    """What Checkpointer reads of streams/worker.py's Worker."""

    def __init__(self, store: CheckpointStore) -> None:
        from ketenmonitor.streams.processing import PartitionTotals

        from ketenmonitor.domain.chain import load_chain

        self.chain = load_chain()
        self.pipeline = _Pipeline()
        self._suspended = False
        self.tables = OwnedTables(CASES, LOGS, self.chain, store)
        self.tables.cases[0] = {}
        self.changelogs = LOGS
        self.changelog_end: dict[TopicPartition, int] = {}
        self.acked_changelog_end: dict[int, int] = {}
        self.case_position = {0: 1}
        self.totals = PartitionTotals(self.chain)

    def write(self, records: dict[bytes, bytes]) -> None:
        """A batch acknowledged on partition 0's changelog."""
        self.tables.cases[0].update(records)
        self.tables.note_written(0, records)
        end = self.changelog_end.get(CHANGELOG, 0)
        self.changelog_end[CHANGELOG] = self.acked_changelog_end[0] = end + len(records)

    def send(self, records: dict[bytes, bytes]) -> None:
        """A batch sent, not acknowledged yet (the worker notes nothing of it until then)."""
        self.pipeline.in_flight.append((self, records))


def test_a_due_checkpoint_is_written_while_the_worker_goes_on_and_a_failed_one_is_not_lost(
    tmp_path: Path, monkeypatch
) -> None:
    import lmdb
    from ketenmonitor.streams.state_store import Checkpointer

    store = CheckpointStore(tmp_path, topic_id="t1")
    worker = _Worker(store)
    checkpointer = Checkpointer(worker, store, seconds=0.0)
    saved = store.add_delta
    started, release = threading.Event(), threading.Event()

    def slow_then_failing_save(*args, **kwargs):
        started.set()
        release.wait(10)
        raise lmdb.Error("disk full")

    async def scenario() -> None:
        worker.write({b"k1": b"v1", b"k2": b"v2"})
        monkeypatch.setattr(store, "add_delta", slow_then_failing_save)
        await checkpointer.due()  # taken, and written in a thread: due() does not wait for it
        await asyncio.to_thread(started.wait, 10)
        worker.write({b"k2": b"v2b", b"k3": b"v3"})  # the worker goes on meanwhile
        await checkpointer.due()  # still writing: nothing taken
        assert worker.tables.written_since_checkpoint[0] == {b"k2": b"v2b", b"k3": b"v3"}
        release.set()
        await checkpointer.wait()  # failed: its records go back, under the newer ones
        assert worker.tables.written_since_checkpoint[0] == {
            b"k1": b"v1", b"k2": b"v2b", b"k3": b"v3"
        }
        monkeypatch.setattr(store, "add_delta", saved)
        await checkpointer.now()

    asyncio.run(scenario())
    found = store.load(CHANGELOG)
    assert found is not None and found.offset == 4
    assert found.table == {b"k1": b"v1", b"k2": b"v2b", b"k3": b"v3"}
    assert worker.tables.written_since_checkpoint == {}


# -- the records as a base and deltas --------------------------------------------------------------
def test_deltas_and_their_merges_into_the_base_load_as_the_records_written_in_order(
    tmp_path: Path, monkeypatch
) -> None:
    import random

    from ketenmonitor.streams import state_store
    from ketenmonitor.streams.retirement import RETIRED_MARKER

    monkeypatch.setattr(state_store, "MAX_DELTAS", 5)
    monkeypatch.setattr(state_store, "MERGE_MIN_BYTES", 2_000)
    rng = random.Random(17)
    store = CheckpointStore(tmp_path, topic_id="topic-A")
    expected: dict[bytes, bytes] = {}  # the partition as compaction would leave it
    merges = deltas_seen = 0
    for offset in range(1, 120):
        if offset % 40 == 0:  # a restore that read the whole partition: replaces everything
            changes = {f"k{rng.randrange(300)}".encode(): rng.randbytes(8) for _ in range(50)}
            expected = dict(changes)
            store.save(CHANGELOG, offset, 0, changes, replace=True, retired=b"")
        else:
            changes = {}
            for _ in range(rng.randrange(0, 30)):
                key = f"k{rng.randrange(300)}".encode()
                changes[key] = RETIRED_MARKER if rng.random() < 0.1 else rng.randbytes(8)
            markers = RETIRED_MARKER in changes.values()
            store.save(CHANGELOG, offset, 0, changes, retired=b"" if markers else None)
            for key, value in changes.items():
                if value == RETIRED_MARKER:
                    expected.pop(key, None)
                else:
                    expected[key] = value
        with store._env.begin(db=store._db) as txn:
            now = len(store._deltas(txn, CHANGELOG))
        merges += now < deltas_seen
        deltas_seen = now
        assert now <= state_store.MAX_DELTAS
        found = store.load(CHANGELOG)
        assert found is not None and found.offset == offset
        assert found.table == expected, offset
    assert merges >= 5  # by count and by size; replaced twice


def test_a_checkpoint_with_retired_cases_and_no_digests_is_refused(tmp_path: Path) -> None:
    import pytest
    from ketenmonitor.streams.retirement import RETIRED_MARKER

    store = CheckpointStore(tmp_path, topic_id="topic-A")
    with pytest.raises(ValueError, match="retired keys' digests"):
        store.save(CHANGELOG, 1, 0, {b"k1": RETIRED_MARKER})
    assert store.load(CHANGELOG) is None


def test_an_unreadable_delta_or_the_layout_before_version_3_falls_back_to_the_changelog(
    tmp_path: Path, caplog
) -> None:
    import lmdb
    from ketenmonitor.streams.state_store import DELTA_PART

    store = CheckpointStore(tmp_path, topic_id="topic-A")
    restore(store, SeekingConsumer({CHANGELOG: LOG[:150]}))
    store.save(CHANGELOG, 160, 0, dict(LOG[150:160]))
    with store._env.begin(write=True, db=store._db) as txn:
        (key, _), = store._deltas(txn, CHANGELOG)
        assert key.startswith(store._key(CHANGELOG, DELTA_PART))
        txn.put(key, b"\x00not marshal")
    assert store.load(CHANGELOG) is None
    assert "unreadable" in caplog.text
    consumer = SeekingConsumer({CHANGELOG: LOG})
    assert restore(store, consumer).cases[0] == full_table(LOG) and consumer.read == 200
    store.close()

    # Version 2's layout: a database per partition and one for the metadata. They are dropped
    # when the store opens, and the changelog is read.
    old = tmp_path / "v2"
    old.mkdir()
    env = lmdb.open(str(old / "cases-checkpoints.lmdb"), max_dbs=8, subdir=True)
    with env.begin(write=True) as txn:
        txn.put(b"k1", b"v1", db=env.open_db(f"{CHANGELOG.topic}/0".encode(), txn=txn))
        txn.put(f"{CHANGELOG.topic}/0".encode(), b"\x02" + bytes(16) + b"topic-A",
                db=env.open_db(b"meta", txn=txn))
    env.close()
    reopened = CheckpointStore(old, topic_id="topic-A")
    with reopened._env.begin() as txn:
        assert [bytes(name) for name, _ in txn.cursor()] == [b"checkpoints"]
    assert reopened.load(CHANGELOG) is None
    consumer = SeekingConsumer({CHANGELOG: LOG})
    assert restore(reopened, consumer).cases[0] == full_table(LOG) and consumer.read == 200


def test_an_empty_changelog_leaves_no_checkpoint_and_a_stale_one_is_replaced(
    tmp_path: Path,
) -> None:
    """Restoring an empty changelog partition with nothing saved writes nothing (an LMDB commit
    per partition at every start for no gain); one with a checkpoint of another topic id still
    gets it replaced, so that its records cannot come back under the new id."""
    store = CheckpointStore(tmp_path, topic_id="topic-A")
    restore(store, SeekingConsumer({CHANGELOG: []}))
    assert not store.holds(CHANGELOG) and store.load(CHANGELOG) is None
    store.save(CHANGELOG, 150, 149, dict(LOG[:150]), replace=True)
    assert store.holds(CHANGELOG)
    store.topic_id = "topic-B"  # the changelog was deleted and made again: empty, another id
    assert restore(store, SeekingConsumer({CHANGELOG: []})).cases[0] == {}
    found = store.load(CHANGELOG)
    assert found is not None and found.offset == 0 and found.table == {}
    store.forget(CHANGELOG)
    assert not store.holds(CHANGELOG)


def test_a_periodic_checkpoint_takes_the_acknowledged_batches_without_waiting_for_the_others(
    tmp_path: Path,
) -> None:
    """Between batches, a periodic checkpoint holds what is acknowledged, at the changelog end
    that reaches, and leaves the batches in flight to the next one; a checkpoint at a
    revocation or stop drains them first."""
    from ketenmonitor.streams.state_store import Checkpointer

    store = CheckpointStore(tmp_path, topic_id="t1")
    worker = _Worker(store)
    checkpointer = Checkpointer(worker, store, seconds=0.0)

    async def scenario() -> None:
        worker.write({b"k1": b"v1", b"k2": b"v2"})
        worker.send({b"k2": b"v2b", b"k3": b"v3"})  # in flight
        await checkpointer.due()
        await checkpointer.wait()
        assert worker.pipeline.drains == 0
        found = store.load(CHANGELOG)
        assert found is not None and found.offset == 2
        assert found.table == {b"k1": b"v1", b"k2": b"v2"}
        await checkpointer.now()
        assert worker.pipeline.drains == 1

    asyncio.run(scenario())
    found = store.load(CHANGELOG)
    assert found is not None and found.offset == 4
    assert found.table == {b"k1": b"v1", b"k2": b"v2b", b"k3": b"v3"}


def test_a_periodic_checkpoint_is_written_at_low_priority_and_merged_and_one_waited_for_is_not(
    tmp_path: Path, monkeypatch
) -> None:
    """The LMDB transaction of a periodic checkpoint runs in a thread of nice WRITER_NICE; the
    marshalling and a merge due (both hold Python's lock) and a checkpoint at a revocation or
    stop (the worker waits for it) run at the process's own priority. The records load the same."""
    import os

    from ketenmonitor.streams import state_store
    from ketenmonitor.streams.state_store import WRITER_NICE, Checkpointer

    monkeypatch.setattr(state_store, "MAX_DELTAS", 1)  # the second delta is due for a merge
    store = CheckpointStore(tmp_path, topic_id="t1")
    worker = _Worker(store)
    checkpointer = Checkpointer(worker, store, seconds=0.0)
    nice_of: dict[str, list[int]] = {"add_delta": [], "merge": [], "encode_records": []}

    def recorded(name, call):
        def wrapper(*args, **kwargs):
            nice_of[name].append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
            return call(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(store, "add_delta", recorded("add_delta", store.add_delta))
    monkeypatch.setattr(store, "merge", recorded("merge", store.merge))
    monkeypatch.setattr(state_store, "encode_records",
                        recorded("encode_records", state_store.encode_records))
    own = os.getpriority(os.PRIO_PROCESS, 0)

    async def scenario() -> None:
        for records in ({b"k1": b"v1", b"k2": b"v2"}, {b"k2": b"v2b"}):
            worker.write(records)
            await checkpointer.due()
            await checkpointer.wait()
        worker.write({b"k3": b"v3"})
        await checkpointer.now()

    asyncio.run(scenario())
    assert nice_of["add_delta"] == [max(own, WRITER_NICE), max(own, WRITER_NICE), own]
    assert nice_of["encode_records"] == [own, own, own]
    # The first records are the base at once; the second delta (at the stop) is due for a merge.
    assert nice_of["merge"] == [own]
    found = store.load(CHANGELOG)
    assert found is not None and found.offset == 4
    assert found.table == {b"k1": b"v1", b"k2": b"v2b", b"k3": b"v3"}


def test_a_periodic_checkpoint_of_a_partition_being_written_leaves_its_totals_to_a_quiet_turn(
    tmp_path: Path,
) -> None:
    """Saved totals serve only a restore with no tail after the checkpoint: a periodic
    checkpoint with new records leaves them out (and drops older ones); the next turn without
    new records writes them; a checkpoint the worker waits for always holds them."""
    from ketenmonitor.streams.state_store import Checkpointer

    store = CheckpointStore(tmp_path, topic_id="t1")
    worker = _Worker(store)
    checkpointer = Checkpointer(worker, store, seconds=0.0)
    saved: list[tuple[int, bool]] = []

    async def checkpoint(wait: bool) -> None:
        await (checkpointer.now() if wait else checkpointer.due())
        await checkpointer.wait()
        found = store.load(CHANGELOG)
        assert found is not None
        saved.append((found.offset, found.totals is not None))

    async def scenario() -> None:
        worker.write({b"k1": b"v1", b"k2": b"v2"})
        await checkpoint(wait=False)  # new records: no totals
        await checkpoint(wait=False)  # a quiet turn: the totals of offset 2
        await checkpoint(wait=False)  # nothing new, totals saved: no checkpoint at all
        worker.write({b"k3": b"v3"})
        await checkpoint(wait=False)  # new records: the saved totals are dropped
        worker.write({b"k4": b"v4"})
        await checkpoint(wait=True)  # a stop: totals with the records

    asyncio.run(scenario())
    assert saved == [(2, False), (2, True), (2, True), (3, False), (4, True)]
    assert 0 in checkpointer.with_totals


def test_a_worker_catching_up_defers_its_periodic_checkpoint_until_the_tail_is_long_enough(
    tmp_path: Path,
) -> None:
    """While catching up, a periodic checkpoint waits until `catch_up_records` changelog records
    were noted since the last one; a worker that is not catching up checkpoints on time, and one
    the worker waits for is never deferred."""
    from ketenmonitor.streams.state_store import Checkpointer

    store = CheckpointStore(tmp_path, topic_id="t1")
    worker = _Worker(store)
    checkpointer = Checkpointer(worker, store, seconds=0.0, catch_up_records=4)

    def offset() -> int | None:
        found = store.load(CHANGELOG)
        return None if found is None else found.offset

    async def scenario() -> list[int | None]:
        seen = []
        worker.write({b"k1": b"v1", b"k2": b"v2", b"k3": b"v3"})
        await checkpointer.due(catching_up=True)  # 3 of 4: deferred
        await checkpointer.wait()
        seen.append(offset())
        worker.write({b"k4": b"v4"})
        await checkpointer.due(catching_up=True)  # 4: written
        await checkpointer.wait()
        seen.append(offset())
        worker.write({b"k5": b"v5"})
        await checkpointer.due(catching_up=True)  # 1 of 4 since: deferred
        await checkpointer.wait()
        seen.append(offset())
        await checkpointer.due(catching_up=False)  # caught up: on time
        await checkpointer.wait()
        seen.append(offset())
        worker.write({b"k6": b"v6"})
        await checkpointer.now()  # a stop
        seen.append(offset())
        return seen

    assert asyncio.run(scenario()) == [None, 4, 4, 5, 6]


def test_a_partitions_first_records_without_markers_are_its_base_at_once(tmp_path: Path) -> None:
    """No delta to merge into an empty base later: the first records go straight to the base;
    first records with retired cases' markers are a delta (a base holds no markers)."""
    from ketenmonitor.streams.retirement import RETIRED_MARKER

    store = CheckpointStore(tmp_path, topic_id="t1")
    other = TopicPartition(LOGS.cases, 1)
    store.save(CHANGELOG, 2, 0, {b"k1": b"v1", b"k2": b"v2"})
    store.save(other, 2, 0, {b"k1": b"v1", b"k2": RETIRED_MARKER}, retired=b"")
    store.save(CHANGELOG, 3, 0, {b"k3": b"v3"})
    with store._env.begin(db=store._db) as txn:
        deltas = {tp.partition: len(store._deltas(txn, tp)) for tp in (CHANGELOG, other)}
        based = {tp.partition: txn.get(store._key(tp, "#records")) is not None
                 for tp in (CHANGELOG, other)}
    assert deltas == {0: 1, 1: 1} and based == {0: True, 1: False}
    found, found_other = store.load(CHANGELOG), store.load(other)
    assert found is not None and found.table == {b"k1": b"v1", b"k2": b"v2", b"k3": b"v3"}
    assert found_other is not None and found_other.table == {b"k1": b"v1"}
