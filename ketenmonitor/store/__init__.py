"""The case-fact store: event-time history of every case, for reports and stuck-case lists.

    sink = CaseFactSink.from_url("sqlite:///ketenmonitor-store.db", chain)
    sink.start()                      # applies the Alembic migrations
    sink.add(pseudonym, case_state)   # after each applied event; buffered
    sink.flush()                      # one transaction: idempotent upserts keyed by case and key

Prometheus answers "what is happening now"; this store answers "what happened in October" and
"which cases are stuck", in event time. It holds pseudonyms only, never a partner's case key.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ketenmonitor.store.engine import make_engine, upgrade
    from ketenmonitor.store.errors import StoreError
    from ketenmonitor.store.sink import CaseFactSink

__all__ = ["CaseFactSink", "StoreError", "make_engine", "upgrade"]


def __getattr__(name: str) -> Any:
    """The names above, imported on first use: SQLAlchemy and Alembic take most of a second to
    import, which the command line's other commands and a worker without a store need not pay."""
    if name == "CaseFactSink":
        from ketenmonitor.store.sink import CaseFactSink

        return CaseFactSink
    if name == "StoreError":
        from ketenmonitor.store.errors import StoreError

        return StoreError
    if name in ("make_engine", "upgrade"):
        from ketenmonitor.store import engine

        return getattr(engine, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
