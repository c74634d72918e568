"""Replay and backfill: rebuild case states and the store from the partner topics or a log file.

    replayer = Replayer(chain, secret, partitions, sink)
    replay_file(Path("events.jsonl"), replayer)          # one raw partner message per line
    replay_topics(bootstrap, {topic: partner, ...}, replayer)
    replayer.summary()  -> {"accepted": ..., "rejected": {...}, "cases": ...}

Every message goes through the code the live worker runs: `Ingestor.route` (parse_event against
the contract and the chain, pseudonymise) and `CaseProcessor.apply` (apply_event),
then to the sink. Case states start empty and live in memory (encoded, as in the worker's
table), so the store ends up exactly as live processing of the same messages leaves it; event
order does not matter to the domain core. Replaying twice writes the same rows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ketenmonitor.domain.chain import Chain
from ketenmonitor.settings import Settings
from ketenmonitor.store.sink import CaseFactSink
from ketenmonitor.streams.processing import CaseProcessor, Ingestor, Rejected


class Replayer:
    def __init__(self, chain: Chain, secret: bytes, partitions: int, sink: CaseFactSink) -> None:
        self.ingestor = Ingestor(chain, secret, partitions)
        self.processor = CaseProcessor(chain)
        self.sink = sink
        self.states: dict[str, bytes] = {}
        self.accepted = 0
        self.rejected: Counter[str] = Counter()

    def feed(self, raw: bytes, organisation: str | None, now: float | None = None) -> None:
        """One partner message; `organisation` is the partner whose topic it came from; `now`
        the moment the contract's clock-skew check compares with (default: the clock)."""
        routed = self.ingestor.route(raw, organisation, now)
        if isinstance(routed, Rejected):
            self.rejected[routed.reason] += 1
            return
        self.accepted += 1
        step = self.processor.apply(
            routed.pseudonym, routed.payload, self.states.get(routed.pseudonym)
        )
        self.states[routed.pseudonym] = step.stored
        self.sink.add(routed.pseudonym, step.state)

    def finish(self) -> None:
        self.sink.flush()

    def summary(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "rejected": dict(sorted(self.rejected.items())),
            "cases": len(self.states),
            "cases_written": self.sink.written,
        }


def replay_file(path: Path, replayer: Replayer, progress: bool = True) -> None:
    """Replay a JSON Lines file of raw partner messages (what `ketenmonitor simulate` writes)."""
    with path.open("rb") as f:
        total = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    with path.open("rb") as f, _bar(total, progress, path.name) as bar:
        for line in f:
            line = line.rstrip(b"\r\n")
            if line:
                replayer.feed(line, None)
            bar.update(1)
    replayer.finish()


def replay_topics(
    bootstrap: str,
    topics: Mapping[str, str],
    replayer: Replayer,
    progress: bool = True,
    poll_timeout_ms: int = 1000,
    known_at: float | None = None,
) -> None:
    """Read `topics` ({topic: partner}) from the beginning up to their current ends.

    `known_at` (POSIX seconds): only the messages whose Kafka timestamp (when the partner
    published them) is at or before it, each checked against the clock as it was then: the store
    as the live monitor knew it at that moment, without hindsight (docs/store.md).
    """
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,  # no group, no commits: a replay leaves the workers' offsets alone
        enable_auto_commit=False,
        client_id="ketenmonitor-replay",
        max_poll_records=5000,
        **Settings().kafka_python_security(),  # the operator's login against a secure broker
    )
    try:
        partitions = [
            TopicPartition(topic, p)
            for topic in topics
            for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        missing = [t for t in topics if not any(tp.topic == t for tp in partitions)]
        if missing:
            raise ReplayError(f"topics not found on {bootstrap}: {missing}")
        consumer.assign(partitions)
        begins = consumer.beginning_offsets(partitions)
        ends = consumer.end_offsets(partitions)
        todo = {tp: ends[tp] for tp in partitions if ends[tp] > begins[tp]}
        consumer.seek_to_beginning(*partitions)
        total = sum(ends[tp] - begins[tp] for tp in todo)
        with _bar(total, progress, "topics") as bar:
            for records in _until_ends(consumer, todo, poll_timeout_ms):
                for r in records:
                    if known_at is None:
                        replayer.feed(r.value or b"", topics[r.topic])
                    elif r.timestamp / 1000 <= known_at:
                        replayer.feed(r.value or b"", topics[r.topic], now=r.timestamp / 1000)
                bar.update(len(records))
    finally:
        consumer.close()
    replayer.finish()


def _until_ends(consumer: Any, todo: dict[Any, int], poll_timeout_ms: int) -> Iterator[list[Any]]:
    """Batches of records, each partition cut at the end offset it had when the replay began."""
    while todo:
        for tp, records in consumer.poll(timeout_ms=poll_timeout_ms).items():
            end = todo.get(tp)
            batch = [r for r in records if end is not None and r.offset < end]
            if batch:
                yield batch
        # Positions, not record offsets: they also step over offsets that hold no record.
        for tp, end in list(todo.items()):
            if consumer.position(tp) >= end:
                del todo[tp]
                consumer.pause(tp)


def _bar(total: int, enabled: bool, label: str) -> Any:
    return tqdm(
        total=total, unit="ev", unit_scale=True, desc=f"replay {label}", disable=not enabled
    )


class ReplayError(RuntimeError):
    """A replay source that cannot be read (missing topics, unreadable file)."""


__all__ = ["ReplayError", "Replayer", "replay_file", "replay_topics"]


