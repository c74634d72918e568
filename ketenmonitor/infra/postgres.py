"""Start and stop a private PostgreSQL cluster from Python (for tests and local use).

    with LocalPostgres(port=free_port(), data_dir=Path("/var/tmp/km-pg")) as pg:
        engine = make_engine(pg.url)          # postgresql://postgres@127.0.0.1:<port>/ketenmonitor

A thin wrapper over deploy/postgres/postgres.sh, which does the work (initdb on first start, pg_ctl,
waiting until connections are accepted). As root the cluster runs as the `postgres` OS user, so
`data_dir` must lie where that user can reach it (not under a private pytest or home directory).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from types import TracebackType
from typing import Self

POSTGRES_SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "postgres" / "postgres.sh"
_SCRIPT_TIMEOUT_S = 180


class PostgresError(RuntimeError):
    """postgres.sh failed; the message carries its output."""


class LocalPostgres:
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

    def start(self) -> None:
        """Start the cluster (initdb the first time) and return once it accepts connections."""
        self._run("start")

    def stop(self) -> None:
        self._run("stop")

    def is_running(self) -> bool:
        return self._run("status", check=False).returncode == 0

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"LocalPostgres(port={self.port}, data_dir={self.data_dir!r})"

    def _run(self, command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "PG_PORT": str(self.port),
            "PG_DATA_DIR": str(self.data_dir),
            "PG_DATABASE": self.database,
            "PG_FSYNC": "on" if self.fsync else "off",
        }
        try:
            result = subprocess.run(
                ["bash", str(POSTGRES_SCRIPT), command],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=_SCRIPT_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PostgresError(f"postgres.sh {command} for {self!r} failed: {exc}") from exc
        if check and result.returncode != 0:
            raise PostgresError(
                f"postgres.sh {command} failed (exit {result.returncode}) for {self!r}:\n"
                f"{result.stdout.rstrip()}"
            )
        return result
