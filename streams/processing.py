"""The two steps of a worker, as plain Python that the worker loop (streams/worker.py) calls.

1. `Ingestor.route(raw, organisation, message_key=key)`: a partner's raw message becomes either a
   pseudonymised case event with its state partition (by the deployment's placement rule,
   streams/placement.py) or a rejection with a reason. `keyed_by_case` says whether the message's
   Kafka key is the event's case key: only then may the worker apply it in the partition it
   arrived in (one hop), if that partition is the case's; otherwise it goes to the case topic
   (keyed by pseudonym) in the case's partition.
2. `CaseProcessor.apply(pseudonym, payload, stored)`: a case event is applied to the case's
   stored value (state and withdrawn facts) by the domain core; the new value goes to the
   changelogged table, the `Applied` facts and the case's marks before and after the event
   (dormancy and rework, domain/flow.py) to `PartitionTotals.fold` once Kafka has acknowledged
   the batch (what /metrics shows is never ahead of what a restore would find). Rework items an
   event takes back are kept in the stored value next to the withdrawn facts.

Case-topic payloads are versioned JSON arrays: [2, event_id, milestone, occurred_at, case_type,
district, outcome, revision, retracted]; version 1 (the same without the leading 2) is still read.

No Kafka here: the worker in streams/worker.py moves bytes, this module decides.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

import orjson
from ketenmonitor.schemas.events import EventRejected, parse_event
from ketenmonitor.streams.codec import FormatVersionError, decode_case_value, encode_case_value
from ketenmonitor.streams.placement import Placement, placement_function

from ketenmonitor.domain.case import Applied, CaseEvent, CaseState
from ketenmonitor.domain.chain import Chain
from ketenmonitor.domain.flow import Marks, apply_event_marked
from ketenmonitor.domain.pseudonym import Pseudonymiser
from ketenmonitor.domain.totals import ChainTotals

CASE_EVENT_VERSION = 2
MAX_EVENT_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Routed:
    pseudonym: str
    partition: int
    event: CaseEvent  # keyed by pseudonym: without the raw case key
    occurred_at: float
    keyed_by_case: bool = False  # the message's key is the event's case key (utf-8)

    @property
    def payload(self) -> bytes:
        """The case-topic record value (encoded only for the re-keying path)."""
        e = self.event
        return orjson.dumps(
            [
                CASE_EVENT_VERSION,
                e.event_id,
                e.milestone,
                e.occurred_at,
                e.case_type,
                e.district,
                e.outcome,
                e.revision,
                e.retracted,
                *((e.occurrence,) if e.occurrence is not None else ()),
            ]
        )


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: str
    detail: str

    def dead_letter_headers(
        self, topic: str, partition: int, offset: int
    ) -> list[tuple[str, bytes]]:
        """Why, and where from: the dead-letter record's value is the original bytes."""
        return [
            ("reason", self.reason.encode()),
            ("detail", self.detail.encode()),
            ("source", f"{topic}/{partition}/{offset}".encode()),
        ]


class Ingestor:
    def __init__(
        self, chain: Chain, secret: bytes, partitions: int, placement: Placement = "pseudonym"
    ) -> None:
        self.chain = chain
        self._pseudonymise = Pseudonymiser(secret)  # an empty secret fails here, at start-up
        self.partitions = partitions
        self.placement = placement
        self._place = placement_function(placement, partitions)

    def route(
        self,
        raw: bytes,
        organisation: str | None,
        now: float | None = None,
        message_key: bytes | None = None,
    ) -> Routed | Rejected:
        """`organisation` None: not from a partner's topic (an event-log file). `now` (POSIX
        seconds, default the clock) is what the contract's clock-skew check compares with.
        `message_key`: the Kafka key the partner gave the message (compared with the case key)."""
        if len(raw) > MAX_EVENT_BYTES:  # never parsed: a chain event is well under 1 KB
            return Rejected("too_large", f"{len(raw)} bytes; the limit is {MAX_EVENT_BYTES}")
        try:
            event = parse_event(raw, self.chain, topic_organisation=organisation, now=now)
        except EventRejected as exc:
            return Rejected(exc.reason, exc.detail)
        pseudonym = self._pseudonymise(event.case_key)
        occurred_at = event.occurred_at.timestamp()
        # tuple.__new__ skips the named tuple's Python-level constructor (hot path; same value).
        case_event = tuple.__new__(
            CaseEvent,
            (event.event_id, pseudonym, event.milestone, occurred_at, event.case_type,
             event.district, event.outcome, event.revision, event.retracted, event.occurrence),
        )
        case_key = event.case_key
        return Routed(
            pseudonym,
            self._place(pseudonym, case_key),
            case_event,
            occurred_at,
            message_key is not None and message_key == case_key.encode("utf-8"),
        )


