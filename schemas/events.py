"""The event contract between chain partners and Ketenmonitor, version 1.

    event = parse_event(raw_bytes, chain, topic_organisation="police")   # or raises EventRejected

A chain event says that one case reached one milestone at one moment. It carries timestamps,
milestones and coarse categories only: unknown fields are rejected, so there is no place for names,
BSNs or free text. Partners send their case key (the chain-wide case number); Ketenmonitor replaces it
by a keyed pseudonym at ingest and never keeps the key itself.

Corrections: a partner that reported a milestone with a wrong time re-sends the milestone with a new
event_id and a higher `revision`; to withdraw a milestone it sends `retracted: true` with a higher
revision. The highest revision wins, whatever the arrival order.

The JSON Schema published to partners (schemas/json/) is generated from `ChainEventV1`
(`python -m schemas.generate`); a test keeps it current.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator

from ketenmonitor.domain.chain import Chain

SCHEMA_VERSION = 1
MAX_CLOCK_SKEW = timedelta(hours=1)
EARLIEST_EVENT_TIME = datetime(2000, 1, 1, tzinfo=UTC)
IDENTIFIER = r"^[a-z][a-z0-9_]*$"


class ChainEventV1(BaseModel):
    """One milestone of one case, as a partner publishes it (JSON, UTF-8)."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        title="Ketenmonitor chain event, version 1",
        json_schema_extra={"$id": "https://ketenmonitor.example/schemas/chain-event.v1.json"},
    )

    schema_version: Literal[1] = Field(description="Version of this contract; always 1.")
    event_id: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9._:-]+$",
        description="Unique id of this event at the partner; re-delivery with the same id is ignored.",
    )
    case_key: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9._:/-]+$",
        description="Chain-wide case key (e.g. parketnummer/SKN). Pseudonymised at ingest; never stored.",
    )
    organisation: str = Field(pattern=IDENTIFIER, description="Partner id, e.g. police, om, courts, cjib.")
    milestone: str = Field(pattern=IDENTIFIER, description="Milestone id from the chain definition.")
    occurred_at: AwareDatetime = Field(
        description="When the milestone happened (event time), ISO 8601 with a UTC offset."
    )
    case_type: str = Field(pattern=IDENTIFIER, description="Coarse case category from the chain definition.")
    district: str = Field(pattern=IDENTIFIER, description="Arrondissement id from the chain definition.")
    outcome: str | None = Field(
        default=None,
        pattern=IDENTIFIER,
        description="Outcome, required for milestones that have outcomes (e.g. om_decision), else absent.",
    )
    revision: int = Field(
        default=0, ge=0, le=1_000_000, description="Correction number; the highest revision wins."
    )
    retracted: bool = Field(
        default=False, description="True withdraws the milestone (with a higher revision)."
    )

    @field_validator("occurred_at")
    @classmethod
    def _not_in_far_past_or_future(cls, value: datetime) -> datetime:
        if value < EARLIEST_EVENT_TIME:
            raise ValueError(f"occurred_at before {EARLIEST_EVENT_TIME.date()} is implausible")
        if value > datetime.now(UTC) + MAX_CLOCK_SKEW:
            raise ValueError("occurred_at lies in the future")
        return value


ChainEvent = ChainEventV1

# Rejection reasons: a bounded set, used as a metric label and dead-letter header.
REJECTION_REASONS = (
    "not_utf8",
    "not_json",
    "not_an_object",
    "unsupported_schema_version",
    "missing_field",
    "unknown_field",
    "wrong_type",
    "invalid_value",
    "naive_timestamp",
    "future_timestamp",
    "unknown_organisation",
    "organisation_mismatch",
    "unknown_milestone",
    "unknown_case_type",
    "unknown_district",
    "invalid_outcome",
)


class EventRejected(ValueError):
    """An event that breaks the contract. `reason` is one of REJECTION_REASONS.

    `detail` goes into the dead-letter headers and may be shown to operators and partners: it names
    fields and values of the chain definition, never a value (or unknown field name) from the
    input, which may be a case key or other personal data (tests/integration/test_privacy_scan.py).
    """

    def __init__(self, reason: str, detail: str) -> None:
        assert reason in REJECTION_REASONS, reason
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


