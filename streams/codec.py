"""Compact bytes for case state, as kept in the changelogged case table.

A case state is encoded as JSON: {"r": {milestone: [event_id, t, case_type, district, outcome,
revision, retracted]}, "x": [superseded event ids], "d": duplicates}. Record event ids are not
repeated in "x": together they are the ids already applied.
"""

from __future__ import annotations

from functools import partial
from operator import itemgetter
from types import MappingProxyType

import orjson

from ketenmonitor.domain.case import CaseState, MilestoneRecord


def encode_state(state: CaseState) -> bytes:
    records = state.records
    doc: dict[str, object] = {"r": records.copy()}
    seen = state.seen_event_ids
    if len(seen) != len(records):  # record ids are in `seen`: equal sizes leave nothing extra
        extra = seen.difference(map(_event_id, records.values()))
        if extra:
            doc["x"] = sorted(extra)
    if state.duplicates:
        doc["d"] = state.duplicates
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


def decode_state(raw: bytes) -> CaseState:
    doc = orjson.loads(raw)
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
    return _new_tuple(CaseState, (MappingProxyType(records), seen, doc.get("d", 0)))
