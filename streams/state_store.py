"""Local checkpoints of the `cases` changelog partitions a worker owns (KETENMONITOR_STATE_DIR).

    store = CheckpointStore(Path("/var/lib/ketenmonitor/state"), topic_id="Zq3...")
    found = store.load(changelog_tp)          # Checkpoint(offset, position, table) or None
    store.save(changelog_tp, offset, position, changes)     # the records written since

A checkpoint is the `cases` changelog partition as compaction would leave it at offset `offset`,
with the changelog offset it reflects: per key its latest value, the case states and the
retired-cases aggregate (streams/retirement.py) as records, and the retired cases' markers as the
sorted array of their key digests (8 bytes each; the retirement's own RetiredKeys), so that a
restore neither reads nor hashes millions of markers. A restore reads the checkpoint and only the
changelog records from `offset` on (the tail), instead of the whole partition. A checkpoint may
also hold the partition's totals (ChainTotals, as the retired-cases aggregate encodes them) as of
`offset`: a restore whose tail is empty takes them instead of folding every stored case again
(streams/worker.py); they are dropped whenever records are added without them.

The changelog stays the source of truth. A checkpoint is not used, and the partition is read from
its beginning, when:
  - there is none (a new machine, a lost disk) or it cannot be read;
  - it was written for another changelog topic: the topic id (KIP-516) differs, e.g. the topic was
    deleted and created again, or the worker points at another cluster;
  - its offset is past the changelog's end (the local copy is ahead of the log: another epoch), or
    before the log's start offset (records it had not seen were deleted).
  - it was written by an earlier version of the checkpoint format (META_VERSION).
Compaction of records after the checkpoint's offset does not matter: compaction keeps the latest
record of every key, which a tail read sees. The `cases` changelog has no tombstones (retired cases
are markers), so a checkpoint older than delete.retention.ms misses nothing either.

Storage: LMDB (`lmdb`), one environment per state directory, chosen by measurement
(bench/state_store_micro.py, bench/analysis.md): of SQLite, LMDB and RocksDB (rocksdict) it wrote
and read a whole partition fastest. A partition's records are not one LMDB record per key but a
few large values: a base (the partition's table as of some earlier checkpoint) and the deltas
written since (each checkpoint's new records), each a `marshal`led dict. A checkpoint is then a
single put that LMDB copies without Python's lock, where a put per record took the lock for every
record and slowed the worker beside it by a third (bench/checkpoint_layout.py). When the deltas
outgrow the base (or there are MAX_DELTAS of them) they are merged into a new base in the same
transaction, so a restore reads at most about twice the partition, and a record is rewritten a
bounded number of times. A checkpoint is written in one LMDB transaction (all of it or nothing);
the positions a restore needs for the changelog's zombie check (streams/changelog.py) are the
checkpoint's `position` for every key it holds.
"""

from __future__ import annotations

import asyncio
import logging
import marshal
import os
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lmdb
from aiokafka import TopicPartition
from ketenmonitor.streams.retirement import (
    AGGREGATE_KEY,
    RETIRED_MARKER,
    chain_fingerprint,
    encode_totals_snapshot,
    is_marker,
)

log = logging.getLogger(__name__)

META_VERSION = 3  # 3: records as marshalled base and deltas (2: a record per key, 1: markers too)
_META = struct.Struct(">BQQ")  # version, offset, position
MAP_SIZE = 1 << 40  # address space only: LMDB's file grows with what is written
MAX_DBS = 1024  # named databases: `checkpoints`, and those of earlier layouts (dropped on open)
CHECKPOINTS_DB = b"checkpoints"
RETIRED_PART = "#retired"  # keys beside a partition's meta: its retired digests, its totals,
TOTALS_PART = "#totals"
BASE_PART = "#records"  # its records' base, and its deltas (DELTA_PART + a 10-digit sequence)
DELTA_PART = "#records+"
MAX_DELTAS = 64  # deltas kept before they are merged into the base whatever their size
MERGE_MIN_BYTES = 16 << 20  # deltas smaller than this (and the base) are not merged yet
MARSHAL_VERSION = 4  # marshal's format (Python 3.4+); a value it cannot read: not used
# The nice value of the thread that writes periodic checkpoints to LMDB (Linux: per thread): the
# write yields the CPU to event processing (like RocksDB's lowered background-thread priority).
WRITER_NICE = 19


