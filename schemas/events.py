"""The event contract between chain partners and Ketenmonitor, version 1.

    event = parse_event(raw_bytes, chain, topic_organisation="police")   # or raises EventRejected
    event = parse_event(raw_bytes, chain, "police", now=time.time())     # one clock read per batch

A chain event says that one case reached one milestone at one moment. It carries timestamps,
milestones and coarse categories only: unknown fields are rejected, so there is no place for
names, BSNs or free text. Partners send their case key (the chain-wide case number); Ketenmonitor
replaces it by a keyed pseudonym at ingest and never keeps the key itself.

Occurrences: a milestone can happen more than once in a case (an adjourned hearing held again, an
instalment paid, a case back at an earlier partner). Each time is an occurrence, named by the
optional `occurrence` id (any id unique within the case and milestone, e.g. the partner's own
hearing number). An event without `occurrence` reports the milestone's default occurrence, so a
partner that never repeats a milestone need not send it.

Corrections: a partner that reported a milestone with a wrong time re-sends it with a new event_id,
the same `occurrence` (or none, for the default one) and a higher `revision`; to withdraw it, it
sends `retracted: true` with a higher revision. A correction addresses one occurrence; per
occurrence the highest revision wins, whatever the arrival order.

Plausible times: an event may lie at most MAX_CLOCK_SKEW in the future and not before the chain's
`earliest_event_time` (chain.yaml; default 2000-01-01T00:00:00Z).

The JSON Schema published to partners (schemas/json/) is generated from `ChainEventV1`
(`python -m ketenmonitor.schemas.generate`); a test keeps it current.

Speed: parse_event runs once per partner message (a year's replay is ~50M of them). It first
tries the compiled path (schemas/compiled.py: msgspec decodes the bytes, the chain is checked
against look-ups built once per chain), which returns an event only when it is sure the contract
accepts it with exactly those values. Everything else (invalid, or valid in one of pydantic's lax
forms) goes through `parse_event_reference`: pydantic-core validates the bytes, and a message that
fails takes the step-by-step path (UTF-8, JSON, object, schema version, fields) that decides the
rejection reason and detail. So reasons never depend on which path saw the message first;
tests/unit/test_compiled_contract.py fuzzes both paths against each other.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from weakref import WeakKeyDictionary

from ketenmonitor.schemas.compiled import CompiledContract
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from ketenmonitor.domain.chain import (
    DEFAULT_EARLIEST_EVENT_TIME,
    IDENTIFIER,
    SECONDS_PER_DAY,
    Chain,
    Milestone,
)

SCHEMA_VERSION = 1
MAX_CLOCK_SKEW = timedelta(hours=1)
EARLIEST_EVENT_TIME = DEFAULT_EARLIEST_EVENT_TIME  # the default; a chain file may set another
# The same bounds in Unix seconds: comparing two aware datetimes asks both for their UTC offset,
# which for pydantic's own tzinfo is a slow Python-level call.
_EARLIEST_SECONDS = EARLIEST_EVENT_TIME.timestamp()
_MAX_SKEW_SECONDS = MAX_CLOCK_SKEW.total_seconds()


def _safe_year(earliest_seconds: float) -> int:
    """The first year whose every local date lies after the earliest time, whatever the offset.

    A UTC offset is under a day: a local date from 1 January of this year on is at least a day
    after the UTC date of the earliest time.
    """
    return (datetime.fromtimestamp(earliest_seconds, UTC) + timedelta(days=1)).year + 1


def _earliest_text(earliest_seconds: float) -> str:
    moment = datetime.fromtimestamp(earliest_seconds, UTC)
    return str(moment.date()) if moment.time() == datetime.min.time() else moment.isoformat()


_DEFAULT_SAFE_YEAR = _safe_year(_EARLIEST_SECONDS)
_EPOCH_ORDINAL = datetime(1970, 1, 1).toordinal()
_IDENTIFIER = re.compile(IDENTIFIER[1:-1]).fullmatch  # fullmatch: `$` would allow a final "\n"


class ChainEventV1(BaseModel):
    """One milestone of one case, as a partner publishes it (JSON, UTF-8)."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        title="Ketenmonitor chain event, version 1",
        json_schema_extra={"$id": "https://ketenmonitor.example/schemas/chain-event.v1.json"},
        # Caching the field names saves time; caching values (ids, keys) would only miss.
        cache_strings="keys",
    )

    schema_version: Literal[1] = Field(description="Version of this contract; always 1.")
    event_id: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9._:-]+$",
        description=(
            "Unique id of this event at the partner; re-delivery with the same id is ignored."
        ),
    )
    case_key: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9._:/-]+$",
        description=(
            "Chain-wide case key (e.g. parketnummer/SKN). Pseudonymised at ingest; never stored."
        ),
    )
    organisation: str = Field(
        pattern=IDENTIFIER, description="Partner id, e.g. police, om, courts, cjib."
    )
    milestone: str = Field(
        pattern=IDENTIFIER, description="Milestone id from the chain definition."
    )
    occurred_at: AwareDatetime = Field(
        description="When the milestone happened (event time), ISO 8601 with a UTC offset."
    )
    case_type: str = Field(
        pattern=IDENTIFIER, description="Coarse case category from the chain definition."
    )
    district: str = Field(
        pattern=IDENTIFIER, description="Arrondissement id from the chain definition."
    )
    outcome: str | None = Field(
        default=None,
        pattern=IDENTIFIER,
        description=(
            "Outcome, required for milestones that have outcomes (e.g. om_decision), else absent."
        ),
    )
    revision: int = Field(
        default=0, ge=0, le=1_000_000, description="Correction number; the highest revision wins."
    )
    retracted: bool = Field(
        default=False, description="True withdraws the milestone (with a higher revision)."
    )
    occurrence: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9._:-]+$",
        description=(
            "Which occurrence of the milestone this is, for milestones a case reaches more than"
            " once (an adjourned hearing, an instalment): any id unique within the case and"
            " milestone. Corrections and retractions repeat it. Absent: the default occurrence."
        ),
    )

    @field_validator("occurred_at")
    @classmethod
    def _not_in_far_past_or_future(cls, value: datetime, info: ValidationInfo) -> datetime:
        # parse_event passes its clock reading as context {"now": Unix seconds} and the chain's
        # earliest plausible time; a direct model_validate reads the clock here and takes the
        # default earliest time.
        context = info.context or {}
        now = context.get("now")
        limit = (time.time() if now is None else now) + _MAX_SKEW_SECONDS
        earliest = context.get("earliest", _EARLIEST_SECONDS)
        # Cheap and sure: the UTC offset is under a day, so a local year from the safe year on is
        # after the earliest time, and a local date two days before the limit's UTC date is before
        # the limit. Only the rest pays for the exact test (the offset is a Python-level call).
        if value.year >= context.get("safe_year", _DEFAULT_SAFE_YEAR) and (
            value.toordinal() <= limit // SECONDS_PER_DAY + _EPOCH_ORDINAL - 2
        ):
            return value
        seconds = value.timestamp()
        if seconds < earliest:
            raise ValueError(f"occurred_at before {_earliest_text(earliest)} is implausible")
        if seconds > limit:
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


