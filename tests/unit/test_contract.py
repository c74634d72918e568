"""The event contract: what partners may send, and why anything else is rejected."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from ketenmonitor.schemas.events import (
    EARLIEST_EVENT_TIME,
    MAX_CLOCK_SKEW,
    REJECTION_REASONS,
    ChainEventV1,
    EventRejected,
    parse_event,
)
from ketenmonitor.schemas.generate import SCHEMA_DIR, SCHEMAS, render

from ketenmonitor.domain.chain import DEFAULT_CHAIN_FILE, chain_from_mapping, load_chain
from ketenmonitor.domain.pseudonym import Pseudonymiser, partition_of, pseudonymise

CHAIN = load_chain()
SAMPLE = json.loads((Path(__file__).parent / "samples" / "valid_event.json").read_text())


def encoded(**changes):
    event = {**SAMPLE, **changes}
    return json.dumps({k: v for k, v in event.items() if v is not ...}).encode()


S = encoded()  # the sample event, as bytes


def reason_of(raw: bytes, organisation: str | None = "om") -> str:
    with pytest.raises(EventRejected) as info:
        parse_event(raw, CHAIN, topic_organisation=organisation)
    assert info.value.reason in REJECTION_REASONS
    return info.value.reason


def test_the_sample_event_is_valid():
    event = parse_event(encoded(), CHAIN, topic_organisation="om")
    assert event.outcome == "summons" and event.occurred_at.utcoffset() is not None


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe not utf-8", "not_utf8"),
        (b"{not json", "not_json"),
        (b"[1, 2]", "not_an_object"),
        (encoded(schema_version=2), "unsupported_schema_version"),
        (encoded(event_id=...), "missing_field"),
        (encoded(name="Jan Jansen"), "unknown_field"),
        (encoded(bsn="123456782"), "unknown_field"),
        (encoded(revision="three"), "wrong_type"),
        (encoded(case_type=7), "wrong_type"),
        (encoded(occurred_at="2026-03-02T10:15:00"), "naive_timestamp"),
        (encoded(occurred_at="2099-01-01T00:00:00+00:00"), "future_timestamp"),
        (encoded(occurred_at="yesterday"), "wrong_type"),
        (encoded(organisation="tax_office"), "unknown_organisation"),
        (
            encoded(organisation="police", milestone="report_registered", outcome=...),
            "organisation_mismatch",
        ),
        (encoded(milestone="verdict_by_tv"), "unknown_milestone"),
        # not an OM milestone
        (encoded(milestone="court_intake", outcome=...), "unknown_milestone"),
        (encoded(case_type="murder_on_the_orient_express"), "unknown_case_type"),
        (encoded(district="atlantis"), "unknown_district"),
        (encoded(outcome=...), "invalid_outcome"),
        (encoded(outcome="paid"), "invalid_outcome"),
        (encoded(milestone="om_intake"), "invalid_outcome"),  # om_intake has no outcomes
        (encoded(case_key="Jan Jansen, 12-03-1980"), "invalid_value"),  # free text has no room
    ],
)
def test_malformed_events_are_rejected_with_a_specific_reason(raw, reason):
    assert reason_of(raw) == reason


def test_a_retraction_needs_no_outcome():
    event = parse_event(encoded(outcome=..., revision=2, retracted=True), CHAIN, "om")
    assert event.retracted


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_are_rejected_never_crash(raw):
    try:
        parse_event(raw, CHAIN, topic_organisation="om")
    except EventRejected as exc:
        assert exc.reason in REJECTION_REASONS


def test_checked_in_json_schema_is_current():
    for name, model in SCHEMAS.items():
        assert (SCHEMA_DIR / name).read_text() == render(model), (
            f"run python -m ketenmonitor.schemas.generate ({name})"
        )


def test_json_schema_forbids_unknown_fields_and_requires_the_core_fields():
    schema = json.loads((SCHEMA_DIR / "chain-event.v1.schema.json").read_text())
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) >= {
        "schema_version", "event_id", "case_key", "organisation", "milestone", "occurred_at",
        "case_type", "district",
    }
    assert set(schema["properties"]) == set(ChainEventV1.model_fields)


# -- Exact reasons and details ---------------------------------------------------------------
# parse_event validates bytes directly and judges only failures step by step (UTF-8, JSON, object,
# schema version, fields). These expectations were recorded from the step-by-step parser that was
# the only path before, so the fast path cannot change what partners and operators see.
REJECTED = [
    ("empty", b"", "not_json", "Expecting value at line 1 column 1"),
    ("whitespace only", b" \n", "not_json", "Expecting value at line 2 column 1"),
    ("invalid UTF-8 first byte", b"\xff" + S, "not_utf8", "byte 0 is not UTF-8"),
    ("invalid UTF-8 inside a string", S.replace(b"rotterdam", b"rott\xe9rdam"), "not_utf8",
     "byte 215 is not UTF-8"),
    ("UTF-8 byte order mark", b"\xef\xbb\xbf" + S, "not_json",
     "Unexpected UTF-8 BOM (decode using utf-8-sig) at line 1 column 1"),
    ("trailing data", S + b" x", "not_json", "Extra data at line 1 column 246"),
    ("truncated", S[:-1], "not_json", "Expecting ',' delimiter at line 1 column 244"),
    ("JSON null", b"null", "not_an_object", "expected a JSON object, got NoneType"),
    ("JSON true", b"true", "not_an_object", "expected a JSON object, got bool"),
    ("JSON number", b"12", "not_an_object", "expected a JSON object, got int"),
    ("JSON string", b'"text"', "not_an_object", "expected a JSON object, got str"),
    ("JSON array", b"[1, 2]", "not_an_object", "expected a JSON object, got list"),
    # These two crashed the parser with a RecursionError before; now they are rejected.
    ("deeply nested arrays", b"[" * 5000, "not_json", "JSON nested too deeply"),
    ("deeply nested objects", b'{"a":' * 5000, "not_json", "JSON nested too deeply"),
    ("NaN", S[:-1] + b', "revision": NaN}', "invalid_value",
     "revision: Input should be a finite number"),
    ("Infinity", S[:-1] + b', "revision": -Infinity}', "invalid_value",
     "revision: Input should be a finite number"),
    ("number overflowing a float", S[:-1] + b', "revision": 1e400}', "invalid_value",
     "revision: Input should be a finite number"),
    ("integer too long to convert", S[:-1] + b', "revision": ' + b"9" * 5000 + b"}", "not_json",
     "not valid JSON"),
    ("schema_version as a string", encoded(schema_version="1"), "unsupported_schema_version",
     "schema_version is not 1"),
    ("schema_version null", encoded(schema_version=None), "unsupported_schema_version",
     "schema_version is not 1"),
    ("schema_version 1.5", encoded(schema_version=1.5), "unsupported_schema_version",
     "schema_version is not 1"),
    ("schema_version 2", encoded(schema_version=2), "unsupported_schema_version",
     "schema_version is not 1"),
    ("schema_version missing", encoded(schema_version=...), "missing_field",
     "schema_version: Field required"),
    ("negative revision", encoded(revision=-1), "invalid_value",
     "revision: Input should be greater than or equal to 0"),
    ("revision too large", encoded(revision=1_000_001), "invalid_value",
     "revision: Input should be less than or equal to 1000000"),
    ("fractional revision", encoded(revision=2.5), "invalid_value",
     "revision: Input should be a valid integer, got a number with a fractional part"),
    ("revision null", encoded(revision=None), "wrong_type",
     "revision: Input should be a valid integer"),
    ("revision a word", encoded(revision="three"), "wrong_type",
     "revision: Input should be a valid integer, unable to parse string as an integer"),
    ("retracted a word", encoded(retracted="maybe"), "wrong_type",
     "retracted: Input should be a valid boolean, unable to interpret input"),
    ("retracted null", encoded(retracted=None), "wrong_type",
     "retracted: Input should be a valid boolean"),
    ("empty event_id", encoded(event_id=""), "invalid_value",
     "event_id: String should have at least 1 character"),
    ("event_id too long", encoded(event_id="x" * 65), "invalid_value",
     "event_id: String should have at most 64 characters"),
    ("case_key a list", encoded(case_key=["PN1"]), "wrong_type",
     "case_key: Input should be a valid string"),
    ("case_key with a space", encoded(case_key="PN 1"), "invalid_value",
     "case_key: String should match pattern '^[A-Za-z0-9._:/-]+$'"),
    ("outcome a number", encoded(outcome=5), "wrong_type",
     "outcome: Input should be a valid string"),
    ("organisation in capitals", encoded(organisation="Om"), "invalid_value",
     "organisation: String should match pattern '^[a-z][a-z0-9_]*$'"),
    ("case_type a number", encoded(case_type=7), "wrong_type",
     "case_type: Input should be a valid string"),
    ("occurred_at before 2000", encoded(occurred_at="1999-12-31T23:59:59+00:00"), "invalid_value",
     "occurred_at: Value error, occurred_at before 2000-01-01 is implausible"),
    ("occurred_at on 30 February", encoded(occurred_at="2025-02-30T00:00:00+00:00"), "wrong_type",
     "occurred_at: Input should be a valid datetime or date, day value is outside expected range"),
    ("occurred_at offset of 24 hours", encoded(occurred_at="2025-01-01T10:00:00+24:00"),
     "wrong_type", "occurred_at: Input should be a valid datetime or date, unexpected extra "
     "characters at the end of the input"),
    ("occurred_at without offset", encoded(occurred_at="2026-03-02T10:15:00"), "naive_timestamp",
     "occurred_at: Input should have timezone info"),
    ("occurred_at a word", encoded(occurred_at="yesterday"), "wrong_type",
     "occurred_at: Input should be a valid datetime or date, input is too short"),
    ("occurred_at null", encoded(occurred_at=None), "wrong_type",
     "occurred_at: Input should be a valid datetime"),
    ("occurred_at missing", encoded(occurred_at=...), "missing_field",
     "occurred_at: Field required"),
    ("occurred_at far in the future", encoded(occurred_at="2099-01-01T00:00:00+00:00"),
     "future_timestamp", "occurred_at: Value error, occurred_at lies in the future"),
    ("empty field name", encoded(**{"": 1}), "unknown_field",
     "<unknown field>: Extra inputs are not permitted"),
    ("field name in another case", encoded(Revision=1), "unknown_field",
     "<unknown field>: Extra inputs are not permitted"),
    ("unknown field", encoded(remark="x"), "unknown_field",
     "<unknown field>: Extra inputs are not permitted"),
    ("duplicate key, the last one wrong", S[:-1] + b', "district": "atlantis"}', "unknown_district",
     "district is not in the chain definition"),
    ("wrong type before an unknown field", encoded(revision="three", remark="x"), "wrong_type",
     "revision: Input should be a valid integer, unable to parse string as an integer"),
    ("unknown organisation", encoded(organisation="tax_office"), "unknown_organisation",
     "organisation is not a partner of the chain"),
    ("milestone of another partner", encoded(milestone="court_intake", outcome=...),
     "unknown_milestone", "milestone 'court_intake' belongs to 'courts', not 'om'"),
    ("outcome missing", encoded(outcome=...), "invalid_outcome",
     "'om_decision' needs an outcome of ['dismissal', 'penalty_order', 'settlement', 'summons'], "
     "got none"),
]


@pytest.mark.parametrize(("raw", "reason", "detail"), [c[1:] for c in REJECTED],
                         ids=[c[0] for c in REJECTED])
def test_each_kind_of_bad_input_keeps_its_reason_and_detail(raw, reason, detail):
    with pytest.raises(EventRejected) as info:
        parse_event(raw, CHAIN, topic_organisation="om")
    assert (info.value.reason, info.value.detail) == (reason, detail)


# Lax inputs the contract has always accepted (pydantic's lax mode); fields that differ from the
# sample, and occurred_at.
ACCEPTED = [
    ("schema_version 1.0", encoded(schema_version=1.0), {}, "2026-03-02T10:15:00+01:00"),
    ("schema_version true", encoded(schema_version=True), {}, "2026-03-02T10:15:00+01:00"),
    ("revision as a string", encoded(revision="3"), {"revision": 3}, "2026-03-02T10:15:00+01:00"),
    ("revision 3.0", encoded(revision=3.0), {"revision": 3}, "2026-03-02T10:15:00+01:00"),
    ("retracted yes", encoded(retracted="yes", revision=1), {"revision": 1, "retracted": True},
     "2026-03-02T10:15:00+01:00"),
    ("retracted 0", encoded(retracted=0), {}, "2026-03-02T10:15:00+01:00"),
    ("outcome null", encoded(milestone="om_intake", outcome=None),
     {"milestone": "om_intake", "outcome": None}, "2026-03-02T10:15:00+01:00"),
    ("duplicate key, the last one wins", S[:-1] + b', "district": "amsterdam"}',
     {"district": "amsterdam"}, "2026-03-02T10:15:00+01:00"),
    ("surrounding whitespace", b" \n" + S + b"\n", {}, "2026-03-02T10:15:00+01:00"),
    ("escaped characters", S.replace(b"PN13", b"PN\\u00313"), {}, "2026-03-02T10:15:00+01:00"),
    ("occurred_at as Unix seconds", encoded(occurred_at=1735725600), {},
     "2025-01-01T10:00:00+00:00"),
    ("occurred_at with a space and Z", encoded(occurred_at="2025-01-01 10:00:00Z"), {},
     "2025-01-01T10:00:00+00:00"),
    ("occurred_at on 1 January 2000", encoded(occurred_at="2000-01-01T00:00:00+00:00"), {},
     "2000-01-01T00:00:00+00:00"),
]


@pytest.mark.parametrize(("raw", "changed", "occurred_at"), [c[1:] for c in ACCEPTED],
                         ids=[c[0] for c in ACCEPTED])
def test_lax_but_valid_inputs_are_still_accepted_with_the_same_values(raw, changed, occurred_at):
    event = parse_event(raw, CHAIN, topic_organisation="om")
    expected = {**SAMPLE, "revision": 0, "retracted": False, "occurrence": None, **changed}
    del expected["occurred_at"]
    assert event.model_dump(exclude={"occurred_at"}) == expected
    assert event.occurred_at.isoformat() == occurred_at


# -- The clock --------------------------------------------------------------------------------
SAMPLE_TIME = datetime.fromisoformat(SAMPLE["occurred_at"]).timestamp()


def test_an_event_may_lie_up_to_the_clock_skew_ahead_of_now():
    skew = MAX_CLOCK_SKEW.total_seconds()
    assert parse_event(S, CHAIN, "om", now=SAMPLE_TIME - skew).milestone == "om_decision"
    with pytest.raises(EventRejected) as info:
        parse_event(S, CHAIN, "om", now=SAMPLE_TIME - skew - 1)
    assert info.value.reason == "future_timestamp"


def test_without_now_the_clock_is_read():
    soon = datetime.fromtimestamp(time.time(), UTC) + MAX_CLOCK_SKEW - timedelta(minutes=5)
    assert parse_event(encoded(occurred_at=soon.isoformat()), CHAIN, "om").outcome == "summons"
    later = soon + timedelta(minutes=10)
    with pytest.raises(EventRejected) as info:
        parse_event(encoded(occurred_at=later.isoformat()), CHAIN, "om")
    assert info.value.reason == "future_timestamp"


def test_a_model_validated_directly_still_checks_the_clock():
    data = {**SAMPLE, "occurred_at": "2099-01-01T00:00:00+00:00"}
    with pytest.raises(ValueError, match="lies in the future"):
        ChainEventV1.model_validate(data)
    with pytest.raises(ValueError, match="implausible"):
        ChainEventV1.model_validate({**SAMPLE, "occurred_at": "2000-01-01T00:30:00+01:00"})


@settings(max_examples=1500, deadline=None)
@given(
    local=st.one_of(  # around the earliest time, or anywhere
        st.datetimes(min_value=datetime(1999, 12, 29), max_value=datetime(2000, 1, 3)),
        st.datetimes(min_value=datetime(1998, 1, 1), max_value=datetime(2150, 1, 1)),
    ),
    offset_minutes=st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1),
    now_from_event=st.integers(min_value=-4 * 86_400, max_value=4 * 86_400),
)
def test_time_bounds_agree_with_comparing_datetimes(local, offset_minutes, now_from_event):
    # The validator takes shortcuts on the local date; the verdict must be the plain comparison.
    value = local.replace(tzinfo=timezone(timedelta(minutes=offset_minutes)))
    now = float(int(value.timestamp()) + now_from_event)  # whole seconds: exact as a float
    raw = encoded(occurred_at=value.isoformat(), milestone="om_intake", outcome=...)
    if value < EARLIEST_EVENT_TIME:
        expected = "invalid_value"
    elif value > datetime.fromtimestamp(now, UTC) + MAX_CLOCK_SKEW:
        expected = "future_timestamp"
    else:
        expected = "accepted"
    try:
        parse_event(raw, CHAIN, "om", now=now)
        verdict = "accepted"
    except EventRejected as exc:
        verdict = exc.reason
    assert verdict == expected


# -- Chain look-ups ---------------------------------------------------------------------------
def test_each_chain_is_checked_against_its_own_definition():
    spec = yaml.safe_load(DEFAULT_CHAIN_FILE.read_text(encoding="utf-8"))
    del spec["districts"]["rotterdam"]
    smaller = chain_from_mapping(spec)
    for _ in range(2):  # alternate: look-ups built for one chain must not answer for the other
        assert parse_event(S, CHAIN, "om").district == "rotterdam"
        with pytest.raises(EventRejected) as info:
            parse_event(S, smaller, "om")
        assert info.value.reason == "unknown_district"


# -- Pseudonyms -------------------------------------------------------------------------------
# Pinned: a pseudonym must never change, or cases split in two across a software upgrade.
@pytest.mark.parametrize(
    ("secret", "case_key", "pseudonym", "partition_of_6"),
    [
        (b"operator-held secret", "PARKET-13-123456-24", "a54d06d35302e6f36560f7ff62d1ee87", 3),
        (b"k", "", "8bb990c40a7d61cb97597a942125025b", 4),
        (b"x" * 100, "PN001-000000001", "c1908fab127fd96d9325e6af9db56ea6", 3),
        (b"benchmark-pseudonym-key-0123456789", "caf\u00e9/\u20ac",
         "dfb4aae24b2a7b5896aca21c64f4688e", 4),
    ],
)
def test_pseudonyms_are_pinned(secret, case_key, pseudonym, partition_of_6):
    assert pseudonymise(secret, case_key) == pseudonym
    assert Pseudonymiser(secret)(case_key) == pseudonym
    assert pseudonymise(bytearray(secret), case_key) == pseudonym
    assert partition_of(pseudonym, 6) == partition_of_6


@settings(max_examples=300, deadline=None)
@given(secret=st.binary(min_size=1, max_size=150), case_key=st.text(max_size=80))
def test_a_pseudonym_is_the_truncated_hmac_sha256(secret, case_key):
    expected = hmac.new(secret, case_key.encode(), hashlib.sha256).hexdigest()[:32]
    assert pseudonymise(secret, case_key) == expected
    assert pseudonymise(secret, case_key) == expected  # and the same value again


def test_an_empty_secret_is_refused():
    with pytest.raises(ValueError, match="secret is empty"):
        pseudonymise(b"", "PN1")
    with pytest.raises(ValueError, match="secret is empty"):
        Pseudonymiser(b"")


# -- Occurrences and the chain's earliest plausible time ---------------------------------------
def test_an_occurrence_id_is_accepted_and_checked_like_an_event_id():
    assert parse_event(encoded(occurrence="hearing-2"), CHAIN, "om").occurrence == "hearing-2"
    assert parse_event(S, CHAIN, "om").occurrence is None
    assert reason_of(encoded(occurrence="")) == "invalid_value"
    assert reason_of(encoded(occurrence="a b")) == "invalid_value"
    assert reason_of(encoded(occurrence=3)) == "wrong_type"


def _chain_with_earliest(value: str):
    spec = yaml.safe_load(DEFAULT_CHAIN_FILE.read_text(encoding="utf-8"))
    spec["earliest_event_time"] = value
    return chain_from_mapping(spec)


def test_a_chain_can_accept_local_midnight_of_1_january_2000():
    midnight = encoded(occurred_at="2000-01-01T00:00:00+01:00", milestone="om_intake", outcome=...)
    assert reason_of(midnight) == "invalid_value"  # the default bound is UTC midnight
    local = _chain_with_earliest("2000-01-01T00:00:00+01:00")
    assert parse_event(midnight, local, "om").milestone == "om_intake"
    before = encoded(occurred_at="1999-12-31T23:59:59+01:00", milestone="om_intake", outcome=...)
    with pytest.raises(EventRejected) as info:
        parse_event(before, local, "om")
    assert info.value.reason == "invalid_value"
    assert "1999-12-31T23:00:00+00:00" in info.value.detail


def test_the_earliest_time_in_a_chain_file_must_carry_an_offset():
    with pytest.raises(ValueError, match="earliest_event_time"):
        _chain_with_earliest("2000-01-01T00:00:00")


@settings(max_examples=400, deadline=None)
@given(
    local=st.datetimes(min_value=datetime(2004, 12, 28), max_value=datetime(2006, 1, 5)),
    offset_minutes=st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1),
)
def test_a_later_earliest_time_agrees_with_comparing_datetimes(local, offset_minutes):
    chain = LATER_CHAIN
    value = local.replace(tzinfo=timezone(timedelta(minutes=offset_minutes)))
    raw = encoded(occurred_at=value.isoformat(), milestone="om_intake", outcome=...)
    expected = "invalid_value" if value < LATER_EARLIEST else "accepted"
    try:
        parse_event(raw, chain, "om", now=time.time())
        verdict = "accepted"
    except EventRejected as exc:
        verdict = exc.reason
    assert verdict == expected


LATER_EARLIEST = datetime(2005, 12, 31, 12, 0, tzinfo=UTC)
LATER_CHAIN = _chain_with_earliest(LATER_EARLIEST.isoformat())
