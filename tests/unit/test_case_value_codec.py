"""The stored case value (streams/codec.py): version 4 round-trips every state exactly, and every
form that earlier workers left in the `cases` changelog (JSON versions 1 to 3) is read as the
same state, whatever the chain configuration is when it is read."""

from __future__ import annotations

from collections import Counter

import orjson
import pytest
import yaml
from core_fixtures import CHAIN, DAY
from hypothesis import given, settings
from hypothesis import strategies as st
from ketenmonitor.streams.codec import (
    CASE_VALUE_VERSION,
    FormatVersionError,
    decode_case_value,
    encode_case_value,
    encode_case_value_v3,
)
from ketenmonitor.streams.processing import CaseProcessor, PartitionTotals

from ketenmonitor.domain.case import CaseEvent, CaseState, MilestoneRecord, apply_event, facts_of
from ketenmonitor.domain.chain import DEFAULT_CHAIN_FILE, chain_from_mapping
from ketenmonitor.domain.flow import REWORK

# -- arbitrary states -----------------------------------------------------------------------------
# Not only states the core can reach: any names, times, revisions and withdrawn items, so that the
# format is not tied to the shipped chain or to the simulator's values.
names = st.text(min_size=1, max_size=24)
times = st.floats(allow_nan=False, allow_infinity=False, width=64)
records = st.builds(
    MilestoneRecord,
    event_id=names,
    occurred_at=times,
    case_type=names,
    district=names,
    outcome=st.none() | names,
    revision=st.integers(0, 1_000_000),
    retracted=st.booleans(),
)
fact = st.one_of(
    st.tuples(names, names, names, times, st.just("stage_entered")),
    st.tuples(
        names, names, names, times, times, st.sampled_from(["stage_left", "segment_completed"])
    ),
    st.tuples(names, names, names, names, times, st.just("case_closed")),
    st.tuples(st.sampled_from(["milestone", "stage"]), names, st.integers(1, 50), st.just(REWORK)),
)


@st.composite
def case_values(draw: st.DrawFn) -> tuple[CaseState, tuple[tuple, ...]]:
    # The core applies an event id once: the records' event ids differ.
    drawn = draw(
        st.lists(
            st.tuples(names, records),
            max_size=12,
            unique_by=(lambda kr: kr[0], lambda kr: kr[1].event_id),
        )
    )
    by_key = dict(drawn)
    superseded = draw(st.frozensets(names, max_size=6))
    seen = frozenset(r.event_id for r in by_key.values()) | superseded
    state = CaseState(by_key, seen, draw(st.integers(0, 2**40)))
    return state, tuple(draw(st.lists(fact, max_size=8)))


def _same(a: tuple[CaseState, tuple], b: tuple[CaseState, tuple]) -> None:
    """Equal, and of the same types field by field (a time stays a float, a flag a bool)."""
    assert a == b
    (state_a, withdrawn_a), (state_b, withdrawn_b) = a, b
    assert type(state_b) is CaseState and type(state_b.seen_event_ids) is frozenset
    for key, record in state_a.records.items():
        other = state_b.records[key]
        assert type(other) is MilestoneRecord
        assert [type(x) for x in other] == [type(x) for x in record]
    assert [[type(x) for x in item] for item in withdrawn_b] == [
        [type(x) for x in item] for item in withdrawn_a
    ]
    assert all(type(item) is tuple for item in withdrawn_b)


@settings(max_examples=400, deadline=None)
@given(case_values())
def test_version_4_gives_back_exactly_the_state_and_withdrawn_items(value):
    state, withdrawn = value
    raw = encode_case_value(state, withdrawn)
    assert raw[0] == CASE_VALUE_VERSION == 4
    back = decode_case_value(raw)
    _same(value, back)
    assert encode_case_value(*back) == raw  # a deterministic wire form


