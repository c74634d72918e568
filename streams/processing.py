"""The two steps of a worker, as plain Python that the worker loop (streams/worker.py) calls.

1. `Ingestor.route(raw, organisation)`: a partner's raw message becomes either a pseudonymised case
   event bound for the case topic (keyed and partitioned by pseudonym) or a rejection with a reason.
2. `CaseProcessor.process(partition, pseudonym, payload, state)`: a case event is applied to the
   case's state by the domain core; the per-partition totals follow; the new state is returned for
   the changelogged table.

No Kafka here: the worker in streams/worker.py moves bytes, this module decides.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import orjson

from ketenmonitor.domain.case import CaseEvent, CaseState, apply_event
from ketenmonitor.domain.chain import Chain
from ketenmonitor.domain.pseudonym import Pseudonymiser, partition_of
from ketenmonitor.domain.totals import ChainTotals
from schemas.events import EventRejected, parse_event
from streams.codec import decode_state, encode_state


@dataclass(frozen=True, slots=True)
class Routed:
    pseudonym: str
    partition: int
    payload: bytes  # the case event without the raw case key
    occurred_at: float


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
    def __init__(self, chain: Chain, secret: bytes, partitions: int) -> None:
        self.chain = chain
        self._pseudonymise = Pseudonymiser(secret)  # an empty secret fails here, at start-up
        self.partitions = partitions

    def route(
        self, raw: bytes, organisation: str | None, now: float | None = None
    ) -> Routed | Rejected:
        """`organisation` None: not from a partner's topic (an event-log file). `now` (POSIX
        seconds, default the clock) is what the contract's clock-skew check compares with."""
        try:
            event = parse_event(raw, self.chain, topic_organisation=organisation, now=now)
        except EventRejected as exc:
            return Rejected(exc.reason, exc.detail)
        pseudonym = self._pseudonymise(event.case_key)
        occurred_at = event.occurred_at.timestamp()
        payload = orjson.dumps(
            [
                event.event_id,
                event.milestone,
                occurred_at,
                event.case_type,
                event.district,
                event.outcome,
                event.revision,
                event.retracted,
                *((event.occurrence,) if event.occurrence is not None else ()),
            ]
        )
        return Routed(pseudonym, partition_of(pseudonym, self.partitions), payload, occurred_at)


def decode_case_event(pseudonym: str, payload: bytes) -> CaseEvent:
    fields = orjson.loads(payload)  # 8 fields, or 9 with an occurrence id
    event_id, milestone, occurred_at, case_type, district, outcome, revision, retracted = fields[:8]
    # tuple.__new__ skips the named tuple's Python-level constructor (hot path; same value).
    return tuple.__new__(
        CaseEvent,
        (event_id, pseudonym, milestone, occurred_at, case_type, district, outcome, revision,
         retracted, fields[8] if len(fields) > 8 else None),
    )


class CaseProcessor:
    """Applies case events and keeps the totals of each case-state partition it owns."""

    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self.totals: dict[int, ChainTotals] = {}

    def process(self, partition: int, pseudonym: str, payload: bytes, state: bytes | None) -> bytes:
        return self.process_with_state(partition, pseudonym, payload, state)[0]

    def process_with_state(
        self, partition: int, pseudonym: str, payload: bytes, state: bytes | None
    ) -> tuple[bytes, CaseState]:
        """`process`, also returning the decoded new state (for the case-fact store)."""
        event = decode_case_event(pseudonym, payload)
        current = decode_state(state) if state is not None else None
        applied = apply_event(self.chain, current, event)
        totals = self.totals.get(partition)
        if totals is None:
            totals = self.totals[partition] = ChainTotals(self.chain)
        totals.record(applied, new_case=current is None)
        return encode_state(applied.state), applied.state

    def add_states(self, partition: int, states: Iterable[bytes]) -> None:
        """Fold restored case states into the totals of their partition."""
        totals = self.totals.get(partition)
        if totals is None:
            totals = self.totals[partition] = ChainTotals(self.chain)
        for raw in states:
            totals.add_case(decode_state(raw))

    def forget(self, partition: int) -> None:
        self.totals.pop(partition, None)

    def owned_totals(self, partitions: Iterable[int]) -> list[ChainTotals]:
        return [self.totals[p] for p in partitions if p in self.totals]


__all__ = [
    "CaseProcessor",
    "CaseState",
    "Ingestor",
    "Rejected",
    "Routed",
    "decode_case_event",
]
