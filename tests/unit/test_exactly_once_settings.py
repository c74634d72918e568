"""Exactly-once settings (KETENMONITOR_EXACTLY_ONCE, KETENMONITOR_WORKER_ID): off by default; the
transactional id is derived from the app id and a stable per-worker identity."""

from __future__ import annotations

import socket

import pytest
from pydantic import ValidationError

from ketenmonitor.settings import Settings


def test_exactly_once_is_off_by_default_and_reads_uncommitted() -> None:
    settings = Settings()
    assert settings.exactly_once is False
    assert settings.isolation_level == "read_uncommitted"


def test_exactly_once_reads_committed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KETENMONITOR_EXACTLY_ONCE", "true")
    assert Settings().isolation_level == "read_committed"


def test_the_transactional_id_is_the_app_id_and_the_worker_identity() -> None:
    settings = Settings(app_id="km", worker_id="worker-2")
    assert settings.transactional_id() == "km-worker-worker-2"
    default = Settings(app_id="km", metrics_port=9470)
    assert default.transactional_id() == f"km-worker-{socket.gethostname()}-9470"


def test_a_worker_id_is_a_plain_name() -> None:
    with pytest.raises(ValidationError):
        Settings(worker_id="a b/c")