_PYDANTIC_REASONS = {
    "missing": "missing_field",
    "extra_forbidden": "unknown_field",
    "timezone_aware": "naive_timestamp",
    "literal_error": "unsupported_schema_version",
}


def _reason_for(exc: ValidationError) -> tuple[str, str]:
    """The rejection reason of the first validation error, and a detail naming the field.

    pydantic's `msg` describes the rule, not the input (that is in `input`, which is never used).
    The location of an unknown field is the input's own key, so it is not echoed either.
    """
    err = exc.errors(include_url=False)[0]
    kind = err["type"]
    if kind == "extra_forbidden":
        field = "<unknown field>"
    else:
        field = ".".join(str(p) for p in err["loc"] if p in ChainEventV1.model_fields) or "<event>"
    detail = f"{field}: {err['msg']}"
    if kind in _PYDANTIC_REASONS:
        return _PYDANTIC_REASONS[kind], detail
    if kind == "value_error" and "future" in err["msg"]:
        return "future_timestamp", detail
    if kind.endswith(("_type", "_parsing")):
        return "wrong_type", detail
    return "invalid_value", detail


def parse_event(raw: bytes, chain: Chain, topic_organisation: str | None = None) -> ChainEventV1:
    """Decode and validate one event against the contract and the chain definition.

    `topic_organisation` is the partner whose topic the event came from: a partner can only report
    its own milestones.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EventRejected("not_utf8", f"byte {exc.start} is not UTF-8") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:  # msg and position only: exc.doc is the input
        raise EventRejected(
            "not_json", f"{exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except ValueError:  # e.g. a number too long to convert
        raise EventRejected("not_json", "not valid JSON") from None
    if not isinstance(data, dict):
        raise EventRejected("not_an_object", f"expected a JSON object, got {type(data).__name__}")
    if data.get("schema_version") != SCHEMA_VERSION and "schema_version" in data:
        raise EventRejected("unsupported_schema_version", f"schema_version is not {SCHEMA_VERSION}")
    try:
        event = ChainEventV1.model_validate(data)
    except ValidationError as exc:
        reason, detail = _reason_for(exc)
        raise EventRejected(reason, detail) from None
    check_against_chain(event, chain, topic_organisation)
    return event


def check_against_chain(
    event: ChainEventV1, chain: Chain, topic_organisation: str | None = None
) -> None:
    # Details name only what the chain definition knows, never an unknown input value.
    if event.organisation not in chain.partner_ids:
        raise EventRejected("unknown_organisation", "organisation is not a partner of the chain")
    if topic_organisation is not None and event.organisation != topic_organisation:
        raise EventRejected(
            "organisation_mismatch",
            f"event of {event.organisation!r} on the topic of {topic_organisation!r}",
        )
    milestone = chain.milestones.get(event.milestone)
    if milestone is None:
        raise EventRejected(
            "unknown_milestone", "milestone is not in the chain definition"
        )
    if milestone.organisation != event.organisation:
        raise EventRejected(
            "unknown_milestone",
            f"milestone {event.milestone!r} belongs to {milestone.organisation!r}, "
            f"not {event.organisation!r}",
        )
    if event.case_type not in chain.spec.case_types:
        raise EventRejected("unknown_case_type", "case_type is not in the chain definition")
    if event.district not in chain.spec.districts:
        raise EventRejected("unknown_district", "district is not in the chain definition")
    if event.retracted:
        return
    if milestone.outcomes:
        if event.outcome not in milestone.outcomes:
            got = "none" if event.outcome is None else "another value"
            raise EventRejected(
                "invalid_outcome",
                f"{event.milestone!r} needs an outcome of {sorted(milestone.outcomes)}, got {got}",
            )
    elif event.outcome is not None:
        raise EventRejected("invalid_outcome", f"{event.milestone!r} has no outcomes")