# pydantic-core's own entry point: model_validate_json minus a Python-level wrapper.
_validate_json = ChainEventV1.__pydantic_validator__.validate_json
_compiled = CompiledContract(ChainEventV1, EARLIEST_EVENT_TIME, _MAX_SKEW_SECONDS)


def parse_event(
    raw: bytes, chain: Chain, topic_organisation: str | None = None, now: float | None = None
) -> ChainEventV1:
    """Decode and validate one event against the contract and the chain definition.

    `topic_organisation` is the partner whose topic the event came from: a partner can only report
    its own milestones. `now` (Unix seconds, default: the clock at this call) is the moment an
    event may lie at most MAX_CLOCK_SKEW ahead of; a caller may read the clock once per batch.
    """
    if now is None:
        now = time.time()
    last = _last
    known = last[1] if last is not None and last[0] is chain else _lookups_of(chain)
    # The compiled path checks the default earliest time: it may only be used where the chain's
    # earliest time is not later (what it accepts, the reference then accepts too).
    if known.fast and known.earliest <= _EARLIEST_SECONDS:
        event = _compiled.parse(raw, known, topic_organisation, now)
        if event is not None:
            return event  # type: ignore[return-value]  # built as a ChainEventV1
    return parse_event_reference(raw, chain, topic_organisation, now)


def check_event(
    raw: bytes, chain: Chain, topic_organisation: str | None = None, now: float | None = None
) -> Any:
    """parse_event's verdict, for a sender: the event, or EventRejected as parse_event raises it.

    Where the compiled path is sure, the event is its decoded struct, not a ChainEventV1 (a third
    of the cost of the compiled path is building the model): event_id, case_key, organisation,
    milestone, occurred_at, case_type and district are the model's values; outcome, revision and
    retracted may be msgspec.UNSET. Otherwise it is parse_event_reference's model. publish and
    import-log check every row with it (publish.check_and_send).
    """
    if now is None:
        now = time.time()
    last = _last
    known = last[1] if last is not None and last[0] is chain else _lookups_of(chain)
    if known.fast and known.earliest <= _EARLIEST_SECONDS:
        event = _compiled.parse(raw, known, topic_organisation, now, model=False)
        if event is not None:
            return event
    return parse_event_reference(raw, chain, topic_organisation, now)


