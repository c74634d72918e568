"""Versioned bytes for what the worker keeps in Kafka: case state (the `cases` changelog), with the
facts the case had withdrawn.

    raw = encode_case_value(state, withdrawn)        # version 4
    state, withdrawn = decode_case_value(raw)         # reads versions 1 to 4; refuses newer ones

Version 4 is binary: one byte, the format version (4), then a MessagePack array
[records, superseded event ids, duplicates, withdrawn], where records maps each occurrence key to
[event_id, t, case_type, district, outcome, revision, retracted] (times as float64), and withdrawn
holds the facts and rework items the case had withdrawn (as in version 3). msgspec decodes the
records into `MilestoneRecord` tuples in C, with the field types this module names
(`RECORD_FIELD_TYPES`), whichever build of the domain core runs. Names (occurrence keys, case
type, district) are written out, not indexed into the chain's lists: a value means the same under
any chain configuration, and a layout that stored case type and district once per case, times as
integers and milestones by index was 30-60% smaller but slower to read and write in Python
(bench/codec_micro.py, bench/RESULTS.md).

Versions 1 to 3 are JSON objects (their first byte is "{"), still read: version 3 is
{"v": 3, "r": {milestone: [event_id, t, case_type, district, outcome, revision, retracted]},
"x": [superseded event ids], "d": duplicates, "w": [withdrawn tuples]}. Record event ids are not
repeated in "x": together they are the ids already applied. "w" holds the facts the case had
withdrawn and, since version 3, the rework items it had withdrawn ([kind, milestone or stage, k,
"rework"], domain/flow.py). Version 2 is the same with withdrawn facts only (read as a case that
never withdrew rework); version 1 (no "v") is the same without "w". A version-2 worker would read
a version-3 value but drop its withdrawn rework, and a later upgrade would then see the rework
counters fall: hence a new version, which such a worker refuses. A record of a version this worker
does not know is refused with a FormatVersionError, never half-read: a newer worker wrote it, and
only a newer worker may read it. (Workers before version 4 fail on a version-4 value with a JSON
error rather than a FormatVersionError: they expect JSON.)
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from itertools import repeat
from operator import itemgetter
from types import MappingProxyType
from typing import Any, get_type_hints

import msgspec
import orjson

from ketenmonitor.domain.case import CaseState, MilestoneRecord

CASE_VALUE_VERSION = 4
READABLE_CASE_VALUE_VERSIONS = (1, 2, 3, CASE_VALUE_VERSION)
_JSON_START = ord("{")  # the first byte of versions 1 to 3


class FormatVersionError(ValueError):
    """A stored record was written in a format version this worker cannot read."""

    def __init__(self, what: str, version: object, known: Sequence[int]) -> None:
        super().__init__(
            f"{what} record of format version {version!r}; this worker reads versions "
            f"{', '.join(map(str, known))}: run a worker version that wrote it"
        )


_event_id = itemgetter(0)  # of a record, or of its field list
_new_tuple = tuple.__new__
_NONE: tuple[tuple, ...] = ()

# -- version 4 ----------------------------------------------------------------------------------
_V4_HEADER = bytes((CASE_VALUE_VERSION,))
# The types of a stored record's fields, named here rather than read from MilestoneRecord's
# annotations (which msgspec would read): the annotations are what the running build made of the
# class, and a compiled core (mypyc, ketenmonitor/core_build.py) turns `outcome: str | None` into
# `type`, which every stored outcome fails. The wire form is these fields, in this order.
RECORD_FIELD_TYPES: dict[str, Any] = {
    "event_id": str,
    "occurred_at": float,
    "case_type": str,
    "district": str,
    "outcome": str | None,
    "revision": int,
    "retracted": bool,
}
if tuple(RECORD_FIELD_TYPES) != MilestoneRecord._fields:
    raise ImportError(
        f"streams/codec.py names the fields {tuple(RECORD_FIELD_TYPES)} of a stored record, "
        f"MilestoneRecord has {MilestoneRecord._fields}: a change of the record is a new version"
    )
_RecordFields = tuple[tuple(RECORD_FIELD_TYPES.values())]  # tuple[str, float, ..., bool]
# Withdrawn items are flat tuples of str, float and int (facts, rework items): decoded as tuples.
_Withdrawn = tuple[tuple[Any, ...], ...]
_v4_encode = msgspec.msgpack.Encoder().encode
# Where MilestoneRecord's annotations are these types (the interpreted build), msgspec decodes the
# records straight into MilestoneRecord tuples in C; elsewhere it decodes them as tuples of these
# types, which become MilestoneRecords after (~0.4 us a record more). The same values either way
# (tests/unit/test_case_value_codec.py).
RECORDS_DECODED_AS_DECLARED = get_type_hints(MilestoneRecord) == RECORD_FIELD_TYPES
_v4_decode_declared = msgspec.msgpack.Decoder(
    tuple[dict[str, MilestoneRecord], list[str], int, _Withdrawn]
).decode if RECORDS_DECODED_AS_DECLARED else None
_v4_decode_fields = msgspec.msgpack.Decoder(
    tuple[dict[str, _RecordFields], list[str], int, _Withdrawn]
).decode


def encode_case_value(state: CaseState, withdrawn: Sequence[tuple] = ()) -> bytes:
    records = state.records
    seen = state.seen_event_ids
    extra: Sequence[str] = ()
    if len(seen) != len(records):  # record ids are in `seen`: equal sizes leave nothing extra
        extra = sorted(seen.difference(map(_event_id, records.values())))
    # A MilestoneRecord (a named tuple) is written as an array of its fields, in C. The header
    # concatenation returns an exact-size bytes object (the table holds it as long as the case).
    return _V4_HEADER + _v4_encode((records.copy(), extra, state.duplicates, withdrawn))


def decode_case_value(raw: bytes) -> tuple[CaseState, tuple[tuple, ...]]:
    """(state, withdrawn facts and rework items) of a stored case value, versions 1 to 4."""
    if not raw:
        raise ValueError("an empty case value")
    first = raw[0]
    if first == CASE_VALUE_VERSION:
        if _v4_decode_declared is not None:
            records, extra, duplicates, withdrawn = _v4_decode_declared(memoryview(raw)[1:])
        else:
            records, extra, duplicates, withdrawn = _v4_decode_fields(memoryview(raw)[1:])
            # Each field tuple made a MilestoneRecord, in C; the two iterate the same dict.
            records = dict(
                zip(records, map(_new_tuple, repeat(MilestoneRecord), records.values()),
                    strict=False)
            )
        seen = frozenset(map(_event_id, records.values()))
        if extra:
            seen = seen.union(extra)
        return _new_tuple(CaseState, (MappingProxyType(records), seen, duplicates)), withdrawn
    if first == _JSON_START:
        return _decode_json_case_value(raw)
    raise FormatVersionError("case state", first, READABLE_CASE_VALUE_VERSIONS)


# -- versions 1 to 3 (JSON) ---------------------------------------------------------------------
_JSON_VERSIONS = (1, 2, 3)
_COMPLETE = {len(MilestoneRecord._fields)}  # the field count of a complete record
_record_from_fields = partial(_new_tuple, MilestoneRecord)  # a complete field list, as is


def _decode_json_case_value(raw: bytes) -> tuple[CaseState, tuple[tuple, ...]]:
    doc = orjson.loads(raw)
    version = doc.get("v", 1)
    if version not in _JSON_VERSIONS:
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


def encode_case_value_v3(state: CaseState, withdrawn: Sequence[tuple] = ()) -> bytes:
    """A case value as version 3 wrote it (JSON): what workers before version 4 stored. Kept as
    the reference for tests that read old values and for benchmarks that compare the formats;
    the worker writes `encode_case_value`."""
    records = state.records
    doc: dict[str, object] = {"v": 3, "r": records.copy()}
    seen = state.seen_event_ids
    if len(seen) != len(records):
        extra = seen.difference(map(_event_id, records.values()))
        if extra:
            doc["x"] = sorted(extra)
    if state.duplicates:
        doc["d"] = state.duplicates
    if withdrawn:
        doc["w"] = withdrawn
    # orjson serialises a named tuple through `default` (list); its bytes keep a ~4 KiB buffer,
    # hence the exact-size copy.
    return bytes(memoryview(orjson.dumps(doc, default=list)))


def encode_state(state: CaseState) -> bytes:
    """A case state without withdrawn facts (tests, benchmarks)."""
    return encode_case_value(state)


def decode_state(raw: bytes) -> CaseState:
    return decode_case_value(raw)[0]
