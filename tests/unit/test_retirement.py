"""Retiring closed cases (streams/retirement.py): the totals stay exact, the aggregate is durable
and versioned, retired keys are remembered, and a late event is counted once."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import pytest
from aiokafka import TopicPartition
from core_fixtures import CHAIN, DAY
from ketenmonitor.streams.codec import FormatVersionError
from ketenmonitor.streams.processing import CaseProcessor, PartitionTotals
from ketenmonitor.streams.retirement import (
    AGGREGATE_KEY,
    RETIRED_MARKER,
    Candidates,
    PartitionRetirement,
    RetiredKeys,
    decode_aggregate,
    encode_aggregate,
    key_digest,
    retirable,
)
from ketenmonitor.streams.tables import Changelogs, OwnedTables
from ketenmonitor.streams.totals import encode_case_totals
from test_owned_tables import FakeConsumer

from ketenmonitor.simulator import load_scenario, occurrence_of, stream_cases

END = 1_700_000_000.0
CUTOFF = END - 365 * DAY  # closed cases whose latest event lies before this are retired


def simulated_table() -> tuple[dict[bytes, bytes], PartitionTotals, CaseProcessor]:
    """Cases over six years (corrections, repeats, loops), applied through the processor."""
    scenario = load_scenario()
    processor, live = CaseProcessor(CHAIN), PartitionTotals(CHAIN)
    table: dict[bytes, bytes] = {}
    n = 0
    for case in stream_cases(scenario, 800, END - 6 * 365 * DAY, END, seed=11):
        key = case.case_key.encode()
        for i, s in enumerate(case.steps):
            n += 1
            occurrence = occurrence_of(case, i)
            payload = orjson.dumps(
                [2, f"e{n}", s.milestone, s.occurred_at, case.case_type, case.district,
                 s.outcome, 0, False, *((occurrence,) if occurrence is not None else ())]
            )
            step = processor.apply(key.decode(), payload, table.get(key))
            table[key] = step.stored
            live.fold(0, [step])
    return table, live, processor


def published(totals) -> dict:
    """The published record's fields, its rows in one order (they are written in none)."""
    doc = orjson.loads(encode_case_totals(totals, 0, END))
    doc.pop("position")
    return {name: sorted(value) if isinstance(value, list) else value
            for name, value in doc.items()}


def test_retired_aggregate_plus_remaining_states_equals_the_totals_of_all_cases() -> None:
    table, live, _ = simulated_table()
    retirement = PartitionRetirement(CHAIN)
    retirement.sweep(table, CUTOFF)
    cases_before = len(table)
    retired_total = 0
    while True:
        plan = retirement.plan(table, CUTOFF, limit=200)
        if plan is None:
            break
        # the aggregate survives its own encoding exactly
        again, retired, _ = decode_aggregate(CHAIN, plan.value)
        assert published(again) == published(plan.aggregate) and retired == plan.retired_cases
        retirement.retired(plan, table)
        retired_total += len(plan.keys)
    assert retired_total > 100  # most cases of six years closed long ago
    assert len(table) == cases_before - retired_total
    assert all(not retirable(CHAIN, v, CUTOFF) for v in table.values())
    # a restore: the aggregate plus the states left, against the totals folded event by event
    restored = PartitionTotals(CHAIN)
    restored.of(0).add_totals(retirement.aggregate)
    restored.add_stored(0, table.values())
    assert published(restored.of(0)) == published(live.of(0))
    assert restored.of(0).cases == cases_before


def test_only_closed_cases_are_retired_and_open_ones_stay_whatever_their_age() -> None:
    table, _, _ = simulated_table()
    retirement = PartitionRetirement(CHAIN)
    retirement.sweep(table, END + DAY)  # every case's latest event is before the cutoff
    while (plan := retirement.plan(table, END + DAY, limit=500)) is not None:
        retirement.retired(plan, table)
    totals = PartitionTotals(CHAIN)
    totals.add_stored(0, table.values())
    assert table and sum(totals.of(0).closed.values()) == 0  # what is left is open