@settings(max_examples=400, deadline=None)
@given(case_values())
def test_values_written_by_earlier_workers_read_as_the_same_state(value):
    state, withdrawn = value
    v3 = encode_case_value_v3(state, withdrawn)
    assert v3.startswith(b'{"v":3,')
    _same(value, decode_case_value(v3))
    # Version 2 (withdrawn facts, no rework items) and version 1 (no "v", no "w"), as they wrote
    # them: the same document with another version mark.
    doc = orjson.loads(v3)
    facts_only = tuple(w for w in withdrawn if w[-1] != REWORK)
    doc["v"] = 2
    if facts_only:
        doc["w"] = facts_only
    else:
        doc.pop("w", None)
    _same((state, facts_only), decode_case_value(orjson.dumps(doc)))
    del doc["v"]
    doc.pop("w", None)
    _same((state, ()), decode_case_value(orjson.dumps(doc)))
    # Rewritten by this worker: version 4, the same state.
    assert decode_case_value(encode_case_value(*decode_case_value(v3))) == value


def test_a_stored_version_3_value_reads_as_it_was_written():
    # Bytes as a version-3 worker stored them (a case with a corrected milestone, a repeated
    # occurrence, a duplicate, withdrawn facts and a withdrawn rework item).
    raw = (
        b'{"v":3,"r":{"om_intake":["e1",100.0,"standard","amsterdam",null,0,false],'
        b'"first_hearing#2":["e3",200.5,"youth","rotterdam",null,1,false]},"x":["e2"],"d":1,'
        b'"w":[["om_assessment","standard","amsterdam",90.25,"stage_entered"],'
        b'["milestone","first_hearing",1,"rework"]]}'
    )
    state, withdrawn = decode_case_value(raw)
    assert state == CaseState(
        {
            "om_intake": MilestoneRecord("e1", 100.0, "standard", "amsterdam"),
            "first_hearing#2": MilestoneRecord("e3", 200.5, "youth", "rotterdam", None, 1),
        },
        frozenset({"e1", "e2", "e3"}),
        1,
    )
    assert withdrawn == (
        ("om_assessment", "standard", "amsterdam", 90.25, "stage_entered"),
        ("milestone", "first_hearing", 1, "rework"),
    )
    assert encode_case_value_v3(state, withdrawn) == raw


def test_the_version_4_wire_form_is_fixed():
    # Pinned bytes: a change of the layout must come with a new version (and a reader of this).
    state = CaseState(
        {"om_intake": MilestoneRecord("e1", 100.0, "standard", "amsterdam", "x", 2, True)},
        frozenset({"e1", "e0"}),
        3,
    )
    withdrawn = (("s", "standard", "amsterdam", 1.5, "stage_entered"),)
    raw = encode_case_value(state, withdrawn)
    assert raw == (
        b"\x04\x94\x81\xa9om_intake\x97\xa2e1\xcb@Y\x00\x00\x00\x00\x00\x00\xa8standard"
        b"\xa9amsterdam\xa1x\x02\xc3\x91\xa2e0\x03\x91\x95\xa1s\xa8standard\xa9amsterdam"
        b"\xcb?\xf8\x00\x00\x00\x00\x00\x00\xadstage_entered"
    )
    assert decode_case_value(raw) == (state, withdrawn)


@pytest.mark.parametrize(
    "raw",
    [
        bytes([5]) + b"\x94\x80\x90\x00\x90",  # a later binary version
        b'{"v":4,"r":{}}',  # version 4 is not JSON: no worker wrote this
        b'{"v":5,"r":{}}',
    ],
)
def test_an_unknown_version_is_refused_with_a_clear_error(raw):
    with pytest.raises(FormatVersionError, match="format version"):
        decode_case_value(raw)


def test_a_damaged_version_4_value_is_an_error_not_a_wrong_state():
    raw = encode_case_value(
        CaseState({"m": MilestoneRecord("e1", 1.0, "a", "b")}, frozenset({"e1"}))
    )
    for damaged in (raw[:-1], raw[:1] + b"\x93" + raw[2:], b""):
        with pytest.raises(ValueError):
            decode_case_value(damaged)


