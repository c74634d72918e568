"""Closed cases leave the worker's state; what they contributed to the totals stays, durably.

    retirement = PartitionRetirement.restored(chain, aggregate_value_or_None)
    retirement.note_closed(key, now)             # a case applied in a batch may be retirable
    plan = retirement.plan(table, cutoff, limit)  # keys to retire and the aggregate after them
    retirement.retired(plan, table)               # once the plan's records are acknowledged
    key_digest(key) in retirement.keys            # a retired case (events for it: dead-lettered)

A case is retired when it is closed (its latest occurrence is a closing milestone with a closing
outcome, domain/case.py) and its latest event lies more than the retention
(KETENMONITOR_CLOSED_CASE_RETENTION_DAYS) before the age reference time. Open cases are never
retired, dormant ones included (they are backlog); a case reopened by a correction before it was
retired is open again and stays.

Retiring writes, in ONE record batch on the case's `cases` changelog partition (Kafka appends a
record batch whole or not at all):
  - per retired case, its key with the marker value RETIRED_MARKER (a few bytes; compaction keeps
    it as the key's last record, so a restore knows the case was retired);
  - the partition's aggregate (key AGGREGATE_KEY): the totals of every case retired so far
    (ChainTotals, as `add_case` folds a stored case), how many, and the count of events that
    arrived for retired cases.
A restore is then exact: totals = aggregate + the remaining states. The worker drains its batches
in flight first, so the states the plan reads are the acknowledged ones.

An event that arrives for a retired case is not applied (the case's state is gone; applying it to
an empty state would count a new case): it goes to the dead-letter topic with reason
`case_retired` and is counted in the aggregate (`retired_case_events`, exported as
ketenmonitor_events_retired_case_total). The count is idempotent under replay: the aggregate keeps,
per input topic of the partition (the case topic and the one-hop partner topics, streams/
placement.py), the offset after the last event it counted (`late_positions`), and an event below
it is dead-lettered again but not counted again. The aggregate record is written with the batch
that counted it.

Retired keys are held as 64-bit digests (blake2b of the key) in a sorted array: 8 bytes per retired
case plus a small unsorted set of recent ones. Two different keys share a digest with a
probability of about n^2 / 2^65 (n = retired cases of the partition: 7e-6 at 10 million): then an
event of a new case would be dead-lettered as `case_retired` (counted and kept, not lost).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import io
import logging
import marshal
import mmap
import tempfile
import time
from array import array
from bisect import bisect_left
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from hashlib import blake2b
from pathlib import Path
from typing import Any, BinaryIO

import orjson
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from ketenmonitor.streams.changelog import source_header
from ketenmonitor.streams.codec import FormatVersionError, decode_case_value

from ketenmonitor.domain.case import CaseState
from ketenmonitor.domain.chain import Chain
from ketenmonitor.domain.flow import Marks, last_event_at, retirable_facts
from ketenmonitor.domain.totals import ChainTotals, LeadTimeHistogram

log = logging.getLogger(__name__)

SECONDS_PER_DAY = 86_400
# Not a pseudonym (32 hex characters) nor a partner topic name: cannot collide with a case key.
AGGREGATE_KEY = b"\x00retired-cases"
# A decoded case walked once: (state, fact tuples, marks, withdrawn facts).
_Walked = tuple[CaseState, set[tuple], Marks, tuple[tuple, ...]]
MARKER_PREFIX = b"\x00R"  # a case value is JSON ("{..."): a leading NUL marks something else
RETIRED_MARKER = MARKER_PREFIX + b"1"  # version 1 of the marker
AGGREGATE_VERSION = 1
READABLE_AGGREGATE_VERSIONS = (AGGREGATE_VERSION,)
RETIRED_REASON = "case_retired"


def is_marker(value: bytes) -> bool:
    return value[:2] == MARKER_PREFIX


def key_digest(key: bytes) -> int:
    return int.from_bytes(blake2b(key, digest_size=8).digest(), "big")


class RetiredKeys:
    """A set of 64-bit key digests: a sorted run of them and a set of recent additions, merged
    into the run once the set reaches an eighth of it (amortised linear merging).

    `directory` (the worker's state directory): the run is an unnamed file there, mapped into
    memory. Its pages are the kernel's page cache, not the worker's own memory: clean, given
    back under memory pressure and read again when looked at, so five years of retired cases
    (400 MB of digests) do not stay in the worker's anonymous memory, as the open cases do.
    Without one, the run is an array('Q') in memory.
    """

    MIN_PENDING = 65_536

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory
        self._sorted: array[int] | memoryview = array("Q")
        self._recent: set[int] = set()

    def __len__(self) -> int:
        return len(self._sorted) + len(self._recent)

    def __contains__(self, digest: int) -> bool:
        if digest in self._recent:
            return True
        found = self._sorted
        i = bisect_left(found, digest)
        return i < len(found) and found[i] == digest

    def add(self, digest: int) -> None:
        if digest in self:
            return
        self._recent.add(digest)
        if len(self._recent) >= max(self.MIN_PENDING, len(self._sorted) // 8):
            self._merge()

    def update(self, digests: Iterable[int]) -> None:
        for digest in digests:
            self.add(digest)

    def _merge(self) -> None:
        # Slices between the insertion points, copied in C: a checkpoint merges its few new
        # digests into millions (heapq.merge stepped through every one of them in Python).
        old, start = self._sorted, 0
        if self.directory is None:
            merged = array("Q")
            for digest in sorted(self._recent):
                i = bisect_left(old, digest, start)
                merged.extend(old[start:i])  # type: ignore[arg-type]  # old is an array here
                merged.append(digest)
                start = i
            merged.extend(old[start:])  # type: ignore[arg-type]
            self._sorted = merged
        else:
            raw, size = memoryview(old).cast("B"), old.itemsize
            one = array("Q", [0])

            def write(out: BinaryIO) -> None:
                start = 0
                for digest in sorted(self._recent):
                    i = bisect_left(old, digest, start)
                    out.write(raw[start * size : i * size])
                    one[0] = digest
                    out.write(one)
                    start = i
                out.write(raw[start * size :])

            self._sorted = self._mapped(write)
        self._recent = set()

    def _mapped(self, write: Callable[[Any], object]) -> array[int] | memoryview:
        """The run `write` writes, in an unnamed file of the directory, mapped read-only. When
        the directory cannot take it (full, read-only, gone), the run is kept in memory from then
        on, with a warning: the worker goes on, as it does when a checkpoint cannot be written."""
        if self.directory is not None:
            try:
                with tempfile.TemporaryFile(
                    dir=self.directory, prefix="retired-keys-", buffering=1 << 20
                ) as out:
                    write(out)
                    out.flush()
                    size = out.tell()
                    if not size:
                        return array("Q")  # an empty file cannot be mapped
                    mapped = mmap.mmap(out.fileno(), size, access=mmap.ACCESS_READ)
                return memoryview(mapped).cast("Q")  # the map keeps its own handle of the file
            except OSError as exc:
                log.warning(
                    "the retired keys' digests cannot be kept in a file in %s (%r): kept in "
                    "memory from now on", self.directory, exc,
                )
                self.directory = None
        buffer = io.BytesIO()
        write(buffer)
        run = array("Q")
        run.frombytes(buffer.getbuffer())
        return run

    def nbytes(self) -> int:
        """The worker's own memory these digests take (a mapped run is the kernel's cache)."""
        run = 0 if isinstance(self._sorted, memoryview) else len(self._sorted)
        return 8 * run + 72 * len(self._recent)

    def mapped_bytes(self) -> int:
        return 8 * len(self._sorted) if isinstance(self._sorted, memoryview) else 0

    def to_bytes(self) -> bytes | memoryview:
        """Every digest, sorted, 8 bytes each in this machine's byte order (a local checkpoint,
        streams/state_store.py): a view of the run, not a copy."""
        if self._recent:
            self._merge()
        return memoryview(self._sorted).cast("B")

    @classmethod
    def from_bytes(cls, raw: bytes | memoryview, directory: Path | None = None) -> RetiredKeys:
        keys = cls(directory)
        if directory is None:
            keys._sorted.frombytes(raw)  # type: ignore[union-attr]
        elif len(raw):
            keys._sorted = keys._mapped(lambda out: out.write(raw))
        return keys


def retirable(chain: Chain, stored: bytes, cutoff: float) -> bool:
    """Whether the case in `stored` is closed with its latest event before `cutoff`."""
    return _retirable_walk(chain, stored, cutoff) is not None


def _retirable_walk(chain: Chain, stored: bytes, cutoff: float) -> _Walked | None:
    """The case in `stored`, decoded and walked once, if it is retirable (see `retirable`):
    what its contribution to the aggregate is folded from (ChainTotals.add_walked_case)."""
    if is_marker(stored):
        return None
    state, withdrawn = decode_case_value(stored)
    walked = retirable_facts(chain, state, cutoff)
    if walked is None:
        return None
    return state, walked[0], walked[1], withdrawn


@dataclass(frozen=True)
class RetirementPlan:
    keys: list[bytes]
    aggregate: ChainTotals  # after these keys
    retired_cases: int
    value: bytes  # the aggregate record's value


class Candidates:
    """Cases an event closed, in the order they were noted, batch by batch: per batch the
    time.monotonic() it was noted at, and per case its key and the stored value the closing
    event left (both the table's own objects: two list slots, 16 bytes a case; an OrderedDict
    took about 170). A case noted again is simply noted twice; an entry whose value is no
    longer the case's stored value is not planned from (`PartitionRetirement.plan` notes the
    case again with its current value, so a case is never retired sooner than the grace after
    its last change).

    Taken from the front only (a deque of batches and an index into the first): the oldest
    come first without scanning past the ones taken before (the quadratic trap of a dict's
    first item, see PartitionRetirement).
    """

    __slots__ = ("_batches", "_count", "_head")

    def __init__(self) -> None:
        self._batches: deque[tuple[float, list[bytes], list[bytes]]] = deque()
        self._head = 0  # entries of the first batch already taken
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def note(self, key: bytes, value: bytes, noted: float) -> None:
        batches = self._batches
        if batches and batches[-1][0] == noted:
            last = batches[-1]
        else:
            last = (noted, [], [])
            batches.append(last)
        last[1].append(key)
        last[2].append(value)
        self._count += 1

    def note_first(self, keys: list[bytes], values: list[bytes]) -> None:
        """Cases that need no grace (a sweep found them): in front of the others."""
        if keys:
            if self._head:  # the first batch's taken entries go before it gets a predecessor
                noted, batch_keys, batch_values = self._batches.popleft()
                self._batches.appendleft(
                    (noted, batch_keys[self._head :], batch_values[self._head :])
                )
                self._head = 0
            self._batches.appendleft((0.0, keys, values))
            self._count += len(keys)

    def ready(self, noted_before: float, enough: int) -> int:
        """How many were noted no later than `noted_before` (counting stops at `enough`)."""
        n, head = 0, self._head
        for noted, keys, _ in self._batches:
            if noted > noted_before or n >= enough:
                break
            n += len(keys) - head
            head = 0
        return min(n, enough)

    def take(self, noted_before: float) -> tuple[bytes, bytes] | None:
        """The oldest entry (key, value) if it was noted no later than `noted_before`."""
        batches = self._batches
        if not batches or batches[0][0] > noted_before:
            return None
        _, keys, values = batches[0]
        i = self._head
        entry = keys[i], values[i]
        if i + 1 == len(keys):
            batches.popleft()
            self._head = 0
        else:
            self._head = i + 1
        self._count -= 1
        return entry

    def entries(self) -> list[tuple[float, bytes, bytes]]:
        """Every entry, oldest first (tests)."""
        out = []
        head = self._head
        for noted, keys, values in self._batches:
            out.extend((noted, k, v) for k, v in zip(keys[head:], values[head:], strict=True))
            head = 0
        return out


class PartitionRetirement:
    """What one `cases` partition has retired: the aggregate and the retired keys."""

    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self.aggregate = ChainTotals(chain)  # incl. retired_case_events
        self.retired_cases = 0
        # Per input topic (case topic, one-hop partner topics; all with this partition number):
        # the offset after the last late event counted.
        self.late_positions: dict[str, int] = {}
        self.keys = RetiredKeys()
        # Cases an event closed (noted at time.monotonic(); 0.0: no grace), checked again when
        # planning. Not a dict: planning takes the oldest from the front, and a dict's first item
        # is found by scanning past every slot deleted before it until the dict is resized
        # (quadratic: at national scale that scan took 58% of a loading worker's CPU).
        self.candidates = Candidates()
        self.sweep_due = False  # restored: every case is looked at once, between batches

    @classmethod
    def restored(cls, chain: Chain, aggregate: bytes | None) -> PartitionRetirement:
        retirement = cls(chain)
        if aggregate is not None:
            totals, retired, late_positions = decode_aggregate(chain, aggregate)
            retirement.aggregate = totals
            retirement.retired_cases = retired
            retirement.late_positions = late_positions
        return retirement

    def is_retired(self, key: bytes) -> bool:
        return len(self.keys) > 0 and key_digest(key) in self.keys

    def count_late(self, topic: str, position: int) -> bool:
        """An event at offset `position - 1` of `topic` (this partition) arrived for a retired
        case: True when it is counted now (False: a replay of one already counted)."""
        if position <= self.late_positions.get(topic, 0):
            return False
        self.late_positions[topic] = position
        self.aggregate.retired_case_events += 1
        return True

    def aggregate_value(self) -> bytes:
        return encode_aggregate(self.aggregate, self.retired_cases, self.late_positions)

    def note_closed(self, key: bytes, stored: bytes, now: float) -> None:
        """A case closed by an event just applied, leaving `stored` (`now`: time.monotonic() of
        its batch): planned once RETIRE_GRACE_SECONDS have passed (its partners' other events,
        consumed from other topics, have had time to arrive)."""
        self.candidates.note(key, stored, now)

    def ready(self, grace: float, enough: int) -> int:
        """How many candidates are past the grace (the oldest come first); counting stops at
        `enough`."""
        return self.candidates.ready(time.monotonic() - grace, enough)

    def plan(
        self, table: dict[bytes, bytes], cutoff: float, limit: int, grace: float = 0.0
    ) -> RetirementPlan | None:
        """Up to `limit` candidates noted at least `grace` seconds ago that are retirable now,
        and the aggregate with them."""
        keys = []
        walked = []
        chain = self.chain
        candidates = self.candidates
        now = time.monotonic()
        noted_before = now - grace
        planned: set[bytes] = set()
        while len(keys) < limit:
            entry = candidates.take(noted_before)
            if entry is None:
                break
            key, noted_value = entry
            stored = table.get(key)
            if stored is None or key in planned:  # retired already, or noted twice
                continue
            if stored is not noted_value and stored != noted_value:
                candidates.note(key, stored, now)  # changed since: its grace starts again
                continue
            case = _retirable_walk(chain, stored, cutoff)
            if case is not None:
                planned.add(key)
                keys.append(key)
                walked.append(case)
        if not keys:
            return None
        aggregate = ChainTotals(chain)
        aggregate.add_totals(self.aggregate)
        for case in walked:  # each case decoded and walked once, for the check and the fold
            aggregate.add_walked_case(*case)
        retired = self.retired_cases + len(keys)
        value = encode_aggregate(aggregate, retired, self.late_positions)
        return RetirementPlan(keys, aggregate, retired, value)

    def retired(self, plan: RetirementPlan, table: dict[bytes, bytes]) -> None:
        """The plan's records are acknowledged: its cases leave the table."""
        for key in plan.keys:
            table.pop(key, None)
            self.keys.add(key_digest(key))
        self.aggregate = plan.aggregate
        self.aggregate.retired_case_events = max(
            self.aggregate.retired_case_events, plan.aggregate.retired_case_events
        )
        self.retired_cases = plan.retired_cases

    def sweep(self, table: dict[bytes, bytes], cutoff: float) -> int:
        """Make every case of the table whose latest event is before `cutoff` a candidate (the
        closed check is made when planning); returns how many."""
        found = [(key, stored) for key, stored in table.items() if _latest_before(stored, cutoff)]
        # the swept ones first: they need no grace (those noted before stay noted as well)
        self.candidates.note_first([key for key, _ in found], [stored for _, stored in found])
        return len(found)


