"""The published totals (streams/totals.py) and every versioned encoding the worker keeps."""

from __future__ import annotations

from collections import Counter

import orjson
import pytest
from core_fixtures import CHAIN, DAY
from ketenmonitor.streams.codec import FormatVersionError, decode_case_value, encode_case_value
from ketenmonitor.streams.ingest import IngestStats
from ketenmonitor.streams.processing import CaseProcessor, PartitionTotals, decode_case_event
from ketenmonitor.streams.totals import (
    CASES_KEY,
    TotalsView,
    case_totals_position,
    decode_case_totals,
    encode_case_totals,
    ingest_key,
)

from ketenmonitor.domain.case import CaseEvent, apply_event
from ketenmonitor.domain.totals import ChainTotals


def event(n: int, milestone: str, at: float, **changes: object) -> CaseEvent:
    fields = dict(
        event_id=f"e{n}",
        case_key="k",
        milestone=milestone,
        occurred_at=at,
        case_type="standard",
        district="amsterdam",
    )
    fields.update(changes)
    return CaseEvent(**fields)  # type: ignore[arg-type]


def payload(e: CaseEvent) -> bytes:
    return orjson.dumps(
        [
            2,
            e.event_id,
            e.milestone,
            e.occurred_at,
            e.case_type,
            e.district,
            e.outcome,
            e.revision,
            e.retracted,
            *((e.occurrence,) if e.occurrence is not None else ()),
        ]
    )


def test_a_correction_counts_its_withdrawn_facts_and_they_survive_a_restore() -> None:
    processor, live = CaseProcessor(CHAIN), PartitionTotals(CHAIN)
    stored = None
    for e in (
        event(1, "court_intake", 0.0),
        event(2, "judgment", 50 * DAY, outcome="conviction"),
        event(3, "judgment", 20 * DAY, outcome="conviction", revision=1),
    ):
        step = processor.apply("k", payload(e), stored)
        live.fold(0, [step])
        stored = step.stored
    totals = live.of(0)
    key = ("court_intake_to_judgment", "standard", "amsterdam")
    assert totals.lead_times[key].count == 1 and totals.lead_times_withdrawn[key].count == 1
    assert totals.outflow_withdrawn[("court_trial", "standard", "amsterdam")] == 1
    restored = PartitionTotals(CHAIN)
    restored.add_stored(0, [stored])
    assert restored.of(0).lead_times_withdrawn == totals.lead_times_withdrawn
    assert restored.of(0).outflow_withdrawn == totals.outflow_withdrawn
    assert +restored.of(0).inflow == +totals.inflow


def test_published_case_totals_round_trip() -> None:
    totals = ChainTotals(CHAIN)
    state = None
    for e in (event(1, "court_intake", 0.0), event(2, "judgment", 50 * DAY, outcome="conviction")):
        applied = apply_event(CHAIN, state, e)
        totals.record(applied, new_case=state is None)
        state = applied.state
    record = decode_case_totals(encode_case_totals(totals, position=42, reference_time=100 * DAY))
    assert record.position == 42 and record.cases == 1
    assert record.inflow[("court_trial", "standard", "amsterdam")] == (1, 0)
    counts, total, withdrawn, _ = record.lead[("court_intake_to_judgment", "standard", "amsterdam")]
    assert sum(counts) == 1 and total == 50 * DAY and sum(withdrawn) == 0


def test_the_view_keeps_the_newest_position_per_partition_and_key() -> None:
    view = TotalsView()
    newer = encode_case_totals(ChainTotals(CHAIN), position=10, reference_time=0.0)
    older = encode_case_totals(ChainTotals(CHAIN), position=5, reference_time=0.0)
    assert view.apply(3, CASES_KEY, newer)
    assert not view.apply(3, CASES_KEY, older)  # a zombie's or a late publication
    assert view.case_records()[0].position == 10
    assert view.apply(4, CASES_KEY, older) and view.partitions == 2
    key = ingest_key("p.events.om")
    assert view.apply(3, key, IngestStats(next_offset=9, accepted=9).encode())
    assert not view.apply(3, key, IngestStats(next_offset=4, accepted=4).encode())
    assert [(t, s.accepted) for t, s in view.ingest_records()] == [("p.events.om", 9)]
    assert not view.apply(3, b"unknown", b"{}")


