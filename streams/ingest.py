"""Ingest counts per partner-topic partition, exact under at-least-once delivery.

    stats = IngestStats.decode(raw) if raw else IngestStats()
    if stats.count(offset, message_timestamp, reason=None):   # False: offset already counted
        table[key] = stats.encode()

The counts and the next uncounted offset travel in one changelog record, so a message that is
delivered again after a crash (its offset not yet committed) is recognised and not counted twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass
class IngestStats:
    next_offset: int = 0
    accepted: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    last_message_timestamp: float = 0.0

    def count(self, offset: int, message_timestamp: float, reason: str | None) -> bool:
        if offset < self.next_offset:
            return False
        self.next_offset = offset + 1
        if reason is None:
            self.accepted += 1
        else:
            self.rejected[reason] = self.rejected.get(reason, 0) + 1
        self.last_message_timestamp = max(self.last_message_timestamp, message_timestamp)
        return True

    def encode(self) -> bytes:
        return orjson.dumps(
            [self.next_offset, self.accepted, self.rejected, self.last_message_timestamp]
        )

    @classmethod
    def decode(cls, raw: bytes) -> IngestStats:
        next_offset, accepted, rejected, last = orjson.loads(raw)
        return cls(next_offset, accepted, rejected, last)


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
        self, topic: str, partition: int, offset: int, timestamp: float, reason: str | None
    ) -> None:
        key = f"{topic}:{partition}".encode()
        entry = self._batch.get(key)
        if entry is None:
            raw = self._table.data.get(key)
            entry = self._batch[key] = (partition, IngestStats.decode(raw) if raw else IngestStats())
        if entry[1].count(offset, timestamp, reason):
            self._table.data[key] = entry[1].encode()

    def changelog(self) -> Iterator[tuple[int, bytes, bytes]]:
        batch, self._batch = self._batch, {}
        for key, (partition, stats) in batch.items():
            yield partition, key, stats.encode()
