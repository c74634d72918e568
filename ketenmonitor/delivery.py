"""How simulated partners deliver their events: publishing delays, faults, and time order.

    planner = DeliveryPlanner(chain, scenario.publish_delay, scenario.faults, start, end, seed=7)
    for delivery in deliveries_in_order(stream_cases(...), planner, start, end):
        sink(delivery.organisation, delivery.key, delivery.value)     # in publish-time order

A case's steps become messages published some time after their event time (a lognormal delay per
partner). Faults are injected per valid event at the scenario's rates, all from one seeded random
generator, so a run is reproducible:
- duplicate: the same message (same bytes, same event_id) is delivered a second time;
- out of order: the message is delivered after the case's next milestone;
- late: the message is delivered days after its event time;
- malformed: an extra, broken message derived from the event (see MALFORMED_KINDS);
- correction: the milestone is first reported with a wrong time, later corrected by a message with
  a new event_id and `revision: 1` that carries the true time;
- silence: a partner publishes nothing for a period; what it held back arrives when it resumes.
Malformed messages are extra: the valid events still describe the ground truth exactly, and after
every correction has arrived the monitor's final state equals the truth.

Deliveries are merged by publish time with bounded memory (`TimeMerger`): cases come in order of
their start time, no message is published before its case starts, so every window of publish time
that ends before the current case's start is complete and can be sorted and released; windows
further ahead are spilled to temporary files once too much is held in memory.
"""

from __future__ import annotations

import json
import math
import random
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ketenmonitor.domain.chain import SECONDS_PER_DAY as DAY
from ketenmonitor.domain.chain import SECONDS_PER_HOUR as HOUR
from ketenmonitor.domain.chain import Chain
from ketenmonitor.simulator import Faults, PublishDelay, SimulatedCase, iso, step_event

MINUTE = 60


@dataclass(frozen=True, slots=True)
class Delivery:
    publish_at: float  # simulated moment the partner publishes (POSIX seconds)
    organisation: str  # whose topic the message goes to
    key: bytes
    value: bytes


@dataclass
class DeliveryStats:
    valid_events: int = 0  # distinct milestone events of the ground truth
    messages: int = 0  # everything delivered, faults included
    faults: Counter[str] = field(default_factory=Counter)
    malformed: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "valid_events": self.valid_events,
            "messages": self.messages,
            "faults": dict(sorted(self.faults.items())),
            "malformed": dict(sorted(self.malformed.items())),
        }


