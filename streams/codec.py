"""Versioned bytes for what the worker keeps in Kafka: case state (the `cases` changelog), with the
facts the case had withdrawn.

    raw = encode_case_value(state, withdrawn)        # version 3
    state, withdrawn = decode_case_value(raw)         # reads versions 1 to 3; refuses newer ones

Version 3 is JSON: {"v": 3, "r": {milestone: [event_id, t, case_type, district, outcome, revision,
retracted]}, "x": [superseded event ids], "d": duplicates, "w": [withdrawn tuples]}. Record
event ids are not repeated in "x": together they are the ids already applied. "w" holds the facts
the case had withdrawn and, since version 3, the rework items it had withdrawn ([kind, milestone or
stage, k, "rework"], domain/flow.py). Version 2 is the same with withdrawn facts only (read as a
case that never withdrew rework); version 1 (no "v") is the same without "w". A version-2 worker
would read a version-3 value but drop its withdrawn rework, and a later upgrade would then see the
rework counters fall: hence a new version, which such a worker refuses. A record of a version this
worker does not know is refused with a FormatVersionError, never half-read: a newer worker wrote
it, and only a newer worker may read it.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from operator import itemgetter
from types import MappingProxyType

import orjson

from ketenmonitor.domain.case import CaseState, MilestoneRecord

CASE_VALUE_VERSION = 3
READABLE_CASE_VALUE_VERSIONS = (1, 2, CASE_VALUE_VERSION)


class FormatVersionError(ValueError):
    """A stored record was written in a format version this worker cannot read."""

    def __init__(self, what: str, version: object, known: Sequence[int]) -> None:
        super().__init__(
            f"{what} record of format version {version!r}; this worker reads versions "
            f"{', '.join(map(str, known))}: run a worker version that wrote it"
        )


def encode_case_value(state: CaseState, withdrawn: Sequence[tuple] = ()) -> bytes:
    records = state.records
    doc: dict[str, object] = {"v": CASE_VALUE_VERSION, "r": records.copy()}
    seen = state.seen_event_ids
    if len(seen) != len(records):  # record ids are in `seen`: equal sizes leave nothing extra
        extra = seen.difference(map(_event_id, records.values()))
        if extra:
            doc["x"] = sorted(extra)
    if state.duplicates:
        doc["d"] = state.duplicates
    if withdrawn:
        doc["w"] = withdrawn
    # orjson returns bytes that keep its ~4 KiB output buffer allocated (tracemalloc: 4,089 B for a
    # 95-byte state); the table holds one value per case for as long as the case exists, so keep
    # an exact-size copy (bench/RESULTS.md, memory: ~4.7 KB -> a few hundred bytes per open case).
    # A MilestoneRecord is a named tuple in exactly the field order above; orjson does not
    # serialise tuple subclasses and hands each record to `default`, in C (no Python frame). The
    # values of a record are str, float, int, bool or None: nothing else reaches `default`.
    return bytes(memoryview(orjson.dumps(doc, default=list)))


_COMPLETE = {len(MilestoneRecord._fields)}  # the field count of a complete record
_event_id = itemgetter(0)  # of a record, or of its field list
_new_tuple = tuple.__new__
_record_from_fields = partial(_new_tuple, MilestoneRecord)  # a complete field list, as is
_NONE: tuple[tuple, ...] = ()


def decode_case_value(raw: bytes) -> tuple[CaseState, tuple[tuple, ...]]:
    """(state, withdrawn facts and rework items) of a stored case value, versions 1 to 3."""
    doc = orjson.loads(raw)
    version = doc.get("v", 1)
    if version != CASE_VALUE_VERSION and version not in READABLE_CASE_VALUE_VERSIONS:
        raise FormatVersionError("case state", version, READABLE_CASE_VALUE_VERSIONS)
    fields = doc["r"]
    if set(map(len, fields.values())) <= _COMPLETE:
        # Built in C (zip/map, no comprehension frame); the two iterate the same dict.
        records = dict(zip(fields, map(_record_from_fields, fields.values()), strict=False))
    else:  # a shorter field list takes the record's defaults
        records = {m: MilestoneRecord(*f) for m, f in fields.items()}
    seen = frozenset(map(_event_id, fields.values()))
    extra = doc.get("x")
    if extra:
        seen = seen.union(extra)
    withdrawn = doc.get("w")
    state = _new_tuple(CaseState, (MappingProxyType(records), seen, doc.get("d", 0)))
    return state, tuple(map(tuple, withdrawn)) if withdrawn else _NONE


def encode_state(state: CaseState) -> bytes:
    """A case state without withdrawn facts (tests, benchmarks)."""
    return encode_case_value(state)


def decode_state(raw: bytes) -> CaseState:
    return decode_case_value(raw)[0]
