"""Ingest counts per partner-topic partition, exact under at-least-once delivery.

    stats = IngestStats.decode(raw) if raw else IngestStats()
    if stats.count(offset, message_timestamp, reason=None):   # False: offset already counted
        table[key] = stats.encode()

The counts and the next uncounted offset travel in one changelog record, so a message that is
delivered again after a crash (its offset not yet committed) is recognised and not counted twice.

Encoded as versioned JSON ({"v": 2, ...}); version 1 (a positional array) is still read, a newer
version is refused (ketenmonitor.streams.codec.FormatVersionError).

Lateness is how long after the milestone happened (event time) its event reached Kafka (the
message timestamp), counted per bucket of LATENESS_BUCKETS_SECONDS for accepted events.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

import orjson
from ketenmonitor.streams.codec import FormatVersionError

INGEST_STATS_VERSION = 2

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
            {
                "v": INGEST_STATS_VERSION,
                "next": self.next_offset,
                "accepted": self.accepted,
                "rejected": self.rejected,
                "last": self.last_message_timestamp,
                "lateness": self.lateness,
                "lateness_sum": self.lateness_sum,
            }
        )

    @classmethod
    def decode(cls, raw: bytes) -> IngestStats:
        doc = orjson.loads(raw)
        if isinstance(doc, list):  # version 1
            return cls(*doc)
        if doc.get("v") != INGEST_STATS_VERSION:
            raise FormatVersionError("ingest counts", doc.get("v"), (1, INGEST_STATS_VERSION))
        return cls(
            doc["next"], doc["accepted"], doc["rejected"], doc["last"], doc["lateness"],
            doc["lateness_sum"],
        )