# -- chain changes --------------------------------------------------------------------------------
def _chain_with_new_milestones():
    """The shipped chain with a milestone added before every other one and one added to the
    prosecution service: every index into the chain's milestone list moves."""
    spec = yaml.safe_load(DEFAULT_CHAIN_FILE.read_text(encoding="utf-8"))
    spec["partners"][0]["milestones"].insert(0, {"id": "tip_received", "label": "Tip"})
    for partner in spec["partners"]:
        if partner["id"] == "om":
            partner["milestones"].insert(1, {"id": "om_extra_check", "label": "Extra check"})
    return chain_from_mapping(spec)


def test_a_stored_value_means_the_same_after_the_chain_gains_milestones():
    changed = _chain_with_new_milestones()
    assert next(iter(changed.milestones)) == "tip_received"
    assert [m for m in CHAIN.milestones if m in changed.milestones] == list(CHAIN.milestones)
    events = [
        CaseEvent("e1", "k", "report_registered", 1 * DAY, "standard", "amsterdam"),
        CaseEvent("e2", "k", "file_sent_to_om", 5 * DAY, "standard", "amsterdam"),
        CaseEvent("e3", "k", "om_intake", 6 * DAY, "standard", "amsterdam"),
        CaseEvent("e4", "k", "om_intake", 6.5 * DAY, "standard", "amsterdam", revision=1),
    ]
    # Written under the shipped chain, read under the changed one: the same occurrences ...
    state = None
    for e in events:
        state = apply_event(CHAIN, state, e).state
    raw = encode_case_value(state, ())
    restored, _ = decode_case_value(raw)
    assert restored == state and set(restored.records) == {
        "report_registered",
        "file_sent_to_om",
        "om_intake",
    }
    # ... so the changed chain's facts of it are those of the same events applied under it, and
    # events of the new milestones apply to it like to a case that never was stored.
    fresh = None
    for e in events:
        fresh = apply_event(changed, fresh, e).state
    assert facts_of(changed, restored) == facts_of(changed, fresh)
    more = CaseEvent("e5", "k", "om_extra_check", 7 * DAY, "standard", "amsterdam")
    assert apply_event(changed, restored, more) == apply_event(changed, fresh, more)


def test_a_restore_from_a_changelog_of_both_formats_rebuilds_the_same_totals():
    # After an upgrade the changelog holds version-3 values of cases not touched since and
    # version-4 values of the others; the new owner of a partition folds both.
    processor = CaseProcessor(CHAIN)
    stored: dict[str, bytes] = {}
    times = [1.0, 3.0, 2.0, 9.0, 4.0, 20.0]
    milestones = [
        "report_registered",
        "file_sent_to_om",
        "om_intake",
        "om_decision",
        "first_hearing",
        "first_hearing",
    ]
    for case in range(40):
        for n, (m, t) in enumerate(zip(milestones[: 1 + case % 6], times, strict=False)):
            outcome = "summons" if m == "om_decision" else None
            payload = orjson.dumps(
                [2, f"c{case}-{n}", m, t * DAY + case, "standard", "amsterdam", outcome, 0, False]
            )
            key = f"case{case}"
            stored[key] = processor.apply(key, payload, stored.get(key)).stored
        # a correction that withdraws facts
        payload = orjson.dumps(
            [
                2,
                f"c{case}-r",
                "report_registered",
                0.5 * DAY,
                "standard",
                "amsterdam",
                None,
                1,
                False,
            ]
        )
        stored[key] = processor.apply(key, payload, stored[key]).stored
    as_v3 = {k: encode_case_value_v3(*decode_case_value(v)) for k, v in stored.items()}
    mixed = {k: (as_v3[k] if n % 2 else v) for n, (k, v) in enumerate(stored.items())}
    totals = []
    for values in (stored, as_v3, mixed):
        restored = PartitionTotals(CHAIN)
        restored.add_stored(0, values.values())
        totals.append(restored.of(0))
    assert totals[0] == totals[1] == totals[2]
    assert totals[0].cases == 40 and sum(totals[0].inflow_withdrawn.values()) > 0
    assert Counter(v[0] for v in mixed.values()) == {4: 20, ord("{"): 20}
