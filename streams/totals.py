"""The chain's totals per partition, published to a compacted topic and read back by every worker.

    publisher: owner of partition p, after its batches are acknowledged
        producer.send(totals_topic, key=CASES_KEY, value=encode_case_totals(totals, position, now),
                      partition=p)
        producer.send(totals_topic, key=ingest_key(partner_topic), value=stats.encode(),
                      partition=p)
    view: every worker, over all partitions of the topic
        view.apply(partition, key, value)     # keeps the record of the highest position per key
        view.case_records(), view.ingest_records()

Why a topic: what /metrics says must only go up as Prometheus sees it (a fall is read as a counter
reset and a whole cumulative value is counted again). Sums over the partitions a worker happens to
own fall whenever a partition moves; sums over the latest record of EVERY partition do not, since a
partition's record only grows, whoever owns the partition. So every worker exports the whole
chain; Prometheus takes a rate per worker and the max across workers (docs/metrics.md).

A record carries its `position`: for case totals the end offset of the partition's `cases`
changelog that it reflects, for ingest counts the next partner offset to count. Both grow across
owners, so a record from a worker that lost the partition (a zombie, or a late publication) never
replaces a newer one.

A view decodes a case-totals record only when it is read (by /metrics' collection, at most once
per record): `apply` reads just the version and position at the record's start
(`case_totals_position`). Every worker takes every partition's publication, four times a second
by default, and decoding a record with the whole chain's labels took ~2 ms here (a catch-up at
24 partitions: a fifth of each worker's time); a Prometheus scrape every 15 s decodes the
partitions that changed since the last one.

Records are versioned JSON ({"v": 3, ...}); a newer version is refused (FormatVersionError).
Version 2 added dormant cases ("dormant", at the record's reference time) and rework counts
("rework": net and withdrawn); a version-1 record is read with none of either (its owner publishes
again within REPUBLISH_SECONDS of being upgraded). Version 3 has the same fields, but the age bands
("age") and the oldest entry hour ("oldest") describe the active backlog only, like the backlog
gauge: a case dormant at the record's reference time is in neither. A version-1 or -2 record is read
as it is (its ages still count dormant cases) until its owner, upgraded, publishes again.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import orjson
from ketenmonitor.streams.codec import FormatVersionError
from ketenmonitor.streams.ingest import IngestStats

from ketenmonitor.domain.totals import ChainTotals

CASE_TOTALS_VERSION = 3
READABLE_CASE_TOTALS_VERSIONS = (1, 2, CASE_TOTALS_VERSION)
CASES_KEY = b"cases"
INGEST_KEY_PREFIX = b"ingest:"


def ingest_key(partner_topic: str) -> bytes:
    return INGEST_KEY_PREFIX + partner_topic.encode()


@dataclass(frozen=True)
class CaseTotalsRecord:
    """One partition's case totals as published: nets with monotonic withdrawn counts."""

    position: int
    cases: int = 0
    duplicates: int = 0
    corrections: int = 0
    # Events that arrived for a retired case (streams/retirement.py); absent before: 0.
    retired_case_events: int = 0
    # (stage, case_type, district) -> (net, withdrawn)
    inflow: dict[tuple[str, str, str], tuple[int, int]] = field(default_factory=dict)
    outflow: dict[tuple[str, str, str], tuple[int, int]] = field(default_factory=dict)
    # (outcome, case_type, district) -> (net, withdrawn)
    closed: dict[tuple[str, str, str], tuple[int, int]] = field(default_factory=dict)
    # (segment, case_type, district) -> (net counts per bucket, net sum, withdrawn counts, sum)
    lead: dict[tuple[str, str, str], tuple[list[int], float, list[int], float]] = field(
        default_factory=dict
    )
    # (stage, case_type, district, age band) -> active (not dormant) cases, at `reference_time`
    backlog_by_age: dict[tuple[str, str, str, str], int] = field(default_factory=dict)
    # stage -> hour its oldest active case entered it, at `reference_time`
    oldest_entry: dict[str, int] = field(default_factory=dict)
    reference_time: float = 0.0
    # (stage, case_type, district) -> open cases that are dormant at `reference_time`
    dormant: dict[tuple[str, str, str], int] = field(default_factory=dict)
    # (kind, milestone or stage) -> (net, withdrawn) rework (domain/flow.py)
    rework: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)