def test_a_view_reads_a_records_position_from_its_start_and_decodes_it_when_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ketenmonitor.streams import totals as published

    totals = ChainTotals(CHAIN)
    totals.record(apply_event(CHAIN, None, event(1, "court_intake", 0.0)), new_case=True)
    raw = encode_case_totals(totals, position=1234, reference_time=100 * DAY)
    assert case_totals_position(raw) == 1234 == decode_case_totals(raw).position
    # Written otherwise (other key order, spaces): decoded whole, the same position.
    sorted_keys = orjson.dumps(orjson.loads(raw), option=orjson.OPT_SORT_KEYS)
    assert case_totals_position(sorted_keys) == 1234
    assert case_totals_position(raw.replace(b'{"v":3,', b'{ "v": 3, ', 1)) == 1234
    with pytest.raises(FormatVersionError, match="format version"):  # refused where it arrives
        TotalsView().apply(0, CASES_KEY, raw.replace(b'{"v":3,', b'{"v":9,', 1))
    decoded = []
    real_decode = published.decode_case_totals
    monkeypatch.setattr(published, "decode_case_totals",
                        lambda b: decoded.append(b) or real_decode(b))
    view = TotalsView()
    for position in (5, 6, 7):  # three publications between two reads
        assert view.apply(0, CASES_KEY, encode_case_totals(totals, position, 100 * DAY))
    assert decoded == []
    assert [r.position for r in view.case_records()] == [7] and len(decoded) == 1
    assert view.case_records()[0].inflow == view.case_records()[0].inflow
    assert len(decoded) == 1  # read again, not decoded again


def test_version_1_records_are_read() -> None:
    state, withdrawn = decode_case_value(
        b'{"r":{"om_intake":["e1",100.0,"standard","amsterdam",null,0,false]}}'
    )
    assert state.records["om_intake"].occurred_at == 100.0 and withdrawn == ()
    assert IngestStats.decode(orjson.dumps([5, 4, {"late": 1}, 1.5, [0] * 8, 0.0])).accepted == 4
    old_event = orjson.dumps(["e1", "om_intake", 1.0, "standard", "amsterdam", None, 0, False])
    assert decode_case_event("k", old_event).event_id == "e1"


@pytest.mark.parametrize(
    ("decode", "raw"),
    [
        (decode_case_value, b'{"v":4,"r":{}}'),
        (IngestStats.decode, b'{"v":9,"next":1}'),
        (lambda raw: decode_case_event("k", raw), b'[7,"e1","om_intake",1.0]'),
        (decode_case_totals, b'{"v":4,"position":1}'),
    ],
)
def test_a_record_of_an_unknown_version_is_refused_with_a_clear_error(decode, raw) -> None:
    with pytest.raises(FormatVersionError, match="format version"):
        decode(raw)


def test_the_current_case_value_round_trips_with_withdrawn_facts() -> None:
    state = apply_event(CHAIN, None, event(1, "om_intake", 5.0)).state
    withdrawn = (("om_assessment", "standard", "amsterdam", 5.0, "stage_entered"),)
    assert decode_case_value(encode_case_value(state, withdrawn)) == (state, withdrawn)


