"""Wiring of the case-fact store into the Faust worker (only when KETENMONITOR_STORE_URL is set).

    sink = attach_store(app, settings, chain)      # None without a store URL
    ... in the cases agent:  sink.add(pseudonym, new_state)

The sink is flushed every second, on stop, and just before faust commits offsets: a committed
offset then never belongs to an event whose case facts are still only in memory, so a crash loses
nothing that redelivery would not bring back. A flush that fails (database away) keeps its
buffer and is retried on the next tick; the monitor's metrics keep flowing meanwhile.
"""

from __future__ import annotations

import logging
from typing import Any

import faust
from faust.sensors import Sensor

from ketenmonitor.domain.chain import Chain
from ketenmonitor.settings import Settings
from ketenmonitor.store import CaseFactSink, StoreError

log = logging.getLogger(__name__)
FLUSH_INTERVAL_SECONDS = 1.0


def attach_store(app: faust.App, settings: Settings, chain: Chain) -> CaseFactSink | None:
    if not settings.store_url:
        return None
    sink = CaseFactSink.from_url(settings.store_url, chain)
    sink.start()  # migrations: a worker with a store it cannot use fails at start, not mid-stream

    @app.timer(FLUSH_INTERVAL_SECONDS)
    async def flush_case_facts() -> None:
        _flush(sink)

    @app.on_before_shutdown.connect
    async def flush_case_facts_on_stop(sender: Any, **kwargs: Any) -> None:
        _flush(sink)

    app.sensors.add(_FlushBeforeCommit(sink))
    return sink


def _flush(sink: CaseFactSink) -> None:
    try:
        sink.flush()
    except StoreError as exc:
        log.error("case-fact store: %s (%d cases kept for the next flush)", exc, sink.pending)


class _FlushBeforeCommit(Sensor):  # type: ignore[misc]
    def __init__(self, sink: CaseFactSink) -> None:
        super().__init__()
        self._sink = sink

    def on_commit_initiated(self, consumer: Any) -> Any:
        _flush(self._sink)
        return None
