"""Start and stop a private PostgreSQL cluster from Python (for tests and local use).

    with LocalPostgres(port=free_port(), data_dir=Path("/var/tmp/km-pg")) as pg:
        engine = make_engine(pg.url)          # postgresql://postgres@127.0.0.1:<port>/ketenmonitor

A thin wrapper over deploy/postgres/postgres.sh, which does the work (initdb on first start, pg_ctl,
waiting until connections are accepted). As root the cluster runs as the `postgres` OS user, so
`data_dir` must lie where that user can reach it (not under a private pytest or home directory).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ketenmonitor.infra.script_server import (
    DEPLOY_DIR,
    ScriptRunner,
    ServerError,
    ServerStartError,
)

__all__ = ["POSTGRES_SCRIPT", "LocalPostgres", "PostgresError", "PostgresStartError"]

POSTGRES_SCRIPT = DEPLOY_DIR / "postgres" / "postgres.sh"


class PostgresError(ServerError):
    """postgres.sh failed; the message carries its output."""


class PostgresStartError(PostgresError, ServerStartError):
    """The cluster could not be started (no binaries, initdb failed, port taken, timeout)."""


class LocalPostgres(ScriptRunner):
    script = POSTGRES_SCRIPT
    error = PostgresError
    start_error = PostgresStartError
    script_timeout_s = 180

    def __init__(
        self, port: int, data_dir: Path, database: str = "ketenmonitor", fsync: bool = True
    ) -> None:
        self.port = int(port)
        self.data_dir = Path(data_dir).resolve()
        self.database = database
        self.fsync = fsync  # off only for throwaway test clusters: a crash may corrupt them

    @property
    def url(self) -> str:
        return self.url_for(self.database)

    def url_for(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _repr_fields(self) -> Iterable[tuple[str, object]]:
        return (("port", self.port), ("data_dir", self.data_dir))

    def _log_file(self) -> Path:
        return self.data_dir / "postgres.log"

    def _script_env(self) -> dict[str, str]:
        return {
            "PG_PORT": str(self.port),
            "PG_DATA_DIR": str(self.data_dir),
            "PG_DATABASE": self.database,
            "PG_FSYNC": "on" if self.fsync else "off",
        }