def encode_case_totals(totals: ChainTotals, position: int, reference_time: float) -> bytes:
    """A partition's case totals as published. Rows are in no particular order (sorting them
    took half of an encoding with the whole chain's labels); the reader keys them."""

    def pairs(net: dict, withdrawn: dict) -> list[list]:
        return [[*k, net.get(k, 0), withdrawn.get(k, 0)] for k in net.keys() | withdrawn]

    width = len(totals.chain.lead_time_buckets_seconds) + 1
    empty = [0] * width
    lead = []
    for key in totals.lead_times.keys() | totals.lead_times_withdrawn.keys():
        net = totals.lead_times.get(key)
        gone = totals.lead_times_withdrawn.get(key)
        lead.append(
            [
                *key,
                net.counts if net else empty,
                net.total_seconds if net else 0.0,
                gone.counts if gone else empty,
                gone.total_seconds if gone else 0.0,
            ]
        )
    by_age, oldest, dormant = totals.backlog_readings(reference_time)
    doc = {
        "v": CASE_TOTALS_VERSION,
        "position": position,
        "cases": totals.cases,
        "duplicates": totals.duplicates,
        "corrections": totals.corrections,
        "retired_case_events": totals.retired_case_events,
        "inflow": pairs(totals.inflow, totals.inflow_withdrawn),
        "outflow": pairs(totals.outflow, totals.outflow_withdrawn),
        "closed": pairs(totals.closed, totals.closed_withdrawn),
        "lead": lead,
        "age": [[*k, n] for k, n in by_age.items() if n],
        "oldest": oldest,
        "reference_time": reference_time,
        "dormant": [[*k, n] for k, n in dormant.items() if n],
        "rework": [
            [*k, totals.rework.get(k, 0), totals.rework_withdrawn.get(k, 0)]
            for k in totals.rework.keys() | totals.rework_withdrawn.keys()
        ],
    }
    return orjson.dumps(doc)


# What encode_case_totals writes first (orjson keeps the dict's order): the version, the position.
_HEAD = re.compile(rb'\{"v":(\d+),"position":(-?\d+)[,}]')


def case_totals_position(raw: bytes) -> int:
    """The position of an encoded case-totals record, read from its start; a record of a version
    this code cannot read raises FormatVersionError, as decoding it would. A record written
    otherwise (other key order, spaces) is decoded whole."""
    head = _HEAD.match(raw)
    if head is None:
        return decode_case_totals(raw).position
    version = int(head.group(1))
    if version not in READABLE_CASE_TOTALS_VERSIONS:
        raise FormatVersionError("case totals", version, READABLE_CASE_TOTALS_VERSIONS)
    return int(head.group(2))


class PublishedCaseTotals:
    """A case-totals record as taken by a view: its position now, its fields when first read."""

    __slots__ = ("_record", "position", "raw")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.position = case_totals_position(raw)
        self._record: CaseTotalsRecord | None = None

    def record(self) -> CaseTotalsRecord:
        # Two readers at once may both decode: the same record.
        if self._record is None:
            self._record = decode_case_totals(self.raw)
        return self._record