def _dumps(event: Mapping[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode()


def malformed_message(kind: str, event: Mapping[str, Any]) -> bytes:
    """A broken variant of a valid event; the contract rejects it with reason `kind`."""
    bad = {**event, "event_id": f"{event['event_id']}-bad"}
    if kind == "not_json":
        text = _dumps(bad)
        return text[: len(text) // 2]
    if kind == "unknown_milestone":
        bad["milestone"] = "no_such_milestone"
    elif kind == "naive_timestamp":
        bad["occurred_at"] = str(event["occurred_at"])[:19]  # the UTC offset cut off
    elif kind == "unknown_field":
        bad["remark"] = "free text is not allowed in a chain event"
    elif kind == "wrong_type":
        bad["revision"] = "first"
    else:
        raise ValueError(f"unknown malformed kind {kind!r}")
    return _dumps(bad)


class DeliveryPlanner:
    """Turns one simulated case into the messages its partners deliver, with faults."""

    def __init__(
        self,
        chain: Chain,
        delays: Mapping[str, PublishDelay],
        faults: Faults,
        start: float,
        end: float,
        seed: int = 0,
    ) -> None:
        self.chain = chain
        self.delays = dict(delays)
        self.faults = faults
        self.seed = seed
        self.silences = [
            (s.organisation, start + s.from_day * DAY, start + (s.from_day + s.days) * DAY)
            for s in faults.silences
        ]
        self.end = end
        self.rng = random.Random(f"delivery:{seed}")
        self.stats = DeliveryStats()

    def _delay(self, organisation: str) -> float:
        spec = self.delays.get(organisation)
        if spec is None or spec.median_minutes == 0:
            return 0.0
        return spec.median_minutes * MINUTE * math.exp(self.rng.gauss(0.0, spec.sigma))

    def _silenced(self, organisation: str, at: float) -> float:
        for org, begin, until in self.silences:
            if org == organisation and begin <= at < until:
                self.stats.faults["held_by_silence"] += 1
                return until
        return at

    def deliveries(self, case: SimulatedCase) -> list[Delivery]:
        rng, f, stats = self.rng, self.faults, self.stats
        planned = [(s.occurred_at + self._delay(self.chain.milestones[s.milestone].organisation))
                   for s in case.steps]
        out: list[tuple[float, str, bytes, bytes]] = []
        for n, step in enumerate(case.steps):
            event = step_event(case, n, self.chain, self.seed)
            org, key = event["organisation"], event["event_id"].encode()
            at = planned[n]
            stats.valid_events += 1
            if rng.random() < f.correction_rate:
                # First the wrong time (earlier, so never in the future), the truth follows later.
                wrong = dict(event, occurred_at=iso(step.occurred_at - rng.uniform(HOUR, 7 * DAY)))
                out.append((at, org, key, _dumps(wrong)))
                corrected = dict(event, event_id=f"{event['event_id']}-r1", revision=1)
                at += rng.uniform(DAY, 14 * DAY)
                event, key = corrected, corrected["event_id"].encode()
                stats.faults["correction"] += 1
            if rng.random() < f.late_rate:
                at += f.late_median_days * DAY * math.exp(rng.gauss(0.0, 0.5))
                stats.faults["late"] += 1
            if rng.random() < f.out_of_order_rate:
                after = planned[n + 1] if n + 1 < len(planned) else at
                at = max(at, after) + rng.uniform(MINUTE, HOUR)
                stats.faults["out_of_order"] += 1
            value = _dumps(event)
            out.append((at, org, key, value))
            if rng.random() < f.duplicate_rate:
                out.append((at + rng.uniform(MINUTE, 2 * DAY), org, key, value))
                stats.faults["duplicate"] += 1
            if rng.random() < f.malformed_rate:
                kind = rng.choice(f.malformed_kinds)
                bad_key = f"{event['event_id']}-bad".encode()
                bad = malformed_message(kind, event)
                out.append((at + rng.uniform(0, HOUR), org, bad_key, bad))
                stats.malformed[kind] += 1
        stats.messages += len(out)
        return [Delivery(self._silenced(org, at), org, key, value) for at, org, key, value in out]


class TimeMerger:
    """Releases (time, payload) records in time order while they are added in rough order.

    Records are grouped in `windows` equal windows of [start, end) (the last one also takes
    everything later). `release(watermark)` promises that no record earlier than `watermark` will be
    added any more and returns, sorted, every window that ends at or before it. Windows ahead are
    held in memory until `max_in_memory` records are held, then appended to files in a temporary
    directory.
    """

    def __init__(
        self, start: float, end: float, windows: int = 256, max_in_memory: int = 200_000
    ) -> None:
        self.start = start
        self.width = max((end - start) / windows, 1.0)
        self.last = windows - 1
        self.current = 0
        self.max_in_memory = max_in_memory
        self._held: dict[int, list[Delivery]] = {}
        self._held_count = 0
        self._files: dict[int, Any] = {}
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._seq = 0

    def _window(self, at: float) -> int:
        return min(self.last, max(self.current, int((at - self.start) // self.width)))

    def add(self, delivery: Delivery) -> None:
        self._held.setdefault(self._window(delivery.publish_at), []).append(delivery)
        self._held_count += 1
        if self._held_count > self.max_in_memory:
            self._spill()

    def release(self, watermark: float) -> Iterator[Delivery]:
        done = min(self.last, int((watermark - self.start) // self.width))
        while self.current < done:
            yield from self._take(self.current)
            self.current += 1

    def drain(self) -> Iterator[Delivery]:
        while self.current <= self.last:
            yield from self._take(self.current)
            self.current += 1
        self.close()

    def close(self) -> None:
        for handle in self._files.values():
            handle.close()
        self._files.clear()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def _take(self, window: int) -> list[Delivery]:
        records = self._held.pop(window, [])
        self._held_count -= len(records)
        handle = self._files.pop(window, None)
        if handle is not None:
            handle.close()
            path = Path(handle.name)
            spilled = [_decode(line) for line in path.read_bytes().splitlines()]
            path.unlink()
            records = spilled + records  # spilled ones were added first
        records.sort(key=lambda d: d.publish_at)  # stable: equal times keep the order of adding
        return records

    def _spill(self) -> None:
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="ketenmonitor-sim-")
        for window, records in self._held.items():
            handle = self._files.get(window)
            if handle is None:
                handle = self._files[window] = open(  # noqa: SIM115 - kept open across spills
                    Path(self._tmp.name) / f"{window:05d}", "ab"
                )
            handle.writelines(_encode(d) for d in records)
        self._held.clear()
        self._held_count = 0


def _encode(d: Delivery) -> bytes:
    # JSON values and event ids contain neither tabs nor newlines.
    fields = (repr(d.publish_at).encode(), d.organisation.encode(), d.key, d.value)
    return b"\t".join(fields) + b"\n"


def _decode(line: bytes) -> Delivery:
    at, org, key, value = line.split(b"\t", 3)
    return Delivery(float(at), org.decode(), key, value)


def deliveries_in_order(
    cases: Iterable[SimulatedCase],
    planner: DeliveryPlanner,
    start: float,
    end: float,
    on_case: Any = None,
    max_in_memory: int = 200_000,
) -> Iterator[Delivery]:
    """Every delivery of `cases` (given in start order), in order of publish time."""
    merger = TimeMerger(start, end, max_in_memory=max_in_memory)
    try:
        for case in cases:
            if on_case is not None:
                on_case(case)
            if not case.steps:
                continue
            yield from merger.release(case.steps[0].occurred_at)
            for delivery in planner.deliveries(case):
                merger.add(delivery)
        yield from merger.drain()
    finally:
        merger.close()
