"""Start and stop a local Kafka broker (a single node, or one node of a cluster) from Python.

A thin wrapper over ``deploy/kafka/kafka.sh`` (the script does the work: fetching
the jars from Maven Central, formatting KRaft storage, waiting until the broker
answers). Stdlib only, so tests and tools can use it without extra dependencies.

    with LocalKafkaBroker(port=19092, data_dir=tmp) as broker:
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers)

Secure mode (SASL_PLAINTEXT, SCRAM-SHA-512, ACLs enforced; docs/security.md): the users and their
passwords are given by the caller (never from code) and must include the super user `admin`:

    broker = LocalKafkaBroker(port=..., data_dir=tmp, secure=True, users={"admin": pw, ...})
    KafkaProducer(bootstrap_servers=broker.bootstrap_servers, **broker.client_security("police"))

One node of a cluster (node_id, the voters and the cluster id): see LocalKafkaCluster in
ketenmonitor/infra/kafka_cluster.py, which builds and starts them.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ketenmonitor.infra.script_server import (
    DEPLOY_DIR,
    ScriptRunner,
    ServerError,
    ServerStartError,
)

__all__ = ["KAFKA_SCRIPT", "BrokerError", "BrokerStartError", "LocalKafkaBroker"]

KAFKA_SCRIPT = DEPLOY_DIR / "kafka" / "kafka.sh"
# kafka.sh's default data dir when KAFKA_DATA_DIR is not set (where log_tail() looks then).
_DEFAULT_DATA_ROOT = DEPLOY_DIR.parent / ".cache" / "kafka"
# Variables for kafka.sh that a broker never inherits from its caller's environment.
_SECURITY_VARS = (
    "KAFKA_SECURITY",
    "KAFKA_SCRAM_CREDENTIALS",
    "KAFKA_SCRAM_CREDENTIALS_FILE",
    "KAFKA_ADMIN_USER",
)
# Cluster membership is this broker's too: an inherited KAFKA_QUORUM_VOTERS would make a single
# node wait for voters that never come.
_CLUSTER_VARS = (
    "KAFKA_NODE_ID",
    "KAFKA_QUORUM_VOTERS",
    "KAFKA_CLUSTER_ID",
    "KAFKA_REPLICATION_FACTOR",
    "KAFKA_MIN_INSYNC_REPLICAS",
    "KAFKA_EXTRA_CONFIG",
)


def _alive(pid: int) -> bool:
    """True while `pid` runs; a zombie (killed, not yet reaped by its parent) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


class BrokerError(ServerError):
    """The kafka.sh script failed; the message carries its output."""


class BrokerStartError(BrokerError, ServerStartError):
    """The broker could not be started (bad ports, no java/mvn, startup timeout...)."""


