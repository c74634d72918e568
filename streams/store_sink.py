"""The case-fact store as seen from the worker (only when KETENMONITOR_STORE_URL is set).

    sink = open_store_sink(settings, chain)     # None without a store URL
    sink.add(pseudonym, new_state)               # per processed case event
    flush_store_sink(sink)                       # before every offset commit and on stop

The worker flushes just before it commits offsets: a committed offset then never belongs to an
event whose case facts are still only in memory, so a crash loses nothing that redelivery would
not bring back. A flush that fails (database away) keeps its buffer and is retried at the next
commit; the monitor's metrics keep flowing meanwhile.
"""

from __future__ import annotations

import logging

from ketenmonitor.domain.chain import Chain
from ketenmonitor.settings import Settings
from ketenmonitor.store import CaseFactSink, StoreError

log = logging.getLogger(__name__)


def open_store_sink(settings: Settings, chain: Chain) -> CaseFactSink | None:
    if not settings.store_url:
        return None
    sink = CaseFactSink.from_url(settings.store_url, chain)
    sink.start()  # migrations: a worker with a store it cannot use fails at start, not mid-stream
    return sink


def flush_store_sink(sink: CaseFactSink | None) -> None:
    if sink is None:
        return
    try:
        sink.flush()
    except StoreError as exc:
        log.error("case-fact store: %s (%d cases kept for the next flush)", exc, sink.pending)
