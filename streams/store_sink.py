"""The case-fact store as seen from the worker (only when KETENMONITOR_STORE_URL is set).

    sink = open_store_sink(settings, chain)     # None without a store URL
    await asyncio.to_thread(sink.write_states, batch_states)   # per batch, before its commit

The worker writes each batch's newest case states in a thread, after the batch's records are
acknowledged and before its offsets are committed (streams/pipeline.py): a committed offset never
belongs to an event whose case facts are not in the store, and the event loop never waits on the
database. A write that fails (database away) is retried until it succeeds; meanwhile no offset is
committed and, once three batches wait, no new batch is taken.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ketenmonitor.domain.chain import Chain
from ketenmonitor.settings import Settings

if TYPE_CHECKING:
    from ketenmonitor.store import CaseFactSink


def open_store_sink(settings: Settings, chain: Chain) -> CaseFactSink | None:
    if not settings.store_url:
        return None
    # Imported here: SQLAlchemy and Alembic take most of a second to import, which a worker
    # without a store (and every test that starts one) need not pay.
    from ketenmonitor.store import CaseFactSink

    sink = CaseFactSink.from_url(settings.store_url, chain)
    sink.start()  # migrations: a worker with a store it cannot use fails at start, not mid-stream
    return sink