def parse_event_reference(
    raw: bytes, chain: Chain, topic_organisation: str | None = None, now: float | None = None
) -> ChainEventV1:
    """parse_event by the pydantic model alone: the definition the compiled path must equal."""
    last = _last
    known = last[1] if last is not None and last[0] is chain else _lookups_of(chain)
    context = {
        "now": time.time() if now is None else now,
        "earliest": known.earliest,
        "safe_year": known.safe_year,
    }
    try:
        event = _validate_json(raw, context=context)
    except ValidationError:
        # Anything pydantic-core refuses, valid JSON or not, is judged again step by step, so that
        # reasons and details are exactly those of the step-by-step path.
        event = _parse_step_by_step(raw, context)
    check_against_chain(event, chain, topic_organisation)
    return event


def _parse_step_by_step(raw: bytes, context: dict[str, Any]) -> ChainEventV1:
    """The event, or EventRejected with the first thing wrong with `raw`, in this order."""
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
    except RecursionError:  # thousands of nested brackets: no event, and no reason to crash
        raise EventRejected("not_json", "JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise EventRejected("not_an_object", f"expected a JSON object, got {type(data).__name__}")
    if data.get("schema_version") != SCHEMA_VERSION and "schema_version" in data:
        raise EventRejected("unsupported_schema_version", f"schema_version is not {SCHEMA_VERSION}")
    try:
        return ChainEventV1.model_validate(data, context=context)
    except ValidationError as exc:
        reason, detail = _reason_for(exc)
        raise EventRejected(reason, detail) from None


@dataclass(frozen=True, slots=True)
class _ChainLookups:
    """What check_against_chain asks of a chain, as sets and dicts (Chain.partner_ids is a list)."""

    partners: frozenset[str]
    milestones: Mapping[str, Milestone]
    case_types: frozenset[str]
    districts: frozenset[str]
    earliest: float  # the chain's earliest plausible event time, Unix seconds
    safe_year: int  # see _safe_year
    fast: bool  # every identifier matches IDENTIFIER, as the compiled path assumes


# Built once per Chain (a Chain is not changed after loading); weak keys let a chain be freed.
_lookups: WeakKeyDictionary[Chain, _ChainLookups] = WeakKeyDictionary()
_last: tuple[Chain, _ChainLookups] | None = None  # the usual case: one chain per process


def _lookups_of(chain: Chain) -> _ChainLookups:
    global _last
    found = _lookups.get(chain)
    if found is None:
        milestones = dict(chain.milestones)
        ids = [*chain.partner_ids, *milestones, *chain.spec.case_types, *chain.spec.districts]
        ids += [o for m in milestones.values() for o in m.outcomes]
        found = _lookups[chain] = _ChainLookups(
            frozenset(chain.partner_ids),
            milestones,
            frozenset(chain.spec.case_types),
            frozenset(chain.spec.districts),
            chain.earliest_event_seconds,
            _safe_year(chain.earliest_event_seconds),
            all(_IDENTIFIER(i) for i in ids),
        )
    _last = (chain, found)
    return found


def check_against_chain(
    event: ChainEventV1, chain: Chain, topic_organisation: str | None = None
) -> None:
    # Details name only what the chain definition knows, never an unknown input value.
    last = _last
    known = last[1] if last is not None and last[0] is chain else _lookups_of(chain)
    organisation = event.organisation
    if organisation not in known.partners:
        raise EventRejected("unknown_organisation", "organisation is not a partner of the chain")
    if topic_organisation is not None and organisation != topic_organisation:
        raise EventRejected(
            "organisation_mismatch",
            f"event of {organisation!r} on the topic of {topic_organisation!r}",
        )
    milestone = known.milestones.get(event.milestone)
    if milestone is None:
        raise EventRejected("unknown_milestone", "milestone is not in the chain definition")
    if milestone.organisation != organisation:
        raise EventRejected(
            "unknown_milestone",
            f"milestone {event.milestone!r} belongs to {milestone.organisation!r}, "
            f"not {organisation!r}",
        )
    if event.case_type not in known.case_types:
        raise EventRejected("unknown_case_type", "case_type is not in the chain definition")
    if event.district not in known.districts:
        raise EventRejected("unknown_district", "district is not in the chain definition")
    if event.retracted:
        return
    outcome = event.outcome
    if milestone.outcomes:
        if outcome not in milestone.outcomes:
            got = "none" if outcome is None else "another value"
            raise EventRejected(
                "invalid_outcome",
                f"{event.milestone!r} needs an outcome of {sorted(milestone.outcomes)}, got {got}",
            )
    elif outcome is not None:
        raise EventRejected("invalid_outcome", f"{event.milestone!r} has no outcomes")
