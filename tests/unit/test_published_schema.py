"""The published JSON Schema and AsyncAPI document say what the contract enforces.

The same fuzzed messages (tests/unit/contract_fuzz.py) go through the JSON Schema (the jsonschema
library, formats asserted) and through parse_event; the decisions must be equal, except where JSON
Schema cannot express the rule. Those exceptions are exactly these, each also stated in the
schema's description, and each must be the whole explanation of a difference:

- CLOCK_SKEW: an occurred_at more than the allowed skew ahead of the monitor's clock (the schema
  has no clock): the contract rejects it (future_timestamp), the schema accepts it.
- EARLIEST_TIME: an occurred_at on 1 January 2000 local time with a positive offset that is still
  before 2000-01-01T00:00Z: the schema's pattern checks the year only.
- LAX_FORM: the contract (pydantic's lax mode) also accepts looser spellings of valid values that
  the schema refuses: schema_version `true` or `1.0`, revision as a numeric string, retracted as a
  string or number, occurred_at as Unix seconds or in a non-RFC-3339 form (a space for T, no
  seconds, `+0100`, a comma). Partners are told to send the strict forms.
- NOT_JSON: bytes that are not JSON in UTF-8 are outside any schema; both sides reject them.

On a partner's topic the AsyncAPI document fixes `organisation` to that partner, which is how the
contract's organisation_mismatch is expressed; that is checked with the topic given.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from jsonschema import Draft7Validator, Draft202012Validator, FormatChecker, ValidationError
from ketenmonitor.schemas.events import (
    REJECTION_REASONS,
    ChainEventV1,
    EventRejected,
    parse_event,
)
from ketenmonitor.schemas.generate import (
    ASYNCAPI_FILE,
    PARTNER_DOC,
    SCHEMA_DIR,
    render_asyncapi,
    render_partner_doc,
)
from ketenmonitor.schemas.published import DOC_BEGIN, DOC_END, EXAMPLE_EVENT, TIME_PATTERN
from ketenmonitor.streams.processing import Rejected

from tests.unit.contract_fuzz import CHAIN, NOW, corpus, messages

DATA = Path(__file__).resolve().parent.parent / "data" / "asyncapi"
SCHEMA = json.loads((SCHEMA_DIR / "chain-event.v1.schema.json").read_text())
ASYNCAPI = yaml.safe_load(ASYNCAPI_FILE.read_text())
_TIME = re.compile(TIME_PATTERN[1:-1]).fullmatch


def _ecma_pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Any:
    # JSON Schema patterns are ECMA-262, where `$` is the very end; in Python's re it also
    # matches before a final "\n" (jsonschema uses re.search), which would accept "PN1\n".
    if validator.is_type(instance, "string"):
        python = pattern[:-1] + r"\Z" if pattern.endswith("$") else pattern
        if not re.search(python, instance):
            yield ValidationError(f"does not match {pattern!r}")


def _validator(base: Any, schema: dict[str, Any]) -> Any:
    cls = jsonschema.validators.extend(base, {"pattern": _ecma_pattern})
    return cls(schema, format_checker=FormatChecker())


SCHEMA_VALIDATOR = _validator(Draft202012Validator, SCHEMA)


def channel_validator(partner: str) -> Any:
    """The payload of the partner's channel in the AsyncAPI document (an AsyncAPI schema)."""
    root = {
        "$ref": f"#/components/messages/chainEvent_{partner}/payload",
        "components": ASYNCAPI["components"],
    }
    return _validator(Draft7Validator, root)


CHANNELS = {partner: channel_validator(partner) for partner in CHAIN.partner_ids}


def contract(raw: bytes, topic: str | None) -> str:
    try:
        parse_event(raw, CHAIN, topic, NOW)
    except EventRejected as exc:
        return exc.reason
    return "accepted"


def lax_form(data: dict[str, Any]) -> bool:
    """Whether a message the contract accepted uses a spelling the schema does not allow."""
    version, revision = data.get("schema_version"), data.get("revision", 0)
    return (
        type(version) is not int
        or not (type(revision) is int or (type(revision) is float and revision.is_integer()))
        or type(data.get("retracted", False)) is not bool
        or not (isinstance(data.get("occurred_at"), str) and _TIME(data["occurred_at"]))
    )


