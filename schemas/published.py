"""What partners are given: the JSON Schema of a chain event and an AsyncAPI 3.0 document.

    schema = chain_event_schema(load_chain())      # JSON Schema 2020-12, as a dict
    document = asyncapi_document(load_chain())     # AsyncAPI 3.0.0, as a dict

Both are generated (`python -m ketenmonitor.schemas.generate`) from the one definition of the
contract: the
pydantic model ChainEventV1 for fields, types and formats, and the chain definition for the values
the contract checks against it (organisations, milestones per organisation, outcomes per
milestone, case types, districts). tests/unit/test_published_schema.py runs fuzzed messages
through the JSON Schema and through parse_event and requires the same decision wherever JSON
Schema can express the rule; what it cannot express is said in the schema's descriptions and
listed in that test.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from ketenmonitor.schemas.events import (
    EARLIEST_EVENT_TIME,
    MAX_CLOCK_SKEW,
    REJECTION_REASONS,
    SCHEMA_VERSION,
    ChainEventV1,
)

from ketenmonitor.domain.chain import Chain

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
# occurred_at as RFC 3339 with an offset, from the earliest year on. The calendar (30 February)
# is left to `format: date-time`, which validators assert only when asked to.
TIME_PATTERN = (
    r"^(2[0-9]{3}|[3-9][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"[Tt]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)?"
    r"([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)
assert EARLIEST_EVENT_TIME.isoformat() == "2000-01-01T00:00:00+00:00"  # TIME_PATTERN's year
EXAMPLE_EVENT: dict[str, Any] = {
    "schema_version": SCHEMA_VERSION,
    "event_id": "om-2026-000123",
    "case_key": "PN13-123456-26",
    "organisation": "om",
    "milestone": "om_decision",
    "occurred_at": "2026-03-02T10:15:00+01:00",
    "case_type": "youth",
    "district": "rotterdam",
    "outcome": "summons",
}
SKEW_MINUTES = int(MAX_CLOCK_SKEW.total_seconds() // 60)
NOT_EXPRESSIBLE = (
    "Checked by the monitor but not expressible in JSON Schema: occurred_at must not lie more "
    f"than {SKEW_MINUTES} minutes (the allowed clock skew) after the moment the monitor receives "
    f"the event, nor before {EARLIEST_EVENT_TIME.isoformat()} (this schema checks the year only); "
    "and on a partner's topic only that partner's events are accepted (the AsyncAPI document "
    "fixes `organisation` per topic). The monitor also accepts some looser spellings of valid "
    "values (e.g. a revision as a numeric string, occurred_at without seconds); send the forms "
    "this schema describes."
)


def chain_event_schema(chain: Chain) -> dict[str, Any]:
    """The JSON Schema of ChainEventV1, with the chain's identifiers as enums and its rules."""
    schema = ChainEventV1.model_json_schema()
    props = schema["properties"]
    milestones = chain.milestones
    props["organisation"]["enum"] = list(chain.partner_ids)
    props["milestone"]["enum"] = list(milestones)
    props["case_type"]["enum"] = list(chain.spec.case_types)
    props["district"]["enum"] = list(chain.spec.districts)
    props["occurred_at"]["pattern"] = TIME_PATTERN
    props["occurred_at"]["description"] += (
        f" Not before {EARLIEST_EVENT_TIME.isoformat()}, at most {SKEW_MINUTES} minutes ahead of "
        "the monitor's clock (checked by the monitor only)."
    )
    outcomes = {name: sorted(m.outcomes) for name, m in milestones.items() if m.outcomes}
    props["outcome"]["description"] = (
        "Required for milestones with outcomes, absent (or null) for the others; "
        "a retraction (retracted: true) needs none. "
        + "; ".join(f"{name}: {', '.join(values)}" for name, values in outcomes.items())
        + "."
    )
    rules: list[dict[str, Any]] = []
    for partner in chain.partner_ids:
        own = [name for name, m in milestones.items() if m.organisation == partner]
        rules.append(
            {
                "if": {"properties": {"organisation": {"const": partner}}},
                "then": {"properties": {"milestone": {"enum": own}}},
            }
        )
    for name, m in milestones.items():
        # Unless retracted (absent means false), a milestone with outcomes needs one of its own,
        # and one without outcomes takes none.
        condition = {
            "properties": {"milestone": {"const": name}, "retracted": {"const": False}},
            "required": ["milestone"],
        }
        if m.outcomes:
            then = {
                "required": ["outcome"],
                "properties": {"outcome": {"enum": sorted(m.outcomes)}},
            }
        else:
            then = {"properties": {"outcome": {"type": "null"}}}
        rules.append({"if": condition, "then": then})
    schema["allOf"] = rules
    schema["description"] += " " + NOT_EXPRESSIBLE
    schema["examples"] = [EXAMPLE_EVENT]
    return {"$schema": JSON_SCHEMA_DIALECT, **schema}