def decode_case_totals(raw: bytes) -> CaseTotalsRecord:
    doc = orjson.loads(raw)
    if doc.get("v") not in READABLE_CASE_TOTALS_VERSIONS:
        raise FormatVersionError("case totals", doc.get("v"), READABLE_CASE_TOTALS_VERSIONS)

    def pairs(rows: list[list]) -> dict[tuple[str, str, str], tuple[int, int]]:
        return {(a, b, c): (net, gone) for a, b, c, net, gone in rows}

    return CaseTotalsRecord(
        position=doc["position"],
        cases=doc["cases"],
        duplicates=doc["duplicates"],
        corrections=doc["corrections"],
        retired_case_events=doc.get("retired_case_events", 0),
        inflow=pairs(doc["inflow"]),
        outflow=pairs(doc["outflow"]),
        closed=pairs(doc["closed"]),
        lead={(a, b, c): (n, ns, w, ws) for a, b, c, n, ns, w, ws in doc["lead"]},
        backlog_by_age={(a, b, c, d): n for a, b, c, d, n in doc["age"]},
        oldest_entry=doc["oldest"],
        reference_time=doc["reference_time"],
        dormant={(a, b, c): n for a, b, c, n in doc.get("dormant", ())},  # version 1: none
        rework={(a, b): (net, gone) for a, b, net, gone in doc.get("rework", ())},
    )


class TotalsSource(Protocol):
    """What the chain collector reads: the totals of every partition."""

    def case_records(self) -> list[CaseTotalsRecord]: ...

    def ingest_records(self) -> Iterator[tuple[str, IngestStats]]:
        """(topic, counts) of every partner-topic partition."""
        ...

    @property
    def partitions(self) -> int: ...


class TotalsView:
    """The newest published totals of every partition, as one worker has read them."""

    def __init__(self) -> None:
        self._cases: dict[int, PublishedCaseTotals] = {}
        self._ingest: dict[tuple[int, str], IngestStats] = {}
        # Raised after every record taken (never before it is visible): what /metrics caches its
        # chain series under (streams/web.py CachedPart).
        self.version = 0

    def apply(self, partition: int, key: bytes | None, value: bytes | None) -> bool:
        """Take one record of the totals topic; False when an older position was ignored."""
        if key is None or value is None:
            return False
        if key == CASES_KEY:
            record = PublishedCaseTotals(value)
            current = self._cases.get(partition)
            if current is not None and record.position < current.position:
                return False
            self._cases[partition] = record
            self.version += 1
            return True
        if key.startswith(INGEST_KEY_PREFIX):
            topic = key[len(INGEST_KEY_PREFIX) :].decode()
            stats = IngestStats.decode(value)
            held = self._ingest.get((partition, topic))
            if held is not None and stats.next_offset < held.next_offset:
                return False
            self._ingest[(partition, topic)] = stats
            self.version += 1
            return True
        return False

    def case_records(self) -> list[CaseTotalsRecord]:
        # list(dict.values()) runs in C: a scrape thread sees a consistent set of records.
        return [published.record() for published in list(self._cases.values())]

    def ingest_records(self) -> Iterator[tuple[str, IngestStats]]:
        """(partner topic, counts) of every partner-topic partition."""
        for (_, topic), stats in list(self._ingest.items()):
            yield topic, stats

    @property
    def partitions(self) -> int:
        return len(self._cases)


class LocalTotals:
    """Totals held in this process, read like a TotalsView (the benchmark's faust baseline and
    the core loop, which have no totals topic): encoded and decoded on each read, exactly as
    a published record would be."""

    def __init__(
        self,
        case_totals: Callable[[], Iterable[ChainTotals]],
        ingest: Callable[[], Iterable[tuple[str, IngestStats]]],
        reference_time: Callable[[], float],
    ) -> None:
        self._case_totals = case_totals
        self._ingest = ingest
        self._reference_time = reference_time

    def case_records(self) -> list[CaseTotalsRecord]:
        reference = self._reference_time()
        return [
            decode_case_totals(encode_case_totals(t, 0, reference)) for t in self._case_totals()
        ]

    def ingest_records(self) -> Iterator[tuple[str, IngestStats]]:
        yield from self._ingest()

    @property
    def partitions(self) -> int:
        return len(list(self._case_totals()))