def _latest_before(stored: bytes, cutoff: float) -> bool:
    if is_marker(stored):
        return False
    state, _ = decode_case_value(stored)
    last = last_event_at(state)
    return last is not None and last < cutoff


# -- the aggregate record ------------------------------------------------------------------------
def encode_aggregate(
    totals: ChainTotals, retired_cases: int, late_positions: dict[str, int]
) -> bytes:
    """Version 1: JSON with every field of ChainTotals, as rows [*key, n]."""

    def rows(counter: Counter) -> list[list]:
        return [[*k, n] for k, n in sorted(counter.items()) if n]

    def indexed(index: dict) -> list[list]:
        out = []
        for key in sorted(index):
            for hour, n in sorted(index[key].items()):
                hour_fields = list(hour) if isinstance(hour, tuple) else [hour]
                out.append([*key, *hour_fields, n])
        return out

    def histograms(index: dict[tuple, LeadTimeHistogram]) -> list[list]:
        return [[*k, h.counts, h.total_seconds] for k, h in sorted(index.items())]

    doc = {
        "v": AGGREGATE_VERSION,
        "retired": retired_cases,
        "late": totals.retired_case_events,
        "late_positions": dict(sorted(late_positions.items())),
        "cases": totals.cases,
        "duplicates": totals.duplicates,
        "corrections": totals.corrections,
        "inflow": rows(totals.inflow),
        "outflow": rows(totals.outflow),
        "closed": rows(totals.closed),
        "inflow_w": rows(totals.inflow_withdrawn),
        "outflow_w": rows(totals.outflow_withdrawn),
        "closed_w": rows(totals.closed_withdrawn),
        "rework": rows(totals.rework),
        "rework_w": rows(totals.rework_withdrawn),
        "open": indexed(totals.open_entries_by_hour),
        "waiting": indexed(totals.waiting_by_hours),
        "lead": histograms(totals.lead_times),
        "lead_w": histograms(totals.lead_times_withdrawn),
    }
    return orjson.dumps(doc)