def test_a_restore_takes_markers_and_the_aggregate_out_of_the_table() -> None:
    table, live, _ = simulated_table()
    retirement = PartitionRetirement(CHAIN)
    retirement.sweep(table, CUTOFF)
    log = [(k, v) for k, v in table.items()]  # the changelog: states, then the retirement
    plan = retirement.plan(table, CUTOFF, limit=10_000)
    assert plan is not None
    log += [(k, RETIRED_MARKER) for k in plan.keys] + [(AGGREGATE_KEY, plan.value)]
    changelog = TopicPartition("app-cases-changelog", 0)
    tables = OwnedTables("p.cases", Changelogs(changelog.topic, "x"), CHAIN)
    asyncio.run(tables.restore(FakeConsumer({changelog: log}), {TopicPartition("p.cases", 0)}))
    left, retired = tables.cases[0], tables.retired[0]
    assert AGGREGATE_KEY not in left and len(left) == len(table) - len(plan.keys)
    assert len(retired.keys) == len(plan.keys) == retired.retired_cases
    assert all(retired.is_retired(k) for k in plan.keys)
    assert not any(retired.is_retired(k) for k in left)
    restored = PartitionTotals(CHAIN)
    restored.of(0).add_totals(retired.aggregate)
    restored.add_stored(0, left.values())
    assert published(restored.of(0)) == published(live.of(0))


def test_a_noted_case_retires_once_after_the_grace_since_its_last_change() -> None:
    table, _, _ = simulated_table()
    retirement = PartitionRetirement(CHAIN)
    a, b, c, other = [k for k, v in table.items() if retirable(CHAIN, v, CUTOFF)][:4]
    long_ago, now = time.monotonic() - 120, time.monotonic()
    for key in (a, b, b, c):  # b closed twice
        retirement.note_closed(key, table[key], long_ago)
    retirement.note_closed(other, table[other], now)  # within the grace
    table[a] = table[other]  # a changed after it was noted (still closed)
    table[c] = bytes(bytearray(table[c]))  # an equal value in another object: unchanged
    assert retirement.ready(60, 100) == 4
    plan = retirement.plan(table, CUTOFF, limit=100, grace=60)
    assert plan is not None and plan.keys == [b, c] and plan.retired_cases == 2
    retirement.retired(plan, table)
    # a waits a new grace from its change; `other` its own; nothing else is pending
    assert retirement.ready(60, 100) == 0 and len(retirement.candidates) == 2
    assert [k for _, k, _ in retirement.candidates.entries()] == [other, a]
    assert retirement.plan(table, CUTOFF, limit=100, grace=60) is None
    plan = retirement.plan(table, CUTOFF, limit=100, grace=0)
    assert plan is not None and plan.keys == [other, a]


def test_candidates_are_taken_oldest_first_and_a_sweep_goes_in_front() -> None:
    candidates = Candidates()
    for i in range(5):
        candidates.note(b"k%d" % i, b"v%d" % i, 10.0 + (i >= 3))  # two batches: 10.0 and 11.0
    assert candidates.ready(10.0, 100) == 3 and candidates.ready(11.0, 2) == 2
    assert candidates.take(10.0) == (b"k0", b"v0")
    candidates.note_first([b"s"], [b"sv"])  # a sweep's, with no grace
    assert [k for _, k, _ in candidates.entries()] == [b"s", b"k1", b"k2", b"k3", b"k4"]
    assert candidates.take(0.0) == (b"s", b"sv") and candidates.take(0.0) is None
    assert [candidates.take(11.0) for _ in range(4)][-1] == (b"k4", b"v4")
    assert len(candidates) == 0 and candidates.take(99.0) is None


