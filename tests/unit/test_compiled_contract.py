"""The compiled contract path (schemas/compiled.py) decides exactly as the pydantic contract.

parse_event tries the compiled path first and falls back to parse_event_reference, the contract as
the pydantic model states it. Both must give the same event (same values, same fields set) or the
same rejection reason and detail for every message: valid events, mutated events, random JSON and
bytes, and values near every boundary (tests/unit/contract_fuzz.py).
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from typing import Any

import pytest
from hypothesis import given, settings
from ketenmonitor.schemas import events
from ketenmonitor.schemas.events import (
    REJECTION_REASONS,
    EventRejected,
    parse_event,
    parse_event_reference,
)

from tests.unit.contract_fuzz import CHAIN, NOW, boundary_times, corpus, messages


def verdict(parse: Any, raw: bytes, topic: str | None, now: float) -> tuple[Any, ...]:
    try:
        event = parse(raw, CHAIN, topic, now)
    except EventRejected as exc:
        return ("rejected", exc.reason, exc.detail)
    at: datetime = event.occurred_at
    return (
        "accepted",
        event.model_dump(),
        event.model_dump(exclude_unset=True, mode="json"),
        event.model_fields_set,
        at.isoformat(),
        at.utcoffset(),
        at.timestamp(),
        type(event),
    )


def compiled_verdict(raw: bytes, topic: str | None, now: float) -> str:
    """'accepted' if the compiled path alone accepted the message, else 'referred'."""
    known = events._lookups_of(CHAIN)
    return "referred" if events._compiled.parse(raw, known, topic, now) is None else "accepted"


def test_a_seeded_corpus_gets_the_same_verdict_from_both_paths_and_covers_every_reason():
    reasons: Counter[str] = Counter()
    compiled = Counter()
    for raw, topic, now in corpus(seed=20261129, size=30_000):
        fast = verdict(parse_event, raw, topic, now)
        assert fast == verdict(parse_event_reference, raw, topic, now), (raw, topic)
        reasons[fast[1] if fast[0] == "rejected" else "accepted"] += 1
        compiled[compiled_verdict(raw, topic, now)] += 1
    # Every rejection reason occurred, so the equality above holds for each of them.
    assert set(reasons) == {*REJECTION_REASONS, "accepted"}, reasons
    assert all(n >= 20 for n in reasons.values()), reasons
    # The compiled path did the work for most accepted messages (the rest are lax forms).
    assert compiled["accepted"] >= 0.8 * reasons["accepted"], (compiled, reasons)


@settings(max_examples=500, deadline=None)
@given(message=messages())
def test_fuzzed_messages_get_the_same_verdict_from_both_paths(message):
    raw, topic, now = message
    assert verdict(parse_event, raw, topic, now) == verdict(parse_event_reference, raw, topic, now)


@pytest.mark.parametrize("occurred_at", boundary_times())
@pytest.mark.parametrize("milestone", ["om_intake", "om_decision"])
def test_both_time_limits_to_the_microsecond(occurred_at, milestone):
    event = {
        "schema_version": 1,
        "event_id": "e1",
        "case_key": "PN1",
        "organisation": "om",
        "milestone": milestone,
        "occurred_at": occurred_at,
        "case_type": "standard",
        "district": "amsterdam",
        **({"outcome": "summons"} if milestone == "om_decision" else {}),
    }
    raw = json.dumps(event).encode()
    assert verdict(parse_event, raw, "om", NOW) == verdict(parse_event_reference, raw, "om", NOW)


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        # The usual message is decided by the compiled path ...
        (
            b'{"schema_version":1,"event_id":"e1","case_key":"PN1","organisation":"om",'
            b'"milestone":"om_decision","occurred_at":"2026-03-02T10:15:00+01:00",'
            b'"case_type":"standard","district":"amsterdam","outcome":"summons"}',
            "accepted",
        ),
        # ... lax forms and anything msgspec would read differently are referred to pydantic.
        (
            b'{"schema_version":1,"event_id":"e1","case_key":"PN1","organisation":"om",'
            b'"milestone":"om_intake","occurred_at":"2026-03-02T10:15:00+01:00",'
            b'"case_type":"standard","district":"amsterdam","revision":"3"}',
            "referred",
        ),
        (
            b'{"schema_version":1,"event_id":"e1","case_key":"PN1","organisation":"om",'
            b'"milestone":"om_intake","occurred_at":"2026-03-02T10:15:00.1234567+01:00",'
            b'"case_type":"standard","district":"amsterdam"}',
            "referred",
        ),
        (
            b'{"schema_version":1,"event_id":"e1","case_key":"PN1\\n","organisation":"om",'
            b'"milestone":"om_intake","occurred_at":"2026-03-02T10:15:00+01:00",'
            b'"case_type":"standard","district":"amsterdam"}',
            "referred",
        ),
    ],
)
def test_which_path_decides(raw, path):
    assert compiled_verdict(raw, "om", NOW) == path
    assert verdict(parse_event, raw, "om", NOW) == verdict(parse_event_reference, raw, "om", NOW)


def test_seven_fraction_digits_would_differ_so_they_are_referred():
    # The reason for the look at fractions: msgspec rounds, pydantic truncates.
    raw = json.dumps(
        {
            "schema_version": 1,
            "event_id": "e1",
            "case_key": "PN1",
            "organisation": "om",
            "milestone": "om_intake",
            "occurred_at": "2026-03-02T10:15:00.9999995+00:00",
            "case_type": "standard",
            "district": "amsterdam",
        }
    ).encode()
    event = parse_event(raw, CHAIN, "om", NOW)
    assert event.occurred_at.microsecond == 999_999 and event.occurred_at.second == 0