# -- AsyncAPI -------------------------------------------------------------------------------
KAFKA_BINDING_VERSION = "0.5.0"
TOPIC_PREFIX = "ketenmonitor"  # Settings.topic_prefix's default (KETENMONITOR_TOPIC_PREFIX)
PARTITIONS = 6  # Settings.partitions' default (KETENMONITOR_PARTITIONS)


def _payload(schema: dict[str, Any]) -> dict[str, Any]:
    """The JSON Schema as an AsyncAPI Schema Object (draft-07 based: no $schema, no $id)."""
    payload = copy.deepcopy(schema)
    for key in ("$schema", "$id"):
        payload.pop(key, None)
    return payload


def asyncapi_document(chain: Chain) -> dict[str, Any]:
    """AsyncAPI 3.0.0: a topic per partner (send), the dead-letter topic (receive, operators)."""
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for partner in chain.partner_ids:
        topic = f"{TOPIC_PREFIX}.events.{partner}"
        channel_id = f"events_{partner}"
        message_id = f"chainEvent_{partner}"
        example = {**EXAMPLE_EVENT} if partner == EXAMPLE_EVENT["organisation"] else None
        messages[message_id] = {
            "name": message_id,
            "title": f"Chain event of {partner}",
            "summary": f"One milestone of one case, reported by {partner}.",
            "contentType": "application/json",
            "payload": {
                "allOf": [
                    {"$ref": "#/components/schemas/ChainEventV1"},
                    {"properties": {"organisation": {"const": partner}}},
                ]
            },
            "bindings": {
                "kafka": {
                    "key": {
                        "type": "string",
                        "description": (
                            "The case_key (UTF-8) for a partner that keys by case: Kafka's "
                            "default partitioner (murmur2; librdkafka: partitioner="
                            "murmur2_random) then puts the event in its case's partition and the "
                            "monitor applies it there (one hop, docs/partners.md). Otherwise the "
                            "event_id; the monitor re-keys such events itself."
                        ),
                    },
                    "bindingVersion": KAFKA_BINDING_VERSION,
                }
            },
            **({"examples": [{"name": "om_decision", "payload": example}]} if example else {}),
        }
        channels[channel_id] = {
            "address": topic,
            "title": f"Events of {partner}",
            "description": (
                f"Only {partner} writes here (ACLs generated from the chain definition). Topic "
                "names are `<prefix>.events.<partner>` with the prefix KETENMONITOR_TOPIC_PREFIX "
                f"(default {TOPIC_PREFIX}). Invalid events are copied to the dead-letter topic."
            ),
            "messages": {"chainEvent": {"$ref": f"#/components/messages/{message_id}"}},
            "bindings": {
                "kafka": {
                    "topic": topic,
                    "partitions": PARTITIONS,
                    "bindingVersion": KAFKA_BINDING_VERSION,
                }
            },
        }
        operations[f"publish_{partner}"] = {
            "action": "send",
            "title": f"{partner} publishes its events",
            "summary": "Idempotent producer, acks=all (ketenmonitor publish / import-log).",
            "channel": {"$ref": f"#/channels/{channel_id}"},
            "messages": [{"$ref": f"#/channels/{channel_id}/messages/chainEvent"}],
        }
    dead_letter = f"{TOPIC_PREFIX}.dead-letter"
    messages["rejectedEvent"] = {
        "name": "rejectedEvent",
        "title": "Rejected partner message",
        "summary": "A partner message that broke the contract, byte for byte, with why.",
        "description": (
            "The value is the original message (any bytes, possibly not JSON); the record has no "
            "key and goes to partition 0. Only operators may read this topic: a rejected "
            "message can hold anything a partner sent."
        ),
        "contentType": "application/octet-stream",
        "headers": {
            "type": "object",
            "required": ["reason", "detail", "source"],
            "properties": {
                "reason": {
                    "type": "string",
                    "enum": list(REJECTION_REASONS),
                    "description": "Why (UTF-8); also the `reason` label of "
                    "ketenmonitor_events_rejected_total.",
                },
                "detail": {
                    "type": "string",
                    "description": "Which field and which rule (UTF-8); never a value from the "
                    "message.",
                },
                "source": {
                    "type": "string",
                    "pattern": r"^.+/[0-9]+/[0-9]+$",
                    "description": "topic/partition/offset of the original message (UTF-8).",
                },
            },
        },
        "payload": {"type": "string", "description": "The original bytes."},
    }
    channels["deadLetter"] = {
        "address": dead_letter,
        "title": "Dead letters",
        "description": "Messages the monitor rejected, with reason, detail and source headers.",
        "messages": {"rejectedEvent": {"$ref": "#/components/messages/rejectedEvent"}},
        "bindings": {
            "kafka": {
                "topic": dead_letter,
                "partitions": 1,
                "bindingVersion": KAFKA_BINDING_VERSION,
            }
        },
    }
    operations["readDeadLetters"] = {
        "action": "receive",
        "title": "Operators read rejected messages",
        "channel": {"$ref": "#/channels/deadLetter"},
        "messages": [{"$ref": "#/channels/deadLetter/messages/rejectedEvent"}],
    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Ketenmonitor partner topics",
            "version": f"{SCHEMA_VERSION}.0.0",
            "description": (
                "How chain partners publish case events to Ketenmonitor, and how rejected events "
                "come back. Generated by `python -m ketenmonitor.schemas.generate` from the "
                "contract "
                "(schemas/events.py) and the chain definition; the payload schema is "
                "schemas/json/chain-event.v1.schema.json."
            ),
            "license": {"name": "EUPL-1.2"},
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {
            "schemas": {"ChainEventV1": _payload(chain_event_schema(chain))},
            "messages": messages,
        },
    }


