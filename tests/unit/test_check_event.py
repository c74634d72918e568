"""check_event (what publish and import-log check rows with) decides exactly as parse_event.

It skips building the pydantic model where the compiled path is sure; its verdict (accepted, or the
rejection reason and detail) and the fields a sender reads must still be parse_event's, on the same
seeded corpus of valid, mutated and random messages that tests/unit/test_compiled_contract.py uses.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from hypothesis import given, settings
from ketenmonitor.schemas.events import (
    REJECTION_REASONS,
    ChainEventV1,
    EventRejected,
    check_event,
    parse_event,
)

from tests.unit.contract_fuzz import CHAIN, corpus, messages

READ_BY_SENDERS = (
    "event_id",
    "case_key",
    "organisation",
    "milestone",
    "occurred_at",
    "case_type",
    "district",
)


def verdict(check: Any, raw: bytes, topic: str | None, now: float) -> tuple[Any, ...]:
    try:
        event = check(raw, CHAIN, topic, now)
    except EventRejected as exc:
        return ("rejected", exc.reason, exc.detail)
    return ("accepted", *(getattr(event, name) for name in READ_BY_SENDERS))


def test_a_seeded_corpus_gets_parse_events_verdict_and_fields_mostly_without_a_model():
    reasons: Counter[str] = Counter()
    models = 0
    for raw, topic, now in corpus(seed=20261130, size=20_000):
        expected = verdict(parse_event, raw, topic, now)
        assert verdict(check_event, raw, topic, now) == expected, (raw, topic)
        reasons[expected[1] if expected[0] == "rejected" else "accepted"] += 1
        if expected[0] == "accepted":
            models += isinstance(check_event(raw, CHAIN, topic, now), ChainEventV1)
    assert set(reasons) == {*REJECTION_REASONS, "accepted"}, reasons
    # Most accepted messages took the compiled path, which builds no model.
    assert models <= 0.2 * reasons["accepted"], (models, reasons)


@settings(max_examples=300, deadline=None)
@given(message=messages())
def test_fuzzed_messages_get_parse_events_verdict(message):
    raw, topic, now = message
    assert verdict(check_event, raw, topic, now) == verdict(parse_event, raw, topic, now)
