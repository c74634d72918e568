"""Start and stop a local single-node Kafka broker from Python.

A thin wrapper over ``deploy/kafka/kafka.sh`` (the script does the work: fetching
the jars from Maven Central, formatting KRaft storage, waiting until the broker
answers). Stdlib only, so tests and tools can use it without extra dependencies.

    with LocalKafkaBroker(port=19092, data_dir=tmp) as broker:
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers)

Secure mode (SASL_PLAINTEXT, SCRAM-SHA-512, ACLs enforced; docs/security.md): the users and their
passwords are given by the caller (never from code) and must include the super user `admin`:

    broker = LocalKafkaBroker(port=..., data_dir=tmp, secure=True, users={"admin": pw, ...})
    KafkaProducer(bootstrap_servers=broker.bootstrap_servers, **broker.client_security("police"))
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

__all__ = ["KAFKA_SCRIPT", "BrokerError", "BrokerStartError", "LocalKafkaBroker"]

#: ketenmonitor/infra/kafka_broker.py -> <repo>/deploy/kafka/kafka.sh
KAFKA_SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "kafka" / "kafka.sh"

# The first start resolves ~45 MB of jars through Maven; after that a start takes
# seconds and the script enforces its own KAFKA_START_TIMEOUT. This only guards
# against a hung mvn.
_SCRIPT_TIMEOUT_S = 900


class BrokerError(RuntimeError):
    """The kafka.sh script failed; the message carries its output."""


class BrokerStartError(BrokerError):
    """The broker could not be started (bad ports, no java/mvn, startup timeout...)."""


class LocalKafkaBroker:
    """A single-node KRaft broker on 127.0.0.1, managed by deploy/kafka/kafka.sh.

    ``controller_port`` defaults to ``port + 1``; ``data_dir`` defaults to the
    script's own default (``<repo>/.cache/kafka/data-<port>``). Storage in
    ``data_dir`` survives ``stop()``, so a later ``start()`` reuses the topics.
    ``secure=True`` starts it with SASL/SCRAM and the authorizer; ``users`` (name ->
    password) are created when the storage is formatted, so a secure broker wants a
    fresh ``data_dir``.
    """

    def __init__(
        self,
        port: int = 9092,
        controller_port: int | None = None,
        data_dir: Path | None = None,
        secure: bool = False,
        users: Mapping[str, str] | None = None,
    ) -> None:
        self.port = int(port)
        self.controller_port = (
            int(controller_port) if controller_port is not None else self.port + 1
        )
        self.data_dir = Path(data_dir).resolve() if data_dir is not None else None
        self.secure = secure
        self._users = dict(users or {})
        if secure and "admin" not in self._users:
            raise ValueError("a secure broker needs users, including the super user 'admin'")
        if users and not secure:
            raise ValueError("users are only for a secure broker (secure=True)")

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client_security(self, user: str, password: str | None = None) -> dict[str, Any]:
        """kafka-python settings to log in as `user` (its password unless one is given)."""
        if not self.secure:
            return {}
        return {
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_plain_username": user,
            "sasl_plain_password": self._users[user] if password is None else password,
        }

    def settings_env(self, user: str) -> dict[str, str]:
        """KETENMONITOR_* variables for a process that logs in as `user` (e.g. a worker)."""
        env = {"KETENMONITOR_KAFKA_BOOTSTRAP": self.bootstrap_servers}
        if self.secure:
            env |= {
                "KETENMONITOR_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                "KETENMONITOR_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                "KETENMONITOR_KAFKA_USERNAME": user,
                "KETENMONITOR_KAFKA_PASSWORD": self._users[user],
            }
        return env

    def start(self) -> None:
        """Start the broker and return once it answers; a no-op if it already runs."""
        result = self._run("start", error=BrokerStartError)
        if result.returncode != 0:
            raise BrokerStartError(self._describe("start", result))

    def stop(self) -> None:
        """Stop the broker (SIGTERM, SIGKILL after 30 s); a no-op if it is not running."""
        result = self._run("stop", error=BrokerError)
        if result.returncode != 0:
            raise BrokerError(self._describe("stop", result))

    def is_running(self) -> bool:
        """True if the broker process is alive and its port accepts connections."""
        return self._run("status", error=BrokerError).returncode == 0

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
        # Never the passwords.
        return (
            f"LocalKafkaBroker(port={self.port}, controller_port={self.controller_port}, "
            f"data_dir={self.data_dir!r}, secure={self.secure})"
        )

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["KAFKA_PORT"] = str(self.port)
        env["KAFKA_CONTROLLER_PORT"] = str(self.controller_port)
        if self.data_dir is not None:
            env["KAFKA_DATA_DIR"] = str(self.data_dir)
        else:
            # An inherited KAFKA_DATA_DIR was meant for some other broker/port.
            env.pop("KAFKA_DATA_DIR", None)
        # Security settings are this broker's, never inherited from the caller's environment.
        for name in ("KAFKA_SECURITY", "KAFKA_SCRAM_CREDENTIALS", "KAFKA_SCRAM_CREDENTIALS_FILE"):
            env.pop(name, None)
        env.pop("KAFKA_ADMIN_USER", None)
        if self.secure:
            env["KAFKA_SECURITY"] = "scram"
            # In the child's environment (readable only by its owner), not on a command line.
            env["KAFKA_SCRAM_CREDENTIALS"] = "\n".join(f"{u}={p}" for u, p in self._users.items())
        return env

    def _run(
        self, command: str, *, error: type[BrokerError]
    ) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                ["bash", str(KAFKA_SCRIPT), command],
                env=self._env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=_SCRIPT_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired as e:
            out = (
                e.stdout.decode(errors="replace")
                if isinstance(e.stdout, bytes)
                else (e.stdout or "")
            )
            raise error(
                f"kafka.sh {command} timed out after {_SCRIPT_TIMEOUT_S}s:\n{out}"
            ) from e
        except OSError as e:
            raise error(f"could not run {KAFKA_SCRIPT}: {e}") from e

    def _describe(self, command: str, result: subprocess.CompletedProcess[str]) -> str:
        return (
            f"kafka.sh {command} failed (exit {result.returncode}) for {self!r}:\n"
            f"{result.stdout.rstrip()}"
        )
