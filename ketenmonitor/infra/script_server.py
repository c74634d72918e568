"""Python wrappers of the deploy/<server>/<server>.sh scripts: one lifecycle for all of them.

    class LocalPrometheus(ScriptServer):          # an HTTP server: port, config file, data dir
        script = DEPLOY_DIR / "prometheus" / "prometheus.sh"
        env_prefix = "PROMETHEUS"

    class LocalPostgres(ScriptRunner):            # anything else: say what the script gets
        script = DEPLOY_DIR / "postgres" / "postgres.sh"
        error = PostgresError
        def _script_env(self) -> dict[str, str]: return {"PG_PORT": str(self.port), ...}

The script does the work (start in the background, wait until the server is ready, pid file,
stop); a runner passes its settings through the environment and turns a failing script into an
exception that carries the script's output. `with runner:` starts and stops it. Stdlib only.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self

__all__ = [
    "DEPLOY_DIR",
    "ScriptRunner",
    "ScriptServer",
    "ServerError",
    "ServerStartError",
    "StartStopContext",
]

DEPLOY_DIR = Path(__file__).resolve().parents[2] / "deploy"


class ServerError(RuntimeError):
    """A server script failed, or the server answered an HTTP request with an error."""


class ServerStartError(ServerError):
    """The server could not be started (binary missing, port taken, bad config, timeout)."""


class StartStopContext:
    """`with x:` starts x (its `start` returns it) and stops it on the way out, whatever happened.

    Shared by the script runners, the local Kafka cluster and the worker process.
    """

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class ScriptRunner(StartStopContext):
    """Start, stop and query a server through `bash <script> start|stop|status`.

    A subclass sets `script`, says what the script gets in `_script_env` (and which inherited
    variables it must not see in `_script_env_drop`), names its log in `_log_file` and its
    settings for repr() in `_repr_fields`. `error`/`start_error` are what a failure raises.
    """

    script: ClassVar[Path]
    error: ClassVar[type[ServerError]] = ServerError
    start_error: ClassVar[type[ServerError]] = ServerStartError
    # The scripts enforce their own start timeouts; this only guards against a hung script.
    script_timeout_s: ClassVar[float] = 120

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> Self:
        """Start the server and return once the script says it is ready; a no-op if it runs."""
        result = self._run("start", self.start_error)
        if result.returncode != 0:
            raise self.start_error(self._describe("start", result))
        return self

    def stop(self) -> None:
        """SIGTERM (the scripts kill after a grace period); a no-op if it is not running."""
        result = self._run("stop", self.error)
        if result.returncode != 0:
            raise self.error(self._describe("stop", result))

    def is_running(self) -> bool:
        """True if the script finds the server's process alive and answering."""
        return self._run("status", self.error).returncode == 0

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the server's log, for error messages ("(no log)" if there is none)."""
        log = self._log_file()
        return log.read_text(errors="replace")[-chars:] if log.exists() else "(no log)"

    def __repr__(self) -> str:
        fields = ", ".join(
            f"{name}={str(value)!r}" if isinstance(value, Path) else f"{name}={value!r}"
            for name, value in self._repr_fields()
        )
        return f"{type(self).__name__}({fields})"

    # -- what a subclass says -------------------------------------------------------------
    def _script_env(self) -> dict[str, str]:
        raise NotImplementedError

    def _script_env_drop(self) -> Iterable[str]:
        """Inherited variables the script must not see (they were meant for another server)."""
        return ()

    def _log_file(self) -> Path:
        raise NotImplementedError

    def _repr_fields(self) -> Iterable[tuple[str, object]]:
        raise NotImplementedError

    # -- script ---------------------------------------------------------------------------
    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        for name in self._script_env_drop():
            env.pop(name, None)
        env.update(self._script_env())
        return env

    def _run(self, command: str, error: type[ServerError]) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                ["bash", str(self.script), command],
                env=self._env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=self.script_timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            # On POSIX the partial output is bytes even with text=True.
            out = exc.stdout
            if isinstance(out, bytes):
                out = out.decode(errors="replace")
            raise error(
                f"{self.script.name} {command} timed out after {self.script_timeout_s:g}s "
                f"for {self!r}:\n{(out or '').rstrip()}"
            ) from exc
        except OSError as exc:
            raise error(f"could not run {self.script}: {exc}") from exc

    def _describe(self, command: str, result: subprocess.CompletedProcess[str]) -> str:
        return (
            f"{self.script.name} {command} failed (exit {result.returncode}) for {self!r}:\n"
            f"{result.stdout.rstrip()}"
        )


class ScriptServer(ScriptRunner):
    """An HTTP server whose script takes <PREFIX>_PORT, _CONFIG and _DATA_DIR (Prometheus,
    Alertmanager): the script waits for GET /-/ready, POST /-/reload re-reads the config."""

    env_prefix: ClassVar[str]

    def __init__(self, port: int, config_file: Path, data_dir: Path) -> None:
        self.port = int(port)
        self.config_file = Path(config_file).resolve()
        self.data_dir = Path(data_dir).resolve()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reload(self) -> None:
        """Re-read the configuration file (POST /-/reload); raises if the new one is invalid."""
        self._request("POST", "/-/reload")

    def _script_env(self) -> dict[str, str]:
        return {
            f"{self.env_prefix}_PORT": str(self.port),
            f"{self.env_prefix}_CONFIG": str(self.config_file),
            f"{self.env_prefix}_DATA_DIR": str(self.data_dir),
        }

    def _log_file(self) -> Path:
        return self.data_dir / f"{self.script.stem}.log"

    def _repr_fields(self) -> Iterable[tuple[str, object]]:
        return (("port", self.port), ("config_file", self.config_file), ("data_dir", self.data_dir))

    # -- HTTP -----------------------------------------------------------------------------
    def _request(self, method: str, path: str, body: Any = None, timeout: float = 10.0) -> Any:
        """Send a request; return the decoded JSON answer (None for an empty or non-JSON one)."""
        data = None
        headers = {}
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:2000]
            raise ServerError(f"{method} {self.url}{path}: HTTP {exc.code}: {detail}") from exc
        except OSError as exc:
            raise ServerError(f"{method} {self.url}{path}: {exc}") from exc
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return None
