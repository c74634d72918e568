"""Base for the Python wrappers of deploy/<server>/<server>.sh (Prometheus, Alertmanager).

    class LocalPrometheus(ScriptServer):
        script = DEPLOY_DIR / "prometheus" / "prometheus.sh"
        env_prefix = "PROMETHEUS"

The script does the work (start in the background, wait until GET /-/ready answers, pid file,
stop); this class passes port, configuration and data dir through the environment and turns a
failing script into an exception that carries the script's output. Stdlib only.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self

DEPLOY_DIR = Path(__file__).resolve().parents[2] / "deploy"
_SCRIPT_TIMEOUT_S = 120


class ServerError(RuntimeError):
    """A server script failed, or the server answered an HTTP request with an error."""


class ServerStartError(ServerError):
    """The server could not be started (binary missing, port taken, bad config, timeout)."""


class ScriptServer:
    script: ClassVar[Path]
    env_prefix: ClassVar[str]

    def __init__(self, port: int, config_file: Path, data_dir: Path) -> None:
        self.port = int(port)
        self.config_file = Path(config_file).resolve()
        self.data_dir = Path(data_dir).resolve()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> Self:
        """Start the server and return once /-/ready answers; a no-op if it already runs."""
        result = self._run("start", ServerStartError)
        if result.returncode != 0:
            raise ServerStartError(self._describe("start", result))
        return self

    def stop(self) -> None:
        """SIGTERM (SIGKILL after 30 s); a no-op if it is not running."""
        result = self._run("stop", ServerError)
        if result.returncode != 0:
            raise ServerError(self._describe("stop", result))

    def is_running(self) -> bool:
        return self._run("status", ServerError).returncode == 0

    def reload(self) -> None:
        """Re-read the configuration file (POST /-/reload); raises if the new one is invalid."""
        self._request("POST", "/-/reload")

    def log_tail(self, chars: int = 3000) -> str:
        log = self.data_dir / f"{self.script.stem}.log"
        return log.read_text(errors="replace")[-chars:] if log.exists() else "(no log)"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(port={self.port}, config_file={str(self.config_file)!r}, "
            f"data_dir={str(self.data_dir)!r})"
        )

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

    # -- script ---------------------------------------------------------------------------
    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env[f"{self.env_prefix}_PORT"] = str(self.port)
        env[f"{self.env_prefix}_CONFIG"] = str(self.config_file)
        env[f"{self.env_prefix}_DATA_DIR"] = str(self.data_dir)
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
                timeout=_SCRIPT_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise error(f"{self.script.name} {command} timed out for {self!r}") from exc
        except OSError as exc:
            raise error(f"could not run {self.script}: {exc}") from exc

    def _describe(self, command: str, result: subprocess.CompletedProcess[str]) -> str:
        return (
            f"{self.script.name} {command} failed (exit {result.returncode}) for {self!r}:\n"
            f"{result.stdout.rstrip()}"
        )
