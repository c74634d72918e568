"""The store's error, in a module of its own: the command line catches it without importing
SQLAlchemy and Alembic (ketenmonitor.store.engine), which take most of a second to import."""


class StoreError(RuntimeError):
    """The store cannot be used: a bad URL, an unsupported database, a failed migration."""