def difference(raw: bytes, topic: str | None) -> tuple[str, str, str | None]:
    """(contract verdict, schema verdict, the documented exception that explains a difference)."""
    verdict = contract(raw, topic)
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        assert verdict in ("not_utf8", "not_json"), (raw, verdict)
        return verdict, "not JSON", "NOT_JSON"
    validator = SCHEMA_VALIDATOR if topic is None else CHANNELS[topic]
    schema = "accepted" if validator.is_valid(data) else "rejected"
    if (verdict == "accepted") == (schema == "accepted"):
        return verdict, schema, None
    if verdict == "future_timestamp":
        return verdict, schema, "CLOCK_SKEW"
    if verdict == "invalid_value" and str(data.get("occurred_at", "")).startswith("2000-01-01"):
        return verdict, schema, "EARLIEST_TIME"
    if verdict == "accepted" and lax_form(data):
        return verdict, schema, "LAX_FORM"
    raise AssertionError(f"undocumented difference: contract {verdict}, schema {schema}: {raw!r}")


@pytest.mark.parametrize("topics", ["no topic", "partner topics"])
def test_schema_and_contract_decide_alike_on_a_seeded_corpus(topics):
    reasons: Counter[str] = Counter()
    explained: Counter[str | None] = Counter()
    for raw, topic, _ in corpus(seed=2026_11_30, size=5_000):
        verdict, _schema, why = difference(raw, None if topics == "no topic" else topic)
        reasons[verdict] += 1
        explained[why] += 1
    # Every documented exception occurred (the list is not a guess) and none other: difference()
    # raised on anything else. Every reason was judged by both, most of them alike.
    assert set(explained) == {None, "CLOCK_SKEW", "EARLIEST_TIME", "LAX_FORM", "NOT_JSON"}, (
        explained
    )
    expected = set(REJECTION_REASONS) - (
        {"organisation_mismatch"} if topics == "no topic" else set()
    )
    assert set(reasons) == {*expected, "accepted"}, reasons
    assert explained[None] > 0.7 * sum(explained.values()), explained


@pytest.mark.parametrize("with_topic", [False, True])
def test_schema_and_contract_decide_alike_on_fuzzed_messages(with_topic):
    from hypothesis import given, settings

    @settings(max_examples=300, deadline=None)
    @given(message=messages())
    def check(message):
        raw, topic, _ = message
        difference(raw, topic if with_topic else None)  # raises on an undocumented difference

    check()


def test_format_checking_is_live():
    # Without rfc3339-validator installed, jsonschema would silently pass every date-time.
    event = {**EXAMPLE_EVENT, "occurred_at": "2026-02-30T10:15:00+01:00"}
    assert not SCHEMA_VALIDATOR.is_valid(event)
    assert contract(json.dumps(event).encode(), "om") == "wrong_type"


def test_the_example_event_is_valid_everywhere():
    raw = json.dumps(EXAMPLE_EVENT).encode()
    assert parse_event(raw, CHAIN, "om", NOW).model_dump(exclude_unset=True) == {
        **EXAMPLE_EVENT,
        "occurred_at": ChainEventV1.model_validate(EXAMPLE_EVENT).occurred_at,
    }
    assert SCHEMA["examples"] == [EXAMPLE_EVENT]
    SCHEMA_VALIDATOR.validate(EXAMPLE_EVENT)
    CHANNELS["om"].validate(EXAMPLE_EVENT)
    assert not CHANNELS["police"].is_valid(EXAMPLE_EVENT)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"organisation": "tax_office"}, "unknown_organisation"),
        ({"milestone": "verdict_by_tv"}, "unknown_milestone"),
        ({"milestone": "court_intake", "outcome": None}, "unknown_milestone"),
        ({"case_type": "murder"}, "unknown_case_type"),
        ({"district": "atlantis"}, "unknown_district"),
        ({"outcome": None}, "invalid_outcome"),
        ({"outcome": "paid"}, "invalid_outcome"),
        ({"milestone": "om_intake"}, "invalid_outcome"),
        ({"revision": "2"}, "accepted"),  # a lax form: accepted, but not by the schema
    ],
)
def test_what_issue_20_found_the_schema_accepting_is_now_refused(change, reason):
    event = {k: v for k, v in {**EXAMPLE_EVENT, **change}.items() if v is not None}
    assert contract(json.dumps(event).encode(), None) == reason
    assert not SCHEMA_VALIDATOR.is_valid(event)


