"""Rejection details (dead-letter `detail` header) never echo a value from the input.

The input may carry a case key or other personal data anywhere: in a contract field with a wrong
format, in a field outside the contract, even as a field name. The detail names the rule and the
field of the contract, nothing else.
"""

from __future__ import annotations

import json

import pytest
from ketenmonitor.schemas.events import EventRejected, parse_event

from ketenmonitor.domain.chain import load_chain

CHAIN = load_chain()
SECRET = "PN999-000424242"  # looks like a case key; must never come back
SECRET_ID = "pn999_000424242"  # the same, shaped to pass the identifier pattern

VALID = {
    "schema_version": 1,
    "event_id": "e-1",
    "case_key": "PN001-000000001",
    "organisation": "police",
    "milestone": "report_registered",
    "occurred_at": "2025-01-01T10:00:00+00:00",
    "case_type": "standard",
    "district": "amsterdam",
}

CASES = {
    "unknown field holding a key": {**VALID, "remark": SECRET},
    "key as a field name": {**VALID, SECRET: "x"},
    "key in schema_version": {**VALID, "schema_version": SECRET},
    "key in revision": {**VALID, "revision": SECRET},
    "key in retracted": {**VALID, "retracted": SECRET},
    "key in occurred_at": {**VALID, "occurred_at": SECRET},
    "case key too long": {**VALID, "case_key": SECRET * 5},
    "case key with a space": {**VALID, "case_key": SECRET + " x"},
    "key in event_id with a space": {**VALID, "event_id": SECRET + " x"},
    "key in organisation": {**VALID, "organisation": SECRET},
    "identifier-shaped key in organisation": {**VALID, "organisation": SECRET_ID},
    "identifier-shaped key in milestone": {**VALID, "milestone": SECRET_ID},
    "identifier-shaped key in case_type": {**VALID, "case_type": SECRET_ID},
    "identifier-shaped key in district": {**VALID, "district": SECRET_ID},
    "identifier-shaped key in outcome": {
        **VALID, "organisation": "om", "milestone": "om_decision", "outcome": SECRET_ID,
    },
    "key as an outcome where none belongs": {**VALID, "outcome": SECRET_ID},
    "key as a second, unknown value of a duplicate field": {**VALID, "district": SECRET_ID},
    "key in a timestamp that is not a date": {**VALID, "occurred_at": "2025-01-01T" + SECRET},
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_detail_does_not_echo_the_input(name: str) -> None:
    raw = json.dumps(CASES[name]).encode()
    with pytest.raises(EventRejected) as info:
        parse_event(raw, CHAIN, topic_organisation=CASES[name]["organisation"]
                    if CASES[name].get("organisation") in CHAIN.partner_ids else "police")
    detail = info.value.detail
    assert SECRET.lower() not in detail.lower() and SECRET_ID not in detail, (name, detail)
    assert "424242" not in detail, (name, detail)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"case_key": "PN999-000424242", ',
        b"PN999-000424242",
        b'["PN999-000424242"]',
        b'\xef\xbb\xbf{"case_key": "PN999-000424242"}',
        b'{"case_key": "PN999-000424242", "revision": NaN}',
        b'{"case_key": "PN999-000424242", "revision": ' + b"9" * 5000 + b"}",
        b"[" * 5000 + b'"PN999-000424242"',
        b'{"case_key": "PN999-\xff000424242"}',
    ],
)
def test_broken_json_details_carry_positions_not_text(raw: bytes) -> None:
    with pytest.raises(EventRejected) as info:
        parse_event(raw, CHAIN)
    assert "424242" not in info.value.detail


def test_details_still_say_which_field_is_wrong() -> None:
    with pytest.raises(EventRejected) as info:
        parse_event(json.dumps({**VALID, "case_key": "has space"}).encode(), CHAIN)
    assert info.value.reason == "invalid_value"
    assert info.value.detail.startswith("case_key:")