class LocalKafkaBroker(ScriptRunner):
    """A single-node KRaft broker on 127.0.0.1, managed by deploy/kafka/kafka.sh.

    ``controller_port`` defaults to ``port + 1``; ``data_dir`` defaults to the
    script's own default (``<repo>/.cache/kafka/data-<port>``). Storage in
    ``data_dir`` survives ``stop()``, so a later ``start()`` reuses the topics.
    ``secure=True`` starts it with SASL/SCRAM and the authorizer; ``users`` (name ->
    password) are created when the storage is formatted, so a secure broker wants a
    fresh ``data_dir``.
    """

    script = KAFKA_SCRIPT
    error = BrokerError
    start_error = BrokerStartError
    # The first start resolves ~45 MB of jars through Maven; after that a start takes
    # seconds and the script enforces its own KAFKA_START_TIMEOUT. This only guards
    # against a hung mvn.
    script_timeout_s = 900

    def __init__(
        self,
        port: int = 9092,
        controller_port: int | None = None,
        data_dir: Path | None = None,
        secure: bool = False,
        users: Mapping[str, str] | None = None,
        *,
        node_id: int = 1,
        quorum_voters: str | None = None,
        cluster_id: str | None = None,
        replication_factor: int = 1,
        min_insync_replicas: int = 1,
        heap: str | None = None,
        jvm_opts: str | None = None,
        start_timeout: int | None = None,
        stop_timeout: int | None = None,
        extra_config: Mapping[str, str] | None = None,
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
        # Cluster membership and defaults (kafka.sh: KAFKA_NODE_ID, KAFKA_QUORUM_VOTERS, ...);
        # the defaults are a single node's.
        self.node_id = int(node_id)
        self.quorum_voters = quorum_voters
        self.cluster_id = cluster_id
        self.replication_factor = int(replication_factor)
        self.min_insync_replicas = int(min_insync_replicas)
        self.heap = heap
        self.jvm_opts = jvm_opts
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.extra_config = dict(extra_config or {})

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

    def _repr_fields(self) -> Iterable[tuple[str, object]]:
        # Never the passwords.
        return (
            ("port", self.port),
            ("controller_port", self.controller_port),
            ("data_dir", self.data_dir),
            ("secure", self.secure),
            ("node_id", self.node_id),
        )

    @contextmanager
    def frozen(self) -> Iterator[None]:
        """The running broker stopped (SIGSTOP) for the duration: it keeps its connections open
        but answers nothing, like a broker stuck in a long GC pause. SIGCONT on exit."""
        pid = int((self._data_dir() / "kafka.pid").read_text())
        os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(pid, signal.SIGCONT)

    def kill(self) -> None:
        """kill -9 of the broker's JVM: no clean shutdown, no log flush (a crashed machine).
        Returns once the process is gone; `start()` brings the node back on the same data."""
        pid_file = self._data_dir() / "kafka.pid"
        pid = int(pid_file.read_text())
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while _alive(pid):
            if time.monotonic() > deadline:
                raise self.error(f"broker pid {pid} still alive 30 s after SIGKILL")
            time.sleep(0.05)
        pid_file.unlink(missing_ok=True)

    def _data_dir(self) -> Path:
        return self.data_dir or _DEFAULT_DATA_ROOT / f"data-{self.port}"

    def _log_file(self) -> Path:
        return self._data_dir() / "kafka.log"

    def _script_env_drop(self) -> Iterable[str]:
        # An inherited KAFKA_DATA_DIR was meant for some other broker/port; security
        # settings are this broker's, never the caller's.
        return ("KAFKA_DATA_DIR", *_CLUSTER_VARS, *_SECURITY_VARS)

    def _script_env(self) -> dict[str, str]:
        env = {
            "KAFKA_PORT": str(self.port),
            "KAFKA_CONTROLLER_PORT": str(self.controller_port),
            "KAFKA_NODE_ID": str(self.node_id),
            "KAFKA_REPLICATION_FACTOR": str(self.replication_factor),
            "KAFKA_MIN_INSYNC_REPLICAS": str(self.min_insync_replicas),
        }
        if self.data_dir is not None:
            env["KAFKA_DATA_DIR"] = str(self.data_dir)
        if self.quorum_voters is not None:
            env["KAFKA_QUORUM_VOTERS"] = self.quorum_voters
        if self.cluster_id is not None:
            env["KAFKA_CLUSTER_ID"] = self.cluster_id
        if self.heap is not None:
            env["KAFKA_HEAP"] = self.heap
        if self.jvm_opts is not None:
            env["KAFKA_JVM_OPTS"] = self.jvm_opts
        if self.start_timeout is not None:
            env["KAFKA_START_TIMEOUT"] = str(self.start_timeout)
        if self.stop_timeout is not None:
            env["KAFKA_STOP_TIMEOUT"] = str(self.stop_timeout)
        if self.extra_config:
            env["KAFKA_EXTRA_CONFIG"] = "\n".join(f"{k}={v}" for k, v in self.extra_config.items())
        if self.secure:
            env["KAFKA_SECURITY"] = "scram"
            # In the child's environment (readable only by its owner), not on a command line.
            env["KAFKA_SCRAM_CREDENTIALS"] = "\n".join(f"{u}={p}" for u, p in self._users.items())
        return env
