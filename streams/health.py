"""Watches that tell a stuck worker from a quiet one (consumers that silently stop are a known
failure of Kafka clients, e.g. faust-streaming issue #175).

    watch = StallWatch(timeout=10.0)
    with watch.busy("cases"):            # around the work on one batch, awaits included
        ...
    watch.busy_seconds(now)  -> {"cases": 0.0, "ingest": 12.5}
    watch.overdue(now)       -> ["ingest"]   (busy longer than the timeout: log and alert)

A batch whose work hangs (a send that never completes, a store that does not answer) keeps its
stage busy: the gauge grows, a timer logs it, and the alert rule on the gauge fires. A worker whose
event loop is blocked cannot answer /metrics at all: Prometheus' `up` alert covers that case.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)


class StallWatch:
    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._busy_since: dict[str, float | None] = {}

    @contextmanager
    def busy(self, agent: str) -> Iterator[None]:
        self._busy_since[agent] = time.monotonic()
        try:
            yield
        finally:
            self._busy_since[agent] = None

    def busy_seconds(self, now: float | None = None) -> dict[str, float]:
        now = time.monotonic() if now is None else now
        return {a: (now - t if t is not None else 0.0) for a, t in self._busy_since.items()}

    def overdue(self, now: float | None = None) -> list[str]:
        return [a for a, s in self.busy_seconds(now).items() if s > self.timeout]


class CommitWatch:
    """Remembers when offsets were last committed: a stuck consumer stops moving it."""

    last_commit_timestamp: float | None = None

    def committed(self) -> None:
        self.last_commit_timestamp = time.time()


class Outage:
    """Tells a failing dependency from a flapping log: one line when it starts failing, one when
    it works again, and a backoff that grows to `max_backoff` seconds in between.

        outage = Outage("restore")
        try: ...; outage.recovered()
        except KafkaError as exc: outage.failed(exc); await asyncio.sleep(outage.backoff())
    """

    def __init__(self, what: str, max_backoff: float = 10.0) -> None:
        self.what = what
        self.max_backoff = max_backoff
        self.failures = 0
        self.since: float | None = None

    @property
    def failing(self) -> bool:
        return self.since is not None

    def failed(self, exc: BaseException) -> None:
        self.failures += 1
        if self.since is None:
            self.since = time.monotonic()
            log.error("%s failing: %r (retrying with backoff; logged again when it works)",
                      self.what, exc)

    def recovered(self) -> None:
        if self.since is not None:
            log.warning("%s works again after %.0fs and %d attempts",
                        self.what, time.monotonic() - self.since, self.failures)
        self.since, self.failures = None, 0

    def backoff(self) -> float:
        return min(self.max_backoff, 0.5 * 2 ** min(self.failures, 8))