def decode_aggregate(chain: Chain, raw: bytes) -> tuple[ChainTotals, int, dict[str, int]]:
    """(totals of the retired cases, how many were retired, late_positions)."""
    doc = orjson.loads(raw)
    if doc.get("v") not in READABLE_AGGREGATE_VERSIONS:
        raise FormatVersionError(
            "retired-cases aggregate", doc.get("v"), READABLE_AGGREGATE_VERSIONS
        )
    totals = ChainTotals(chain)
    totals.cases, totals.duplicates = doc["cases"], doc["duplicates"]
    totals.corrections, totals.retired_case_events = doc["corrections"], doc["late"]
    for name, attribute, width in (
        ("inflow", "inflow", 3),
        ("outflow", "outflow", 3),
        ("closed", "closed", 3),
        ("inflow_w", "inflow_withdrawn", 3),
        ("outflow_w", "outflow_withdrawn", 3),
        ("closed_w", "closed_withdrawn", 3),
        ("rework", "rework", 2),
        ("rework_w", "rework_withdrawn", 2),
    ):
        counter = getattr(totals, attribute)
        for row in doc[name]:
            counter[tuple(row[:width])] = row[width]
    for row in doc["open"]:
        totals.open_entries_by_hour.setdefault(tuple(row[:3]), Counter())[row[3]] = row[4]
    for row in doc["waiting"]:
        totals.waiting_by_hours.setdefault(tuple(row[:3]), Counter())[(row[3], row[4])] = row[5]
    for name, index in (("lead", totals.lead_times), ("lead_w", totals.lead_times_withdrawn)):
        for a, b, c, counts, total_seconds in doc[name]:
            index[(a, b, c)] = LeadTimeHistogram(list(counts), total_seconds)
    return totals, doc["retired"], dict(doc["late_positions"])