@dataclass
class Checkpoint:
    offset: int  # the changelog offset it reflects: the tail is read from here
    position: int  # highest record position, an ownership epoch (the zombie check's floor)
    table: dict[bytes, bytes]  # key -> latest value (states, the aggregate; no markers)
    retired: bytes = b""  # the retired keys' digests (RetiredKeys.to_bytes)
    totals: bytes | None = None  # the partition's totals as of `offset`, if saved with them


def _records(value: Any) -> dict[bytes, bytes]:
    if not isinstance(value, dict):
        raise ValueError(f"a checkpoint's records are a {type(value).__name__}, not a dict")
    return value


def _merge(table: dict[bytes, bytes], records: Any) -> dict[bytes, bytes]:
    """`records` (a key -> value dict) written over `table`: a marker removes its key."""
    table.update(_records(records))
    if RETIRED_MARKER in records.values():  # looked for in C; the loop only with retirements
        for key in [key for key, value in records.items() if is_marker(value)]:
            del table[key]
    return table


def _holds_markers(changes: dict[bytes, bytes], retired: bytes | memoryview | None) -> bool:
    """Whether `changes` hold retired cases' markers (looked for in C); those need the retired
    keys' digests (`retired`) in the same checkpoint."""
    markers = RETIRED_MARKER in changes.values()
    if markers and retired is None:
        raise ValueError("a checkpoint with retired cases needs the retired keys' digests")
    return markers


def encode_records(
    changes: dict[bytes, bytes], retired: bytes | memoryview | None = None
) -> tuple[bytes | None, bool]:
    """A delta's value, the records marshalled (None for no records), and whether they hold
    retired cases' markers (`_holds_markers`)."""
    markers = _holds_markers(changes, retired)
    return (marshal.dumps(changes, MARSHAL_VERSION) if changes else None), markers


