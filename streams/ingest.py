"""Ingest counts per partner-topic partition, exact under at-least-once delivery.

    stats = IngestStats.decode(raw) if raw else IngestStats()
    if stats.count(offset, message_timestamp, reason=None):   # False: offset already counted
        table[key] = stats.encode()

The counts and the next uncounted offset travel in one changelog record, so a message that is
delivered again after a crash (its offset not yet committed) is recognised and not counted twice.

Lateness is how long after the milestone happened (event time) its event reached Kafka (the
message timestamp), counted per bucket of LATENESS_BUCKETS_SECONDS for accepted events.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

# Upper bounds: a minute, an hour, a day, a week, 30, 90 and 365 days; the last count is +Inf.
LATENESS_BUCKETS_SECONDS = (60.0, 3600.0, 86400.0, 604800.0, 2592000.0, 7776000.0, 31536000.0)


@dataclass
class IngestStats:
    next_offset: int = 0
    accepted: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    last_message_timestamp: float = 0.0
    lateness: list[int] = field(default_factory=lambda: [0] * (len(LATENESS_BUCKETS_SECONDS) + 1))
    lateness_sum: float = 0.0

    def count(
        self,
        offset: int,
        message_timestamp: float,
        reason: str | None,
        occurred_at: float | None = None,
    ) -> bool:
        if offset < self.next_offset:
            return False
        self.next_offset = offset + 1
        if reason is None:
            self.accepted += 1
            if occurred_at is not None:
                late = max(0.0, message_timestamp - occurred_at)
                self.lateness[bisect.bisect_left(LATENESS_BUCKETS_SECONDS, late)] += 1
                self.lateness_sum += late
        else:
            self.rejected[reason] = self.rejected.get(reason, 0) + 1
        self.last_message_timestamp = max(self.last_message_timestamp, message_timestamp)
        return True

    def encode(self) -> bytes:
        return orjson.dumps(
            [
                self.next_offset,
                self.accepted,
                self.rejected,
                self.last_message_timestamp,
                self.lateness,
                self.lateness_sum,
            ]
        )

    @classmethod
    def decode(cls, raw: bytes) -> IngestStats:
        return cls(*orjson.loads(raw))


class IngestCounts:
    """The ingest counts of one batch, read from and written to the `ingest-stats` table.

        counts = IngestCounts(table)
        counts.count(topic, partition, offset, timestamp, reason)   # per message, in order
        for partition, key, value in counts.changelog(): ...       # one record per partition
    """

    def __init__(self, table: Any) -> None:
        self._table = table
        self._batch: dict[bytes, tuple[int, IngestStats]] = {}

    def count(
        self,
        topic: str,
        partition: int,
        offset: int,
        timestamp: float,
        reason: str | None,
        occurred_at: float | None = None,
    ) -> None:
        key = f"{topic}:{partition}".encode()
        entry = self._batch.get(key)
        if entry is None:
            raw = self._table.data.get(key)
            entry = self._batch[key] = (partition, IngestStats.decode(raw) if raw else IngestStats())
        if entry[1].count(offset, timestamp, reason, occurred_at):
            self._table.data[key] = entry[1].encode()

    def changelog(self) -> Iterator[tuple[int, bytes, bytes]]:
        batch, self._batch = self._batch, {}
        for key, (partition, stats) in batch.items():
            yield partition, key, stats.encode()
