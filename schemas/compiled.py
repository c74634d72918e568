"""The contract compiled for speed: msgspec decodes and checks, or says "not sure".

    fast = CompiledContract(ChainEventV1, EARLIEST_EVENT_TIME, MAX_CLOCK_SKEW.total_seconds())
    event = fast.parse(raw, lookups, topic_organisation, now)   # a ChainEventV1, or None

`parse` returns an event only when it is certain that the pydantic contract plus the chain check
(events.py `parse_event_reference`) accept `raw` with exactly these values; for anything else,
valid-but-unusual (lax forms such as `"revision": "3"`) or invalid, it returns None and the caller
runs the reference path, which decides the rejection reason and detail. So the compiled path can
never give another reason than the contract: it gives none. tests/unit/test_compiled_contract.py
fuzzes that claim (valid events, mutations, random JSON, bytes near every boundary).

The constraints (lengths, patterns, bounds, which fields have defaults) are read from the pydantic
model's field metadata: the model stays the one definition, from which the JSON Schema is
generated too. Identifier fields are not pattern-matched here: a value the chain knows matches
IDENTIFIER by construction (checked when the look-ups are built), and any other value is left to
the reference path.

What msgspec does differently from pydantic-core, and how each is kept out of the fast path:
- fractional seconds beyond microseconds are rounded by msgspec and truncated by pydantic: a
  message with seven digits after a dot anywhere, or with any escape, goes to the reference path;
- `$` in Python's re also matches before a final newline: patterns are used with fullmatch on the
  pattern without its anchors;
- msgspec's lax coercions are off (strict decoding); pydantic's lax forms go to the reference path.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal, Protocol

import msgspec
from pydantic import BaseModel

from ketenmonitor.domain.chain import SECONDS_PER_DAY

_new = object.__new__
_set = object.__setattr__
_UNSET = msgspec.UNSET
_EPOCH_ORDINAL = datetime(1970, 1, 1).toordinal()
_LONG_FRACTION = re.compile(rb"\.[0-9]{7}").search  # in an id too: then only slower, not wrong


class _Milestone(Protocol):
    organisation: str
    outcomes: Collection[str]


class Lookups(Protocol):
    """What the compiled path asks of a chain (ketenmonitor.schemas.events._ChainLookups)."""

    partners: Collection[str]
    milestones: Mapping[str, _Milestone]
    case_types: Collection[str]
    districts: Collection[str]
    fast: bool  # every identifier of the chain matches IDENTIFIER


def _meta(model: type[BaseModel], name: str) -> dict[str, Any]:
    """A field's constraints as msgspec.Meta keywords, read from the pydantic metadata."""
    found: dict[str, Any] = {}
    for item in model.model_fields[name].metadata:
        for key in ("min_length", "max_length", "ge", "le", "pattern"):
            value = getattr(item, key, None)
            if value is not None:
                found[key] = value
    return found


def _fullmatch(pattern: str) -> Callable[[str], Any]:
    # pydantic's (Rust) `$` is the very end; Python's also matches before a final "\n".
    assert pattern.startswith("^") and pattern.endswith("$"), pattern
    return re.compile(pattern[1:-1]).fullmatch


@dataclass(frozen=True, slots=True)
class _Shape:
    struct: type[msgspec.Struct]
    event_id: Callable[[str], Any]
    case_key: Callable[[str], Any]
    earliest: float
    earliest_year: int
    max_skew: float


def _shape(model: type[BaseModel], earliest: datetime, max_skew: float) -> _Shape:
    fields = model.model_fields
    expected = [
        "schema_version",
        "event_id",
        "case_key",
        "organisation",
        "milestone",
        "occurred_at",
        "case_type",
        "district",
        "outcome",
        "revision",
        "retracted",
    ]
    # The struct below mirrors these fields; a new field must be added here too. `occurrence`
    # (repeated milestones) is not in the struct: an event that carries one is refused by the
    # decoder (unknown field) and decided by the pydantic reference path.
    assert list(fields) == [*expected, "occurrence"], list(fields)
    assert fields["occurrence"].default is None
    bounded = {name: _meta(model, name) for name in ("event_id", "case_key", "revision")}
    lengths = {
        name: msgspec.Meta(
            min_length=bounded[name]["min_length"], max_length=bounded[name]["max_length"]
        )
        for name in ("event_id", "case_key")
    }
    revision = msgspec.Meta(ge=bounded["revision"]["ge"], le=bounded["revision"]["le"])
    assert fields["revision"].default == 0 and fields["retracted"].default is False
    assert fields["outcome"].default is None
    struct = msgspec.defstruct(
        "CompiledChainEvent",
        [
            ("schema_version", Literal[1]),  # type: ignore[valid-type]
            ("event_id", Annotated[str, lengths["event_id"]]),
            ("case_key", Annotated[str, lengths["case_key"]]),
            ("organisation", str),
            ("milestone", str),
            ("occurred_at", Annotated[datetime, msgspec.Meta(tz=True)]),
            ("case_type", str),
            ("district", str),
            # UNSET defaults tell a field left out from one given: pydantic's fields_set.
            ("outcome", str | None | msgspec.UnsetType, _UNSET),
            ("revision", Annotated[int, revision] | msgspec.UnsetType, _UNSET),
            ("retracted", bool | msgspec.UnsetType, _UNSET),
        ],
        forbid_unknown_fields=True,
        frozen=True,
    )
    return _Shape(
        struct,
        _fullmatch(bounded["event_id"]["pattern"]),
        _fullmatch(bounded["case_key"]["pattern"]),
        earliest.timestamp(),
        earliest.year,
        max_skew,
    )