# -- docs/partners.md ---------------------------------------------------------------------------
DOC_BEGIN = "<!-- generated by python -m ketenmonitor.schemas.generate: valid values -->"
DOC_END = "<!-- end of generated valid values -->"


def partner_doc_section(chain: Chain) -> str:
    """The valid values and the example event, as docs/partners.md shows them (between markers)."""
    lines = [
        DOC_BEGIN,
        "| organisation | milestones (chain order) and their outcomes |",
        "|---|---|",
    ]
    for partner in chain.partner_ids:
        own = [
            f"`{name}`"
            + (f" ({', '.join(f'`{o}`' for o in sorted(m.outcomes))})" if m.outcomes else "")
            for name, m in chain.milestones.items()
            if m.organisation == partner
        ]
        lines.append(f"| `{partner}` | {', '.join(own)} |")
    lines += [
        "",
        "- `case_type`: " + ", ".join(f"`{c}`" for c in chain.spec.case_types),
        "- `district`: " + ", ".join(f"`{d}`" for d in chain.spec.districts),
        "- rejection reasons (dead-letter header `reason`): "
        + ", ".join(f"`{r}`" for r in REJECTION_REASONS),
        "",
        "An example event (valid; the tests check it against the contract and the schema):",
        "",
        "```json",
        json.dumps(EXAMPLE_EVENT, indent=2),
        "```",
        DOC_END,
    ]
    return "\n".join(lines)


def with_doc_section(text: str, chain: Chain) -> str:
    """`text` (docs/partners.md) with its generated section replaced."""
    start, end = text.index(DOC_BEGIN), text.index(DOC_END) + len(DOC_END)
    return text[:start] + partner_doc_section(chain) + text[end:]
