"""The event contract: what partners may send, and why anything else is rejected."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ketenmonitor.domain.chain import load_chain
from schemas.events import REJECTION_REASONS, ChainEventV1, EventRejected, parse_event
from schemas.generate import SCHEMA_DIR, SCHEMAS, render

CHAIN = load_chain()
SAMPLE = json.loads((Path(__file__).parent / "samples" / "valid_event.json").read_text())


def encoded(**changes):
    event = {**SAMPLE, **changes}
    return json.dumps({k: v for k, v in event.items() if v is not ...}).encode()


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
        (encoded(organisation="police", milestone="report_registered", outcome=...), "organisation_mismatch"),
        (encoded(milestone="verdict_by_tv"), "unknown_milestone"),
        (encoded(milestone="court_intake", outcome=...), "unknown_milestone"),  # not an OM milestone
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
        assert (SCHEMA_DIR / name).read_text() == render(model), f"run python -m schemas.generate ({name})"


def test_json_schema_forbids_unknown_fields_and_requires_the_core_fields():
    schema = json.loads((SCHEMA_DIR / "chain-event.v1.schema.json").read_text())
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) >= {
        "schema_version", "event_id", "case_key", "organisation", "milestone", "occurred_at",
        "case_type", "district",
    }
    assert set(schema["properties"]) == set(ChainEventV1.model_fields)