class CompiledContract:
    """msgspec decoder plus the chain check, producing the pydantic model without re-validating."""

    def __init__(self, model: type[BaseModel], earliest: datetime, max_skew_seconds: float):
        self.model = model
        self._shape = _shape(model, earliest, max_skew_seconds)
        self._decode = msgspec.json.Decoder(self._shape.struct).decode
        required = frozenset(name for name, f in model.model_fields.items() if f.is_required())
        # pydantic's fields_set per combination of the three optional fields being present.
        self._fields_set = {
            (o, r, t): frozenset(
                required
                | ({"outcome"} if o else set())
                | ({"revision"} if r else set())
                | ({"retracted"} if t else set())
            )
            for o in (False, True)
            for r in (False, True)
            for t in (False, True)
        }

    def parse(
        self,
        raw: bytes,
        known: Lookups,
        topic_organisation: str | None,
        now: float,
        model: bool = True,
    ) -> Any:
        """The event if the contract surely accepts `raw` as it is; None when not sure.

        `model=False`: the decoded struct instead of the pydantic model (for a sender that only
        reads event_id, case_key, organisation: building the model is a third of the cost).
        Its outcome, revision and retracted are msgspec.UNSET where the message left them out.
        """
        if not known.fast or b"\\" in raw or (b"." in raw and _LONG_FRACTION(raw)):
            # An escape could hide anything from the look for long fractions: msgspec rounds
            # fractional seconds to microseconds where pydantic truncates them.
            return None
        try:
            e: Any = self._decode(raw)
        except Exception:  # any doubt (malformed, lax, msgspec quirk): reference path
            return None
        shape = self._shape
        if shape.event_id(e.event_id) is None or shape.case_key(e.case_key) is None:
            return None
        organisation = e.organisation
        if organisation not in known.partners:
            return None
        if topic_organisation is not None and organisation != topic_organisation:
            return None
        milestone = known.milestones.get(e.milestone)
        if milestone is None or milestone.organisation != organisation:
            return None
        if e.case_type not in known.case_types or e.district not in known.districts:
            return None
        outcome, revision, retracted = e.outcome, e.revision, e.retracted
        fields_set = self._fields_set[
            outcome is not _UNSET, revision is not _UNSET, retracted is not _UNSET
        ]
        if outcome is _UNSET:
            outcome = None
        if revision is _UNSET:
            revision = 0
        if retracted is _UNSET:
            retracted = False
        outcomes = milestone.outcomes
        if outcome is None:
            if outcomes and not retracted:
                return None
        elif outcome not in outcomes:  # also: a milestone without outcomes has none to give
            return None
        # occurred_at as the model's validator: cheap on the local date, exact near the bounds.
        occurred_at = e.occurred_at
        limit = now + shape.max_skew
        if not (
            occurred_at.year > shape.earliest_year
            and occurred_at.toordinal() <= limit // SECONDS_PER_DAY + _EPOCH_ORDINAL - 2
        ):
            seconds = occurred_at.timestamp()
            if seconds < shape.earliest or seconds > limit:
                return None
        if not model:
            return e
        event = _new(self.model)
        _set(
            event,
            "__dict__",
            {
                "schema_version": 1,
                "event_id": e.event_id,
                "case_key": e.case_key,
                "organisation": organisation,
                "milestone": e.milestone,
                "occurred_at": occurred_at,
                "case_type": e.case_type,
                "district": e.district,
                "outcome": outcome,
                "revision": revision,
                "retracted": retracted,
                "occurrence": None,
            },
        )
        _set(event, "__pydantic_fields_set__", set(fields_set))  # a set: pydantic checks
        _set(event, "__pydantic_extra__", None)
        _set(event, "__pydantic_private__", None)
        return event