class CheckpointStore:
    def __init__(self, directory: Path, topic_id: str | None = None) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.topic_id = topic_id  # of the `cases` changelog; None: not known yet (never matches)
        self._env = lmdb.open(
            str(directory / "cases-checkpoints.lmdb"),
            map_size=MAP_SIZE,
            max_dbs=MAX_DBS,
            subdir=True,
            sync=True,
        )
        self._drop_earlier_layouts()
        self._db = self._env.open_db(CHECKPOINTS_DB)

    def close(self) -> None:
        self._env.close()

    def _drop_earlier_layouts(self) -> None:
        """Version 2 kept a database per partition and one for the metadata: their space is
        given back (those checkpoints are not used; the changelog is read instead)."""
        with self._env.begin() as txn:
            names = [bytes(name) for name, _ in txn.cursor()]
        for name in names:
            if name != CHECKPOINTS_DB:
                try:
                    db = self._env.open_db(name, create=False)
                except lmdb.Error:
                    continue  # not a named database
                with self._env.begin(write=True) as txn:
                    txn.drop(db, delete=True)
                log.info("local checkpoints of an earlier format removed: %s", name.decode())

    @staticmethod
    def _key(tp: TopicPartition, part: str = "") -> bytes:
        return f"{tp.topic}/{tp.partition}{part}".encode()

    def _deltas(self, txn: Any, tp: TopicPartition) -> list[tuple[bytes, int]]:
        """The partition's delta keys in the order written, with their sizes."""
        prefix = self._key(tp, DELTA_PART)
        cursor = txn.cursor(db=self._db)
        found = []
        if cursor.set_range(prefix):
            for key, value in cursor:
                if not bytes(key).startswith(prefix):
                    break
                found.append((bytes(key), len(value)))
        return found

    def holds(self, tp: TopicPartition) -> bool:
        """Whether anything is saved for changelog partition `tp` (every save writes its meta
        record in the same transaction as the rest; `forget` deletes them together)."""
        with self._env.begin(db=self._db) as txn:
            return txn.get(self._key(tp)) is not None

    def load(self, tp: TopicPartition) -> Checkpoint | None:
        """The checkpoint of changelog partition `tp` if there is one for this topic id."""
        try:
            with self._env.begin(db=self._db, buffers=True) as txn:
                raw = txn.get(self._key(tp))
                if raw is None:
                    return None
                version, offset, position = _META.unpack_from(raw)
                topic_id = bytes(raw[_META.size :]).decode()
                if version != META_VERSION:
                    log.warning(
                        "local checkpoint of %s/%s has format version %d, not %d: not used",
                        tp.topic, tp.partition, version, META_VERSION,
                    )
                    return None
                if self.topic_id is None or topic_id != self.topic_id:
                    log.warning(
                        "local checkpoint of %s/%s is for topic id %s, not %s: not used",
                        tp.topic, tp.partition, topic_id, self.topic_id,
                    )
                    return None
                table = self._table(txn, tp)
                retired = txn.get(self._key(tp, RETIRED_PART))
                totals = txn.get(self._key(tp, TOTALS_PART))
                return Checkpoint(offset, position, table,
                                  b"" if retired is None else bytes(retired),
                                  None if totals is None else bytes(totals))
        except (lmdb.Error, ValueError, EOFError, TypeError) as exc:
            log.warning("local checkpoint of %s/%s unreadable (%r): not used", tp.topic,
                        tp.partition, exc)
            return None

    def _table(self, txn: Any, tp: TopicPartition) -> dict[bytes, bytes]:
        """The base with every delta written over it, in order."""
        base = txn.get(self._key(tp, BASE_PART))
        table = {} if base is None else _records(marshal.loads(base))
        for key, _ in self._deltas(txn, tp):
            _merge(table, marshal.loads(txn.get(key)))
        return table

    def save(
        self,
        tp: TopicPartition,
        offset: int,
        position: int,
        changes: dict[bytes, bytes],
        replace: bool = False,
        retired: bytes | memoryview | None = None,
        totals: bytes | None = None,
    ) -> None:
        """Add the records written since the last checkpoint (`replace`: these are all of them)
        and move the checkpoint to `offset`, in one transaction (and merge the deltas into the
        base in a second one when they are due: the records are the same before and after).

        A marker among `changes` removes its key's record: `retired`, the digests of every key
        the partition has retired (RetiredKeys.to_bytes), must then be given; None keeps the
        saved digests. `totals`: the partition's totals as of `offset`; None drops saved ones
        (they no longer match the records)."""
        if self.topic_id is None:
            return
        if replace:
            self._replace(tp, offset, position, changes, retired, totals)
            return
        delta, markers = encode_records(changes, retired)
        if self.add_delta(tp, offset, position, delta, retired, totals, markers):
            self.merge(tp)

    def _meta(self, offset: int, position: int) -> bytes:
        assert self.topic_id is not None
        return _META.pack(META_VERSION, offset, max(position, 0)) + self.topic_id.encode()

    def _replace(
        self,
        tp: TopicPartition,
        offset: int,
        position: int,
        changes: dict[bytes, bytes],
        retired: bytes | memoryview | None,
        totals: bytes | None,
    ) -> None:
        _holds_markers(changes, retired)  # refuses markers without digests
        with self._env.begin(write=True, db=self._db, buffers=True) as txn:
            for key, _ in self._deltas(txn, tp):
                txn.delete(key)
            txn.delete(self._key(tp, RETIRED_PART))
            txn.put(self._key(tp, BASE_PART),
                    marshal.dumps(_merge({}, changes), MARSHAL_VERSION))
            self._finish(txn, tp, offset, position, retired, totals)

    def _finish(
        self,
        txn: Any,
        tp: TopicPartition,
        offset: int,
        position: int,
        retired: bytes | memoryview | None,
        totals: bytes | None,
    ) -> None:
        if retired is not None:
            txn.put(self._key(tp, RETIRED_PART), retired)
        if totals is not None:
            txn.put(self._key(tp, TOTALS_PART), totals)
        else:
            txn.delete(self._key(tp, TOTALS_PART))
        txn.put(self._key(tp), self._meta(offset, position))

    def add_delta(
        self,
        tp: TopicPartition,
        offset: int,
        position: int,
        delta: bytes | None,
        retired: bytes | memoryview | None = None,
        totals: bytes | None = None,
        markers: bool = True,
    ) -> bool:
        """`save` of records already encoded (`encode_records`; None: no records) without the
        merge: only LMDB calls, which run without Python's lock, so a thread of low priority can
        write it (`Checkpointer`). Returns whether the deltas are due to be merged (`merge`).
        `markers`: whether the records may hold retired cases' markers; a partition's first
        records without any are its base at once (a first delta that large would be merged
        into an empty base right away: read back and written again)."""
        if self.topic_id is None:
            return False
        due = False
        with self._env.begin(write=True, db=self._db, buffers=True) as txn:
            if delta is not None:
                base_key = self._key(tp, BASE_PART)
                deltas = self._deltas(txn, tp)
                base = txn.get(base_key)
                base_size = 0 if base is None else len(base)  # a buffer: read before a write
                if base is None and not deltas and not markers:
                    txn.put(base_key, delta)
                else:
                    sequence = int(deltas[-1][0][-10:]) + 1 if deltas else 0
                    key = self._key(tp, f"{DELTA_PART}{sequence:010d}")
                    txn.put(key, delta)
                    deltas.append((key, len(delta)))
                    due = len(deltas) > MAX_DELTAS or \
                        sum(size for _, size in deltas) > max(base_size, MERGE_MIN_BYTES)
            self._finish(txn, tp, offset, position, retired, totals)
        return due

    def merge(self, tp: TopicPartition) -> None:
        """The partition's deltas merged into a new base, in one transaction (the checkpoint
        holds the same records before and after)."""
        with self._env.begin(write=True, db=self._db, buffers=True) as txn:
            deltas = self._deltas(txn, tp)
            if not deltas:
                return
            table = self._table(txn, tp)
            for key, _ in deltas:
                txn.delete(key)
            txn.put(self._key(tp, BASE_PART), marshal.dumps(table, MARSHAL_VERSION))

    def forget(self, tp: TopicPartition) -> None:
        with self._env.begin(write=True, db=self._db) as txn:
            for key, _ in self._deltas(txn, tp):
                txn.delete(key)
            for part in ("", RETIRED_PART, TOTALS_PART, BASE_PART):
                txn.delete(self._key(tp, part))


