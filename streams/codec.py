"""Compact bytes for case state, as kept in the changelogged case table.

A case state is encoded as JSON: {"r": {milestone: [event_id, t, case_type, district, outcome,
revision, retracted]}, "x": [superseded event ids], "d": duplicates}. Record event ids are not
repeated in "x": together they are the ids already applied.
"""

from __future__ import annotations

from types import MappingProxyType

import orjson

from ketenmonitor.domain.case import CaseState, MilestoneRecord


def encode_state(state: CaseState) -> bytes:
    records = state.records
    # A MilestoneRecord is a named tuple in exactly the field order above (orjson does not
    # serialise tuple subclasses, so each becomes a list).
    doc: dict[str, object] = {"r": {m: list(r) for m, r in records.items()}}
    if len(state.seen_event_ids) != len(records):
        extra = state.seen_event_ids.difference([r.event_id for r in records.values()])
        if extra:
            doc["x"] = sorted(extra)
    if state.duplicates:
        doc["d"] = state.duplicates
    # orjson returns bytes that keep its ~4 KiB output buffer allocated (tracemalloc: 4,089 B for a
    # 95-byte state); the table holds one value per case for as long as the case exists, so keep
    # an exact-size copy (bench/RESULTS.md, memory: ~4.7 KB -> a few hundred bytes per open case).
    return bytes(memoryview(orjson.dumps(doc)))


_RECORD_FIELDS = len(MilestoneRecord._fields)
_new_tuple = tuple.__new__


def decode_state(raw: bytes) -> CaseState:
    doc = orjson.loads(raw)
    records = {
        # A complete field list becomes the record as is; a shorter one takes the defaults.
        m: _new_tuple(MilestoneRecord, f) if len(f) == _RECORD_FIELDS else MilestoneRecord(*f)
        for m, f in doc["r"].items()
    }
    seen = frozenset([f[0] for f in records.values()])
    extra = doc.get("x")
    if extra:
        seen = seen.union(extra)
    return CaseState(MappingProxyType(records), seen, doc.get("d", 0))