# -- a partition's totals in a local checkpoint ---------------------------------------------------
# Written with every checkpoint, so it must be cheap: the aggregate's JSON sorts every hour entry
# (seconds per partition with a million open cases); marshal writes the dicts as they are, in C.
# marshal builds only built-in values (no code runs when loading) and is read by the same Python
# that wrote it (the fingerprint holds the interpreter's magic number): a local file's format.
TOTALS_SNAPSHOT_VERSION = 2
_COUNTERS = ("inflow", "outflow", "closed", "inflow_withdrawn", "outflow_withdrawn",
             "closed_withdrawn", "rework", "rework_withdrawn")
_HOUR_INDEXES = ("open_entries_by_hour", "waiting_by_hours")
_HISTOGRAMS = ("lead_times", "lead_times_withdrawn")
_NUMBERS = ("cases", "duplicates", "corrections", "retired_case_events")


def chain_fingerprint(chain: Chain) -> bytes:
    """What a partition's totals depend on besides its records: the chain definition, this
    snapshot format and the interpreter (marshal's format). Totals saved under another
    fingerprint are not used."""
    spec = orjson.dumps(chain.spec.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
    stamp = b"%d\n%s\n" % (TOTALS_SNAPSHOT_VERSION, importlib.util.MAGIC_NUMBER)
    return blake2b(stamp + spec, digest_size=16).hexdigest().encode()


def encode_totals_snapshot(fingerprint: bytes, totals: ChainTotals) -> bytes:
    """A partition's totals, every field."""
    doc = (
        [dict(getattr(totals, name)) for name in _COUNTERS],
        [{k: dict(hours) for k, hours in getattr(totals, name).items()} for name in _HOUR_INDEXES],
        [{k: (h.counts, h.total_seconds) for k, h in getattr(totals, name).items()}
         for name in _HISTOGRAMS],
        [getattr(totals, name) for name in _NUMBERS],
    )
    return fingerprint + b"\n" + marshal.dumps(doc)


def decode_totals_snapshot(chain: Chain, fingerprint: bytes, raw: bytes) -> ChainTotals | None:
    """The totals, or None when they were saved for another chain definition or format."""
    saved, _, body = raw.partition(b"\n")
    if saved != fingerprint:
        return None
    counters, indexes, histograms, numbers = marshal.loads(body)
    totals = ChainTotals(chain)
    for name, values in zip(_COUNTERS, counters, strict=True):
        setattr(totals, name, Counter(values))
    for name, index in zip(_HOUR_INDEXES, indexes, strict=True):
        setattr(totals, name, {k: Counter(hours) for k, hours in index.items()})
    for name, index in zip(_HISTOGRAMS, histograms, strict=True):
        setattr(totals, name, {k: LeadTimeHistogram(list(counts), total)
                               for k, (counts, total) in index.items()})
    for name, value in zip(_NUMBERS, numbers, strict=True):
        setattr(totals, name, value)
    return totals


# -- writing retirements (the worker's side) ----------------------------------------------------
RETIRE_BATCH = 5_000  # cases per retirement record batch (~70 bytes each: well under 1 MiB)
RETIRE_EVERY_SECONDS = 5.0  # candidates fewer than RETIRE_BATCH wait at most this long
RETIRE_GRACE_SECONDS = 60.0  # a case closed by an event is retired no sooner (see note_closed)
# How often the candidates are counted (`ready` walks up to RETIRE_BATCH of them per partition):
# not after every batch, since a case waits the grace anyway.
RETIRE_CHECK_SECONDS = 1.0
SWEEP_SECONDS = 3_600.0  # every case of an owned partition is checked again this often


class RetirementWriter:
    """Retires a worker's retirable cases between its batches (streams/worker.py calls it under
    its lock): drains the batches in flight, then writes each partition's plan as one record
    batch (one transaction in exactly-once mode) and, once acknowledged, drops the cases."""

    def __init__(self, worker: Any, retention_days: float | None) -> None:
        self.worker = worker
        self.retention = None if retention_days is None else retention_days * SECONDS_PER_DAY
        self._last_retirement = time.monotonic()
        self._last_sweep = time.monotonic()
        self._last_check = 0.0

    def cutoff(self) -> float:
        assert self.retention is not None
        reference = self.worker.settings.age_reference_timestamp(time.time())
        return reference - self.retention

    def restored(self, partition: int) -> None:
        """A restored partition: every case of it becomes a candidate if its latest event is old,
        at the next `retire_due` (a sweep decodes every case: about a second per 170,000, which
        the restore need not wait for)."""
        retired = self.worker.tables.retired.get(partition)
        if self.retention is None or retired is None:
            return
        retired.sweep_due = True

    async def retire_due(self) -> bool:
        """Retire what is due; False when a write failed (the pipeline's failure is set)."""
        if self.retention is None:
            return True
        worker = self.worker
        tables = worker.tables
        now = time.monotonic()
        if now - self._last_sweep >= SWEEP_SECONDS:
            self._last_sweep = now
            cutoff = self.cutoff()
            for partition, retired in tables.retired.items():
                retired.sweep(tables.cases[partition], cutoff)
                retired.sweep_due = False
        for partition, retired in sorted(tables.retired.items()):
            if retired.sweep_due:  # one restored partition per turn: the loop keeps going
                retired.sweep_due = False
                retired.sweep(tables.cases[partition], self.cutoff())
                break
        if now - self._last_check < RETIRE_CHECK_SECONDS:
            return True
        self._last_check = now
        waited = now - self._last_retirement >= RETIRE_EVERY_SECONDS
        due = []
        for partition, retired in sorted(tables.retired.items()):
            ready = retired.ready(RETIRE_GRACE_SECONDS, RETIRE_BATCH) if retired.candidates else 0
            if ready >= RETIRE_BATCH or (waited and ready):
                due.append(partition)
        if not due:
            return True
        self._last_retirement = now
        await worker.pipeline.drain()  # the states planned from are the acknowledged ones
        if worker.pipeline.failure is not None:
            return False
        cutoff = self.cutoff()
        retired_now = 0
        for partition in due:
            retired, table = tables.retired[partition], tables.cases[partition]
            while retired.candidates:
                plan = retired.plan(table, cutoff, RETIRE_BATCH, RETIRE_GRACE_SECONDS)
                if plan is None:
                    break
                try:
                    await self._write(partition, plan)
                except (KafkaError, TimeoutError) as exc:
                    log.warning("retiring closed cases of partition %s failed: %r", partition, exc)
                    worker.pipeline.failure = exc
                    return False
                retired.retired(plan, table)
                retired_now += len(plan.keys)
        if retired_now:
            log.info("retired %d closed cases (partitions %s)", retired_now, due)
        return True

    async def _write(self, partition: int, plan: RetirementPlan) -> None:
        worker = self.worker
        producer = worker._producer
        topic = worker.changelogs.cases
        # A marker carries this owner's position (its ownership epoch, streams/changelog.py): at
        # least that of the state it replaces, so a zombie's late write of that state loses to it.
        headers = source_header(worker.case_position[partition])
        batch = producer.create_batch()
        records = [(key, RETIRED_MARKER) for key in plan.keys] + [(AGGREGATE_KEY, plan.value)]
        for key, value in records:
            if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                raise ValueError("retirement records exceed one record batch")
        count = batch.record_count()
        timeout = worker.settings.processing_timeout_seconds
        if worker.exactly_once:
            await producer.begin_transaction()
        try:
            future = await producer.send_batch(batch, topic, partition=partition)
            metadata = await asyncio.wait_for(future, timeout)
            if worker.exactly_once:
                await asyncio.wait_for(producer.commit_transaction(), timeout)
        except BaseException:
            if worker.exactly_once:
                with contextlib.suppress(KafkaError, TimeoutError):
                    await worker._settle_transaction()
            raise
        worker._changelog_written(topic, partition, metadata.offset + count - 1)
        # The batches were drained before: nothing else of this partition is in flight.
        end = worker.changelog_end[TopicPartition(topic, partition)]
        worker.acked_changelog_end[partition] = end
        worker.tables.note_written(partition, dict(records))