def test_version_2_case_values_are_read_as_cases_without_withdrawn_rework() -> None:
    raw = (
        b'{"v":2,"r":{"om_intake":["e1",5.0,"standard","amsterdam",null,0,false]},'
        b'"w":[["om_assessment","standard","amsterdam",5.0,"stage_entered"]]}'
    )
    state, withdrawn = decode_case_value(raw)
    assert state.records["om_intake"].occurred_at == 5.0
    assert withdrawn == (("om_assessment", "standard", "amsterdam", 5.0, "stage_entered"),)
    restored = PartitionTotals(CHAIN)
    restored.add_stored(0, [raw])
    assert +restored.of(0).rework_withdrawn == Counter()
    assert restored.of(0).inflow_withdrawn[("om_assessment", "standard", "amsterdam")] == 1


def test_version_1_case_totals_are_read_without_dormant_cases_or_rework() -> None:
    doc = orjson.loads(encode_case_totals(ChainTotals(CHAIN), position=3, reference_time=1.0))
    del doc["dormant"], doc["rework"]
    doc["v"] = 1
    record = decode_case_totals(orjson.dumps(doc))
    assert record.position == 3 and record.dormant == {} and record.rework == {}


def test_version_2_case_totals_are_read_with_their_ages_as_published() -> None:
    # Version 2 ages counted dormant cases too; a reader takes them as they are until the
    # record's owner, upgraded, publishes version 3.
    doc = orjson.loads(encode_case_totals(ChainTotals(CHAIN), position=3, reference_time=1.0))
    doc["v"] = 2
    doc["age"] = [["court_trial", "standard", "amsterdam", ">730d", 2]]
    doc["oldest"] = {"court_trial": 0}
    record = decode_case_totals(orjson.dumps(doc))
    assert record.backlog_by_age == {("court_trial", "standard", "amsterdam", ">730d"): 2}
    assert record.oldest_entry == {"court_trial": 0} and record.position == 3


def test_published_ages_leave_dormant_cases_out() -> None:
    totals = ChainTotals(CHAIN)
    processor, live = CaseProcessor(CHAIN), PartitionTotals(CHAIN)
    stored = {}
    for key, e in (("silent", event(1, "court_intake", 0.0)),
                   ("busy", event(2, "court_intake", 10 * DAY)),
                   ("busy", event(3, "first_hearing", 500 * DAY))):
        step = processor.apply(key, payload(e), stored.get(key))
        live.fold(0, [step])
        stored[key] = step.stored
    totals = live.of(0)
    raw = encode_case_totals(totals, position=1, reference_time=600 * DAY)
    record = decode_case_totals(raw)
    assert orjson.loads(raw)["v"] == 3
    assert record.dormant == {("court_trial", "standard", "amsterdam"): 1}
    assert record.backlog_by_age == {("court_trial", "standard", "amsterdam", "365-730d"): 1}
    assert record.oldest_entry == {"court_trial": 10 * DAY}


def test_withdrawn_rework_is_stored_with_the_case_and_counted_again_after_a_restore() -> None:
    processor, live = CaseProcessor(CHAIN), PartitionTotals(CHAIN)
    stored = None
    for e in (
        event(1, "court_intake", 0.0),
        event(2, "first_hearing", 10 * DAY, occurrence="1"),
        event(3, "first_hearing", 20 * DAY, occurrence="2"),  # held again: one repeat
        event(4, "first_hearing", 20 * DAY, occurrence="2", revision=1, retracted=True),
    ):
        step = processor.apply("k", payload(e), stored)
        live.fold(0, [step])
        stored = step.stored
    totals = live.of(0)
    assert totals.rework[("milestone", "first_hearing")] == 0
    assert totals.rework_withdrawn[("milestone", "first_hearing")] == 1
    restored = PartitionTotals(CHAIN)
    restored.add_stored(0, [stored])
    assert +restored.of(0).rework_withdrawn == +totals.rework_withdrawn
    assert +restored.of(0).rework == +totals.rework
    record = decode_case_totals(encode_case_totals(totals, position=1, reference_time=30 * DAY))
    assert record.rework[("milestone", "first_hearing")] == (0, 1)