def test_a_late_event_is_counted_once_even_when_replayed() -> None:
    """Per input topic of the partition: the case topic and a one-hop partner topic have offsets
    of their own, so an event at offset 5 of one is not a replay of offset 12 of the other."""
    retirement = PartitionRetirement(CHAIN)
    assert retirement.count_late("cases", 11) and retirement.count_late("cases", 12)
    assert not retirement.count_late("cases", 11) and not retirement.count_late("cases", 12)
    assert retirement.count_late("events.cjib", 5)  # one hop: another topic's offsets
    assert not retirement.count_late("events.cjib", 5)  # a replay there
    again = PartitionRetirement.restored(CHAIN, retirement.aggregate_value())
    assert again.aggregate.retired_case_events == 3
    assert again.late_positions == {"cases": 12, "events.cjib": 5}
    assert not again.count_late("cases", 12) and again.count_late("cases", 40)
    assert not again.count_late("events.cjib", 4) and again.count_late("events.cjib", 6)


def test_retired_keys_merge_into_the_sorted_array_and_stay_found() -> None:
    keys = RetiredKeys()
    keys.MIN_PENDING = 100  # type: ignore[misc]
    digests = [key_digest(f"case-{i}".encode()) for i in range(5000)]
    keys.update(digests)
    assert len(keys) == 5000 and all(d in keys for d in digests)
    assert key_digest(b"another") not in keys
    assert keys.nbytes() < 5000 * 20  # 8 bytes per merged key, a few recent ones in a set
    # every merge left the array sorted and whole: the digests, sorted, once each
    assert list(RetiredKeys.from_bytes(keys.to_bytes())._sorted) == sorted(set(digests))


def test_retired_keys_in_a_state_directory_are_a_mapped_file_and_not_the_workers_memory(
    tmp_path: Path,
) -> None:
    keys = RetiredKeys(tmp_path)
    keys.MIN_PENDING = 100  # type: ignore[misc]
    digests = [key_digest(f"case-{i}".encode()) for i in range(5000)]
    keys.update(digests[:2500])
    keys.update(digests)  # the first half again: each digest is held once
    assert len(keys) == 5000 and all(d in keys for d in digests)
    assert key_digest(b"another") not in keys
    assert keys.mapped_bytes() >= 8 * 4000  # the merged run is in the mapped file
    # only the recent additions (in a set, 72 bytes each) are the worker's own memory
    assert keys.nbytes() == 72 * (len(keys) - keys.mapped_bytes() // 8)
    assert list(tmp_path.iterdir()) == []  # the file has no name: nothing to clean up
    run = keys.to_bytes()
    assert keys.mapped_bytes() == 8 * 5000 and keys.nbytes() == 0
    again = RetiredKeys.from_bytes(bytes(run), tmp_path)
    in_memory = RetiredKeys.from_bytes(bytes(run))
    assert again.mapped_bytes() == 8 * 5000 and in_memory.mapped_bytes() == 0
    # every merge left the run sorted and whole: the digests, sorted, once each
    assert list(again._sorted) == list(in_memory._sorted) == sorted(set(digests))
    assert RetiredKeys.from_bytes(b"", tmp_path).to_bytes() == b""
    # A checkpoint's view of the run (written in a thread) stays whole when later merges
    # replace the run.
    view = again.to_bytes()
    again.update(key_digest(f"later-{i}".encode()) for i in range(700))
    again.to_bytes()
    assert bytes(view) == bytes(run)


def test_retired_keys_stay_in_memory_when_the_state_directory_cannot_take_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    keys = RetiredKeys(tmp_path / "gone")  # no such directory: no file can be made there
    keys.MIN_PENDING = 100  # type: ignore[misc]
    digests = [key_digest(f"case-{i}".encode()) for i in range(1000)]
    keys.update(digests)
    assert "kept in memory from now on" in caplog.text
    assert keys.directory is None and keys.mapped_bytes() == 0
    assert all(d in keys for d in digests)
    assert list(keys.to_bytes().cast("Q")) == sorted(set(digests))
    again = RetiredKeys.from_bytes(bytes(keys.to_bytes()), tmp_path / "gone")
    assert again.mapped_bytes() == 0 and list(again._sorted) == sorted(set(digests))


def test_an_aggregate_of_a_newer_version_is_refused() -> None:
    raw = orjson.loads(encode_aggregate(PartitionTotals(CHAIN).of(0), 0, {}))
    raw["v"] = 2
    with pytest.raises(FormatVersionError):
        decode_aggregate(CHAIN, orjson.dumps(raw))