def decode_case_event(pseudonym: str, payload: bytes) -> CaseEvent:
    fields = orjson.loads(payload)  # [2, 8 fields] or [2, 9 fields with an occurrence id]
    version = fields[0]
    if version == CASE_EVENT_VERSION:
        fields = fields[1:]
    elif not isinstance(version, str):  # version 1 starts with the event id
        raise FormatVersionError("case event", version, (1, CASE_EVENT_VERSION))
    # tuple.__new__ skips the named tuple's Python-level constructor (hot path; same value).
    event_id, milestone, occurred_at, case_type, district, outcome, revision, retracted = fields[:8]
    return tuple.__new__(
        CaseEvent,
        (event_id, pseudonym, milestone, occurred_at, case_type, district, outcome, revision,
         retracted, fields[8] if len(fields) > 8 else None),
    )


class CaseStep(NamedTuple):
    """One case event applied: the new stored value and what it changed."""

    stored: bytes
    state: CaseState
    applied: Applied
    new_case: bool
    marks: tuple[Marks | None, Marks] | None = None  # before, after; None: the marks are unchanged


class CaseProcessor:
    """Applies case events to stored case values (state plus the facts it withdrew)."""

    def __init__(self, chain: Chain) -> None:
        self.chain = chain

    def apply(self, pseudonym: str, payload: bytes, stored: bytes | None) -> CaseStep:
        """A case-topic record applied."""
        return self.apply_event(decode_case_event(pseudonym, payload), stored)

    def apply_event(self, event: CaseEvent, stored: bytes | None) -> CaseStep:
        """A routed event applied as it is (one hop: never encoded for the case topic)."""
        if stored is None:
            current, withdrawn = None, ()
        else:
            current, withdrawn = decode_case_value(stored)
        # The marks come from the walk that computing the facts made (one walk per event).
        applied, marks = apply_event_marked(self.chain, current, event)
        if marks is not None:
            before, after = marks
            gone = () if before is None else sorted(before.rework - after.rework)
            if applied.removed or gone:
                withdrawn = (*withdrawn, *map(tuple, applied.removed), *gone)
        elif applied.removed:
            withdrawn = (*withdrawn, *map(tuple, applied.removed))
        return CaseStep(
            encode_case_value(applied.state, withdrawn),
            applied.state,
            applied,
            current is None,
            marks,
        )


class PartitionTotals:
    """The totals of each case-state partition a worker owns, as of acknowledged batches.

    totals.fold(partition, steps)        # once the batch's changelog records are acknowledged
    totals.rebuild(partition, values)    # after a restore, from the stored case values
    totals.forget(partition)             # the partition went to another worker
    """

    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self.by_partition: dict[int, ChainTotals] = {}

    def of(self, partition: int) -> ChainTotals:
        totals = self.by_partition.get(partition)
        if totals is None:
            totals = self.by_partition[partition] = ChainTotals(self.chain)
        return totals

    def fold(self, partition: int, steps: Iterable[CaseStep]) -> None:
        totals = self.of(partition)
        record, mark = totals.record, totals.mark
        for step in steps:
            record(step.applied, new_case=step.new_case)
            if step.marks is not None:
                mark(*step.marks)

    def add_stored(self, partition: int, values: Iterable[bytes]) -> None:
        """Fold restored case values into the totals of their partition."""
        add_case = self.of(partition).add_case
        for raw in values:
            add_case(*decode_case_value(raw))

    def forget(self, partition: int) -> None:
        self.by_partition.pop(partition, None)


__all__ = [
    "CaseProcessor",
    "CaseState",
    "CaseStep",
    "Ingestor",
    "PartitionTotals",
    "Rejected",
    "Routed",
    "decode_case_event",
]