def changelog_topic_id(bootstrap: str, topic: str, security: dict[str, Any]) -> str | None:
    """The topic id (KIP-516) of `topic`, or None when the broker does not say."""
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap, client_id="ketenmonitor-state", **security
    )
    try:
        for described in admin.describe_topics([topic]):
            topic_id = described.get("topic_id")
            if topic_id:
                return str(topic_id)
    finally:
        admin.close()
    return None


def open_checkpoints(settings: Any) -> CheckpointStore | None:
    """The worker's checkpoint store, or None when KETENMONITOR_STATE_DIR is unset."""
    if settings.state_dir is None:
        return None
    return CheckpointStore(Path(settings.state_dir) / settings.app_id)


class Checkpointer:
    """Writes the owned `cases` partitions' checkpoints (streams/worker.py calls it under its
    lock): every `seconds` between batches, and when partitions are revoked or the worker stops.
    A checkpoint holds acknowledged records only, and the totals they fold, at the changelog end
    they reach: the worker notes all three together when a batch is acknowledged
    (`tables.written_since_checkpoint`, `worker.totals`, `worker.acked_changelog_end`), so a
    periodic checkpoint takes them without waiting for the batches in flight; one at a
    revocation or stop drains them first, so that it holds everything written.

    A periodic checkpoint's LMDB transaction is written by a thread of low priority (nice
    WRITER_NICE): on a busy machine it yields the CPU to event processing and lands a little
    later; one the worker waits for is written at normal priority."""

    def __init__(
        self, worker: Any, store: CheckpointStore | None, seconds: float,
        catch_up_records: int = 0,
    ) -> None:
        self.worker = worker
        self.store = store
        self.seconds = seconds
        self.catch_up_records = catch_up_records
        self._last = time.monotonic()
        self._fingerprint: bytes | None = None
        # Owned partitions whose checkpoint holds the totals of its offset; the others get a
        # checkpoint at the next turn even without new records (a restore that read a tail, or
        # folded its totals, leaves one without them).
        self.with_totals: set[int] = set()
        self._writing: asyncio.Task[None] | None = None  # the checkpoint being written
        self._writer_thread: ThreadPoolExecutor | None = None

    @property
    def fingerprint(self) -> bytes:
        """The chain fingerprint saved with a checkpoint's totals (computed once)."""
        if self._fingerprint is None:
            self._fingerprint = chain_fingerprint(self.worker.chain)
        return self._fingerprint

    def bind(self) -> None:
        """Learn the `cases` changelog's topic id (blocking: call it in a thread)."""
        if self.store is None:
            return
        settings = self.worker.settings
        self.store.topic_id = changelog_topic_id(
            settings.kafka_bootstrap, self.worker.changelogs.cases,
            settings.kafka_python_security(),
        )
        if self.store.topic_id is None:
            log.warning("the broker gave no topic id for %s: local checkpoints are not used",
                        self.worker.changelogs.cases)

    async def due(self, catching_up: bool = False) -> None:
        """Checkpoint if `seconds` have passed: the records are taken now (the acknowledged
        ones) and written to LMDB in a thread while the worker goes on, one checkpoint at a
        time. `catching_up` (the worker's last batch was full): not before `catch_up_records`
        changelog records were written since the last checkpoint."""
        if self.store is None or time.monotonic() - self._last < self.seconds:
            return
        if catching_up and \
                self.worker.tables.records_since_checkpoint < self.catch_up_records:
            return
        if self._writing is not None and not self._writing.done():
            return  # the last one is still being written: at the next turn
        jobs = await self._take(drain=False)
        if jobs:
            self._writing = asyncio.create_task(self._write(jobs, background=True))

    async def now(self) -> None:
        """Checkpoint every owned partition with records written since its last checkpoint, and
        return once it is written (a revocation, the worker's stop)."""
        await self.wait()
        await self._write(await self._take(drain=True), background=False)

    async def wait(self) -> None:
        """Until the checkpoint being written (if any) is written: before a restore reads the
        checkpoints, or another is taken."""
        if self._writing is not None:
            await self._writing
            self._writing = None

    async def _take(self, drain: bool) -> list[_Job]:
        worker, store = self.worker, self.store
        if store is None:
            return []
        self._last = time.monotonic()
        await self.wait()
        started = time.monotonic()
        if drain:
            await worker.pipeline.drain()
        drained = time.monotonic() - started  # the pipeline stood still this long
        if worker.pipeline.failure is not None or worker._suspended:
            return []  # what was written is not known: the next restore reads the changelog
        tables = worker.tables
        tables.records_since_checkpoint = 0  # taken now (those of a failed write come back)
        jobs = []
        for partition in sorted(tables.case_partitions()):
            changes = tables.written_since_checkpoint.pop(partition, None)
            if not changes and partition in self.with_totals:
                continue
            tp = TopicPartition(worker.changelogs.cases, partition)
            offset = worker.acked_changelog_end.get(partition)
            if offset is None:
                if changes:  # not known yet: kept for the next checkpoint
                    tables.written_since_checkpoint[partition] = changes
                continue
            changes = changes or {}
            position = worker.case_position.get(partition, 0)  # what this owner writes with
            started = time.monotonic()
            # The totals are those of the acknowledged records: of `offset`. A restore takes saved
            # totals only when no record follows the checkpoint, so a periodic checkpoint of a
            # partition that is being written leaves them out (a tail will follow it); the next
            # turn without new records, and one the worker waits for, saves them.
            totals = encode_totals_snapshot(self.fingerprint, worker.totals.of(partition)) \
                if drain or not changes else None
            encoded = time.monotonic() - started
            retirement = tables.retired.get(partition)
            retired = None
            # A worker writes markers only with the aggregate (a retirement, streams/
            # retirement.py) or as repairs of markers read back: both are looked for in C.
            if retirement is not None and (
                AGGREGATE_KEY in changes or RETIRED_MARKER in changes.values()
            ):
                retired = retirement.keys.to_bytes()  # taken now: a later merge makes a new run
            jobs.append(_Job(tp, offset, position, changes, retired, totals, encoded, drained))
        return jobs

    def _writer(self) -> ThreadPoolExecutor:
        """The thread that writes checkpoints' LMDB transactions, at low priority (WRITER_NICE).
        Only LMDB's own calls, which run without Python's lock, run there (`add_delta`): what
        holds the lock (marshalling, merging) runs in a thread of normal priority, since the
        worker waits for the lock that a starved low-priority thread would hold."""
        if self._writer_thread is None:
            self._writer_thread = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="checkpoint-writer", initializer=_lower_priority
            )
        return self._writer_thread

    async def _write(self, jobs: list[_Job], background: bool) -> None:
        """`background`: a periodic checkpoint, written by the low-priority thread; else one
        the worker waits for (a revocation, its stop), written at normal priority."""
        store, tables = self.store, self.worker.tables
        assert store is not None or not jobs
        loop = asyncio.get_running_loop()
        for job in jobs:
            started = time.monotonic()
            partition = job.tp.partition
            try:
                assert store is not None
                (delta, markers), cpu = await asyncio.to_thread(
                    _timed, encode_records, job.changes, job.retired
                )
                due, written = await loop.run_in_executor(
                    self._writer() if background else None, _timed, store.add_delta, job.tp,
                    job.offset, job.position, delta, job.retired, job.totals, markers,
                )
                cpu += written
                if due:
                    _, merged = await asyncio.to_thread(_timed, store.merge, job.tp)
                    cpu += merged
            except (lmdb.Error, ValueError) as exc:
                log.warning("checkpoint of %s not written (%r)", job.tp, exc)
                self.with_totals.discard(partition)
                if partition in tables.cases:  # its records go into the next checkpoint, under
                    newer = tables.written_since_checkpoint.get(partition, {})  # newer ones
                    tables.written_since_checkpoint[partition] = {**job.changes, **newer}
                    tables.records_since_checkpoint += len(job.changes)
                continue
            if partition in tables.cases and job.totals is not None:
                self.with_totals.add(partition)
            else:
                self.with_totals.discard(partition)
            log.info(
                "checkpoint of %s/%s at offset %d: %d records in %.2fs, %.3f CPU-s in its threads "
                "(totals encoded in %.2fs; batches drained in %.2fs%s)",
                job.tp.topic, partition, job.offset, len(job.changes),
                time.monotonic() - started, cpu, job.encoded_seconds, job.drained_seconds,
                "; deltas merged" if due else "",
            )


def _lower_priority() -> None:
    """Lower the calling thread's priority (on Linux a thread id is a PRIO_PROCESS target)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WRITER_NICE)
    except (OSError, AttributeError) as exc:  # not Linux, or not allowed: normal priority
        log.info("checkpoint writer keeps its priority (%r)", exc)


def _timed(call: Any, *args: Any) -> tuple[Any, float]:
    """`call(*args)` and the CPU-seconds its thread used."""
    started = time.thread_time()
    result = call(*args)
    return result, time.thread_time() - started


@dataclass
class _Job:
    """One partition's checkpoint, taken (streams/worker.py holds its lock) and to be written."""

    tp: TopicPartition
    offset: int
    position: int
    changes: dict[bytes, bytes]
    retired: bytes | memoryview | None
    totals: bytes | None  # None: left out (a partition being written, see `_take`)
    encoded_seconds: float
    drained_seconds: float  # how long the batches in flight took to drain before it was taken
