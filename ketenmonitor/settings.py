"""Runtime settings, read once from the environment (prefix KETENMONITOR_).

    settings = Settings()                       # from the environment
    settings = Settings(kafka_bootstrap="127.0.0.1:19092", partitions=3)

Secrets (the pseudonymisation key) come from the environment or a file, never from code, and are
kept as SecretBytes so that they do not show up in a repr or a log line.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from pydantic import AwareDatetime, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KETENMONITOR_", frozen=True, extra="forbid")

    kafka_bootstrap: str = "127.0.0.1:9092"
    topic_prefix: str = Field(default="ketenmonitor", pattern=r"^[A-Za-z0-9._-]+$")
    partitions: int = Field(default=6, ge=1, le=256)
    app_id: str = "ketenmonitor"
    chain_file: Path | None = None
    pseudonym_key: SecretStr | None = None
    pseudonym_key_file: Path | None = None
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9464
    data_dir: Path = Path(".cache/worker")
    store: str = "memory://"
    # Backlog ages are measured against this moment; unset means the wall clock. Set it to replay
    # history or to make a test deterministic.
    age_reference_time: AwareDatetime | None = None
    processing_timeout_seconds: float = 10.0
    # How fast the group notices a worker that died (kill -9): Kafka session timeout.
    session_timeout_seconds: float = Field(default=30.0, ge=6.0)
    # Events are processed in batches of at most batch_size, or what arrived within batch_seconds.
    batch_size: int = Field(default=1000, ge=1)
    batch_seconds: float = Field(default=0.05, gt=0)
    # Case-fact store (docs/store.md), e.g. sqlite:///var/ketenmonitor/store.db or
    # postgresql://user@host/db; unset: the worker writes no store.
    store_url: str | None = None

    @model_validator(mode="after")
    def _one_key_source(self) -> Settings:
        if self.pseudonym_key is not None and self.pseudonym_key_file is not None:
            raise ValueError("set KETENMONITOR_PSEUDONYM_KEY or KETENMONITOR_PSEUDONYM_KEY_FILE, not both")
        return self

    # -- derived names -------------------------------------------------------------------------
    def partner_topic(self, partner: str) -> str:
        return f"{self.topic_prefix}.events.{partner}"

    @property
    def cases_topic(self) -> str:
        return f"{self.topic_prefix}.cases"

    @property
    def dead_letter_topic(self) -> str:
        return f"{self.topic_prefix}.dead-letter"

    def pseudonym_secret(self) -> bytes:
        """The HMAC key; a missing key is a start-up error, not a silent default."""
        if self.pseudonym_key_file is not None:
            secret = self.pseudonym_key_file.read_bytes().strip()
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

    def age_reference_timestamp(self, now: float) -> float:
        return self.age_reference_time.timestamp() if self.age_reference_time else now


class MissingSecretError(RuntimeError):
    pass


def utc_timestamp(value: datetime) -> float:
    return value.timestamp()
