"""Runtime settings, read once from the environment (prefix KETENMONITOR_).

    settings = Settings()                       # from the environment
    settings = Settings(kafka_bootstrap="127.0.0.1:19092", partitions=3)

Secrets (the pseudonymisation key, the Kafka password) come from the environment or a file, never
from code, and are kept as SecretStr so that they do not show up in a repr or a log line. Kafka
clients get their security settings from one place (docs/security.md):

    KafkaProducer(bootstrap_servers=..., **settings.kafka_python_security())   # kafka-python
"""

from __future__ import annotations

import socket
import ssl
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import AwareDatetime, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    # hide_input_in_errors: a validation error must never echo a value it was given (a password, a
    # key); the message names the variable and what is wrong with it.
    model_config = SettingsConfigDict(
        env_prefix="KETENMONITOR_", frozen=True, extra="forbid", hide_input_in_errors=True
    )

    kafka_bootstrap: str = "127.0.0.1:9092"
    topic_prefix: str = Field(default="ketenmonitor", pattern=r"^[A-Za-z0-9._-]+$")
    partitions: int = Field(default=6, ge=1, le=256)
    # Replication of every topic the monitor creates (partner, case, dead-letter, changelogs);
    # unset: the cluster's default.replication.factor and min.insync.replicas. A worker refuses
    # to start on topics with fewer replicas, or fewer in-sync replicas, than these
    # (streams/topics.py).
    replication_factor: int | None = Field(default=None, ge=1)
    min_insync_replicas: int | None = Field(default=None, ge=1)
    app_id: str = "ketenmonitor"
    chain_file: Path | None = None
    pseudonym_key: SecretStr | None = None
    pseudonym_key_file: Path | None = None
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9464
    # Backlog ages are measured against this moment; unset means the wall clock. Set it to replay
    # history or to make a test deterministic.
    age_reference_time: AwareDatetime | None = None
    processing_timeout_seconds: float = 10.0
    # How fast the group notices a worker that died (kill -9): Kafka session timeout.
    session_timeout_seconds: float = Field(default=30.0, ge=6.0)
    # Events are processed in batches of at most batch_size (what one fetch returns), waiting at
    # most batch_seconds for one; up to 3 batches are written while the next is processed.
    batch_size: int = Field(default=5000, ge=1)
    batch_seconds: float = Field(default=0.05, gt=0)
    # Owners publish their partitions' totals to the totals topic at most this often; what
    # /metrics shows lags the processed events by about this much (docs/metrics.md). 0.25 s keeps
    # the live latency's p99 under 1 s at 5,000 events/s (1 s: about 1.3 s; bench/analysis.md).
    totals_publish_seconds: float = Field(default=0.25, gt=0, le=60)
    # Exactly-once mode (docs/operations.md, Delivery): every batch's output and its consumer
    # offsets in one Kafka transaction; the worker's own topics are read read_committed. Off by
    # default: at-least-once with idempotent updates.
    exactly_once: bool = False
    # Where a case's state lives (streams/placement.py): "pseudonym" (rule version 1, every event
    # re-keyed through the case topic) or "case-key" (version 2: Kafka's default partitioner over
    # the case key, which lets partners that key by case skip the case topic). Recorded by the
    # first worker of a deployment; a worker configured otherwise refuses to start.
    case_placement: Literal["pseudonym", "case-key"] = "pseudonym"
    # Partners that key their messages by the case key (comma-separated partner ids): their
    # events are applied where they arrive (one hop) when the key checks out, and the partner-side
    # tools (`ketenmonitor publish`, `simulate`, `demo`) key their messages by case. Needs
    # case_placement=case-key. Other partners' events take the re-keying path.
    one_hop_partners: str = Field(default="", pattern=r"^[A-Za-z0-9_, -]*$")
    # The worker's stable identity in exactly-once mode: its transactional id is
    # `<app_id>-worker-<worker_id>`; a restarted worker with the same id fences its predecessor
    # (aborts its open transaction). Unset: `<host name>-<metrics port>`. Two live workers must
    # never share one.
    worker_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]+$")
    # Closed cases whose latest event lies more than this many days before the age reference time
    # leave the worker's state: their changelog record becomes a small marker and what they
    # contributed to the totals stays in a per-partition aggregate record (streams/retirement.py,
    # docs/operations.md). An event that arrives for such a case afterwards goes to the
    # dead-letter topic (reason `case_retired`) and is counted. Unset: no case is ever retired.
    closed_case_retention_days: float | None = Field(default=None, ge=0)
    # Local state directory (streams/state_store.py): checkpoints of the owned `cases` changelog
    # partitions, so that a restart or a returning partition reads only the changelog's tail.
    # Unset: no local state; every restore reads the changelogs from their beginning.
    state_dir: Path | None = None
    # How often a worker with a state directory checkpoints its partitions (between batches).
    checkpoint_seconds: float = Field(default=60.0, gt=0)
    # While the worker is catching up (its last batch was full: more input is waiting), a periodic
    # checkpoint waits until this many changelog records were written since the last one (what a
    # restart would read as the tail, ~10 s at a restore's rate): its metrics are behind anyway,
    # and writing every state once more would slow the catch-up. 0: never wait.
    checkpoint_catch_up_records: int = Field(default=1_000_000, ge=0)
    # The worker's cyclic garbage collector: its youngest generation is collected after this many
    # new container objects (Python's default is 700). A batch's events live until Kafka has
    # acknowledged it, so at 700 they are traversed again and again and promoted, and full
    # collections of them took a third of the worker's CPU (streams/worker.py
    # `tune_garbage_collector`; bench/analysis.md). 0: Python's own settings, nothing frozen.
    gc_young_threshold: int = Field(default=100_000, ge=0)
    # Changelogs this worker creates: a record superseded by a later one of its key (a case's
    # earlier state, the state of a case since retired) is compacted away at most this long
    # after it was written (Kafka max.compaction.lag.ms; the active segment rolls by then too).
    # Bounds what a restore from the changelog reads beyond the live state; keep it at hours or
    # more, far above a restore's duration (docs/operations.md: a zombie's late write).
    changelog_max_compaction_lag_seconds: float = Field(default=86_400.0, ge=1)
    # Case-fact store (docs/store.md), e.g. sqlite:///var/ketenmonitor/store.db or
    # postgresql://user@host/db; unset: the worker writes no store.
    store_url: str | None = None
    # Kafka client security (docs/security.md): PLAINTEXT for a local development broker; against a
    # secure broker SASL (SCRAM) with one principal per partner, one for the workers.
    kafka_security_protocol: Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = "SCRAM-SHA-512"
    kafka_username: str | None = None
    kafka_password: SecretStr | None = None
    kafka_password_file: Path | None = None
    # SASL_SSL: the CA that signed the broker's certificate; unset means the system's CAs.
    kafka_ssl_cafile: Path | None = None

    @model_validator(mode="after")
    def _one_key_source(self) -> Settings:
        if self.pseudonym_key is not None and self.pseudonym_key_file is not None:
            raise ValueError(
                "set KETENMONITOR_PSEUDONYM_KEY or KETENMONITOR_PSEUDONYM_KEY_FILE, not both"
            )
        return self

    @model_validator(mode="after")
    def _min_insync_within_replication(self) -> Settings:
        # Every acks=all write would fail: no partition has more in-sync replicas than replicas.
        rf, isr = self.replication_factor, self.min_insync_replicas
        if rf is not None and isr is not None and isr > rf:
            raise ValueError(
                f"KETENMONITOR_MIN_INSYNC_REPLICAS ({isr}) is larger than "
                f"KETENMONITOR_REPLICATION_FACTOR ({rf})"
            )
        return self

    @model_validator(mode="after")
    def _kafka_credentials_complete(self) -> Settings:
        password_sources = (self.kafka_password, self.kafka_password_file)
        if None not in password_sources:
            raise ValueError(
                "set KETENMONITOR_KAFKA_PASSWORD or KETENMONITOR_KAFKA_PASSWORD_FILE, not both"
            )
        has_password = password_sources != (None, None)
        if not self.kafka_sasl:
            # Credentials without SASL would go unused: the client would connect anonymously.
            if self.kafka_username is not None or has_password:
                raise ValueError(
                    "Kafka credentials are set, but KETENMONITOR_KAFKA_SECURITY_PROTOCOL is "
                    "PLAINTEXT"
                )
        elif self.kafka_username is None or not has_password:
            raise ValueError(
                f"KETENMONITOR_KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs "
                "KETENMONITOR_KAFKA_USERNAME and KETENMONITOR_KAFKA_PASSWORD(_FILE)"
            )
        return self

    @model_validator(mode="after")
    def _one_hop_needs_case_key_placement(self) -> Settings:
        if self.one_hop_partner_ids and self.case_placement != "case-key":
            raise ValueError(
                "KETENMONITOR_ONE_HOP_PARTNERS needs KETENMONITOR_CASE_PLACEMENT=case-key: under "
                "the pseudonym placement no partner can key a message into its case's partition"
            )
        return self

    @property
    def one_hop_partner_ids(self) -> frozenset[str]:
        return frozenset(p.strip() for p in self.one_hop_partners.split(",") if p.strip())

    # -- derived names -------------------------------------------------------------------------
    def partner_topic(self, partner: str) -> str:
        return f"{self.topic_prefix}.events.{partner}"

    @property
    def cases_topic(self) -> str:
        return f"{self.topic_prefix}.cases"

    @property
    def dead_letter_topic(self) -> str:
        return f"{self.topic_prefix}.dead-letter"

    def changelog_topic(self, table: str) -> str:
        """The compacted topic that holds a worker table (`cases`, `ingest-stats`) durably."""
        return f"{self.app_id}-{table}-changelog"

    def transactional_id(self) -> str:
        """The transactional id of this worker's producer in exactly-once mode."""
        worker = self.worker_id or f"{socket.gethostname()}-{self.metrics_port}"
        return f"{self.app_id}-worker-{worker}"

    @property
    def isolation_level(self) -> str:
        """How the worker reads the topics it writes itself (case topic, changelogs, totals)."""
        return "read_committed" if self.exactly_once else "read_uncommitted"

    def new_topic_replication(self) -> tuple[int, dict[str, str]]:
        """(replication factor, topic configs) for creating a topic: -1 and no min.insync.replicas
        of its own mean the cluster's defaults (CreateTopics v4+, Kafka 2.4 and later)."""
        configs = {}
        if self.min_insync_replicas is not None:
            configs["min.insync.replicas"] = str(self.min_insync_replicas)
        rf = self.replication_factor if self.replication_factor is not None else -1
        return rf, configs

    def pseudonym_secret(self) -> bytes:
        """The HMAC key; a missing key is a start-up error, not a silent default."""
        if self.pseudonym_key_file is not None:
            secret = _read_secret_file(self.pseudonym_key_file, "KETENMONITOR_PSEUDONYM_KEY_FILE")
        elif self.pseudonym_key is not None:
            secret = self.pseudonym_key.get_secret_value().encode()
        else:
            raise MissingSecretError(
                "no pseudonymisation key: set KETENMONITOR_PSEUDONYM_KEY or "
                "KETENMONITOR_PSEUDONYM_KEY_FILE"
            )
        if len(secret) < 16:
            raise MissingSecretError("the pseudonymisation key must be at least 16 bytes")
        return secret

    # -- Kafka client security -------------------------------------------------------------------
    @property
    def kafka_sasl(self) -> bool:
        return self.kafka_security_protocol != "PLAINTEXT"

    def kafka_password_value(self) -> str:
        """The Kafka password (from the file if one is set); only for handing to a client."""
        if self.kafka_password_file is not None:
            path = self.kafka_password_file
            return _read_secret_file(path, "KETENMONITOR_KAFKA_PASSWORD_FILE").decode()
        if self.kafka_password is not None:
            return self.kafka_password.get_secret_value()
        raise MissingSecretError("no Kafka password: set KETENMONITOR_KAFKA_PASSWORD(_FILE)")

    def kafka_ssl_context(self) -> ssl.SSLContext | None:
        """For SASL_SSL: a verifying TLS context (the given CA, else the system's); else None."""
        if self.kafka_security_protocol != "SASL_SSL":
            return None
        cafile = str(self.kafka_ssl_cafile) if self.kafka_ssl_cafile is not None else None
        return ssl.create_default_context(cafile=cafile)

    def kafka_python_security(self) -> dict[str, Any]:
        """Keyword arguments for the Kafka clients (kafka-python and aiokafka share the names)."""
        if not self.kafka_sasl:
            return {}
        config: dict[str, Any] = {
            "security_protocol": self.kafka_security_protocol,
            "sasl_mechanism": self.kafka_sasl_mechanism,
            "sasl_plain_username": self.kafka_username,
            "sasl_plain_password": self.kafka_password_value(),
        }
        if self.kafka_security_protocol == "SASL_SSL":
            config["ssl_context"] = self.kafka_ssl_context()
        return config

    def age_reference_timestamp(self, now: float) -> float:
        return self.age_reference_time.timestamp() if self.age_reference_time else now


class MissingSecretError(RuntimeError):
    pass


def _read_secret_file(path: Path, variable: str) -> bytes:
    """The stripped contents of a secret file; a file that cannot be read names the variable."""
    try:
        return path.read_bytes().strip()
    except OSError as exc:
        raise MissingSecretError(
            f"cannot read {variable}={path}: {exc.strerror or exc} (point it at a readable file)"
        ) from None


def utc_timestamp(value: datetime) -> float:
    return value.timestamp()
