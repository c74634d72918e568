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
    records = {
        m: [r.event_id, r.occurred_at, r.case_type, r.district, r.outcome, r.revision, r.retracted]
        for m, r in state.records.items()
    }
    held = {r.event_id for r in state.records.values()}
    doc: dict[str, object] = {"r": records}
    extra = state.seen_event_ids - held
    if extra:
        doc["x"] = sorted(extra)
    if state.duplicates:
        doc["d"] = state.duplicates
    # orjson returns bytes that keep its ~4 KiB output buffer allocated (tracemalloc: 4,089 B for a
    # 95-byte state); the table holds one value per case for as long as the case exists, so keep
    # an exact-size copy (bench/RESULTS.md, memory: ~4.7 KB -> a few hundred bytes per open case).
    return bytes(memoryview(orjson.dumps(doc)))


def decode_state(raw: bytes) -> CaseState:
    doc = orjson.loads(raw)
    records = {m: MilestoneRecord(*fields) for m, fields in doc["r"].items()}
    seen = frozenset(r.event_id for r in records.values()) | frozenset(doc.get("x", ()))
    return CaseState(MappingProxyType(records), seen, doc.get("d", 0))