def test_a_retraction_needs_no_outcome_in_the_schema_either():
    event = {k: v for k, v in EXAMPLE_EVENT.items() if k != "outcome"}
    retraction = {**event, "revision": 1, "retracted": True}
    assert contract(json.dumps(retraction).encode(), "om") == "accepted"
    SCHEMA_VALIDATOR.validate(retraction)
    assert not SCHEMA_VALIDATOR.is_valid({**event, "retracted": False})


def test_the_schema_lists_the_chain_and_says_what_it_cannot_express():
    props = SCHEMA["properties"]
    assert props["organisation"]["enum"] == list(CHAIN.partner_ids)
    assert props["milestone"]["enum"] == list(CHAIN.milestones)
    assert props["case_type"]["enum"] == list(CHAIN.spec.case_types)
    assert props["district"]["enum"] == list(CHAIN.spec.districts)
    assert props["revision"]["type"] == "integer"
    assert "clock skew" in SCHEMA["description"] and "not expressible" in SCHEMA["description"]


# -- AsyncAPI -------------------------------------------------------------------------------------
def test_the_asyncapi_document_is_current():
    assert ASYNCAPI_FILE.read_text() == render_asyncapi(), (
        "run python -m ketenmonitor.schemas.generate"
    )


def test_the_asyncapi_document_is_valid_asyncapi_3():
    spec = json.loads((DATA / "asyncapi-3.0.0-without-id.schema.json").read_text())
    Draft7Validator(spec).validate(ASYNCAPI)
    broken = {**ASYNCAPI, "channels": {"x": {"address": 5}}}
    assert not Draft7Validator(spec).is_valid(broken)  # the check can fail


def test_asyncapi_payload_is_the_published_json_schema():
    payload = ASYNCAPI["components"]["schemas"]["ChainEventV1"]
    assert payload == {k: v for k, v in SCHEMA.items() if k not in ("$schema", "$id")}
    topics = {c["address"] for c in ASYNCAPI["channels"].values()}
    assert topics == {f"ketenmonitor.events.{p}" for p in CHAIN.partner_ids} | {
        "ketenmonitor.dead-letter"
    }


def test_dead_letter_headers_as_the_worker_writes_them_match_the_document():
    headers_schema = ASYNCAPI["components"]["messages"]["rejectedEvent"]["headers"]
    assert headers_schema["properties"]["reason"]["enum"] == list(REJECTION_REASONS)
    validator = Draft7Validator(headers_schema)
    try:
        parse_event(b'{"schema_version": 1}', CHAIN, "om", NOW)
    except EventRejected as exc:
        rejected = Rejected(exc.reason, exc.detail)
    headers = rejected.dead_letter_headers("ketenmonitor.events.om", 3, 1234)
    as_object = {name: value.decode() for name, value in headers}
    validator.validate(as_object)
    assert set(as_object) == set(headers_schema["required"])


def test_the_partner_doc_shows_the_generated_values_and_a_valid_example():
    doc = PARTNER_DOC.read_text()
    assert doc == render_partner_doc(), "run python -m ketenmonitor.schemas.generate"
    example = doc[doc.index("```json", doc.index(DOC_BEGIN)) + 7 : doc.index("```\n" + DOC_END)]
    assert parse_event(example.encode(), CHAIN, "om", NOW).milestone == "om_decision"
    for partner in CHAIN.partner_ids:
        assert f"| `{partner}` |" in doc
