"""The access model on a real broker in secure mode (SASL/SCRAM, ACLs; docs/security.md).

A broker of its own (fresh ports, fresh storage) with one user per partner, one for the workers,
one operator and the super user admin; passwords are generated here. Topics and ACLs are created
with the same commands an operator runs (`ketenmonitor topics`, `ketenmonitor acl apply`).

Run: KETENMONITOR_TEST_KAFKA_PORT=<port> .venv/bin/pytest tests/integration/test_security.py
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import TopicAuthorizationFailedError

from ketenmonitor.domain.chain import load_chain
from ketenmonitor.infra.consumer_progress import wait_until_caught_up
from ketenmonitor.infra.kafka_broker import LocalKafkaBroker
from ketenmonitor.infra.worker_process import Samples, WorkerProcess, free_port
from ketenmonitor.kafka_io import PartnerPublisher
from ketenmonitor.settings import Settings
from ketenmonitor.simulator import contract_events, load_scenario, simulate_cases
from tests.integration.conftest import TEST_BROKER_JVM_OPTS

CHAIN = load_chain()
WORKERS, OPERATOR = "ketenmonitor", "operator"
PSEUDONYM_KEY = "security-test-key-0123456789"
PROBE = b"{}"  # what the write test publishes; the worker rejects it (missing fields)
PROBES_SENT: list[str] = []  # topics a probe went to, counted by the worker test


@dataclass
class SecureStack:
    broker: LocalKafkaBroker
    settings: Settings  # names only (no credentials): topics, app id

    def env(self, user: str) -> dict[str, str]:
        return {
            **self.broker.settings_env(user),
            "KETENMONITOR_TOPIC_PREFIX": self.settings.topic_prefix,
            "KETENMONITOR_APP_ID": self.settings.app_id,
        }

    def run_cli(self, user: str, *args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "ketenmonitor.cli", *args],
            env={**os.environ, **self.env(user)},
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        return result

    def producer(self, user: str) -> KafkaProducer:
        return KafkaProducer(
            bootstrap_servers=self.broker.bootstrap_servers,
            acks="all",
            max_block_ms=20_000,
            **self.broker.client_security(user),
        )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureStack]:
    users = {
        name: secrets.token_urlsafe(18)
        for name in ("admin", WORKERS, OPERATOR, *CHAIN.partner_ids)
    }
    broker = LocalKafkaBroker(
        port=free_port(),
        controller_port=free_port(),
        data_dir=tmp_path_factory.mktemp("kafka-secure"),
        secure=True,
        users=users,
        jvm_opts=TEST_BROKER_JVM_OPTS,
    )
    broker.start()
    try:
        run = uuid.uuid4().hex[:8]
        stack = SecureStack(
            broker,
            Settings(
                kafka_bootstrap=broker.bootstrap_servers,
                topic_prefix=f"sec{run}",
                app_id=f"ketenmonitor-sec{run}",
            ),
        )
        for command in (["topics"], ["acl", "apply"]):
            result = stack.run_cli("admin", *command)
            assert result.returncode == 0, result.stdout + result.stderr
        yield stack
    finally:
        broker.stop()


def test_a_partner_writes_its_own_topic_and_is_refused_everywhere_else(stack: SecureStack) -> None:
    s = stack.settings
    internal = [s.cases_topic, s.dead_letter_topic, f"{s.app_id}-cases-changelog"]
    for partner in CHAIN.partner_ids:
        producer = stack.producer(partner)
        try:
            metadata = producer.send(s.partner_topic(partner), PROBE).get(timeout=30)
            assert metadata.topic == s.partner_topic(partner)
            PROBES_SENT.append(metadata.topic)
            others = [s.partner_topic(p) for p in CHAIN.partner_ids if p != partner]
            for topic in others + internal:
                with pytest.raises(TopicAuthorizationFailedError):
                    producer.send(topic, PROBE).get(timeout=30)
        finally:
            producer.close()


def test_the_admin_command_cannot_be_run_by_a_partner(stack: SecureStack) -> None:
    result = stack.run_cli("police", "acl", "apply", "--timeout", "5")
    assert result.returncode != 0
    assert "Authorization" in result.stdout + result.stderr


def _log_in(stack: SecureStack, user: str, password: str, caplog: pytest.LogCaptureFixture) -> str:
    """'ok' if `user` could log in with `password`, else why not (aiokafka logs the reason)."""

    async def attempt() -> str:
        producer = AIOKafkaProducer(
            bootstrap_servers=stack.broker.bootstrap_servers,
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism="SCRAM-SHA-512",
            sasl_plain_username=user,
            sasl_plain_password=password,
            request_timeout_ms=20_000,
        )
        try:
            await producer.start()
            return "ok"
        except KafkaConnectionError as exc:
            return f"{exc} " + " ".join(r.getMessage() for r in caplog.records)
        finally:
            await producer.stop()

    caplog.clear()
    return asyncio.run(attempt())


def test_a_wrong_password_or_unknown_user_is_refused(
    stack: SecureStack, caplog: pytest.LogCaptureFixture
) -> None:
    right = stack.broker.client_security("police")["sasl_plain_password"]
    assert _log_in(stack, "police", right, caplog) == "ok"
    wrong = right[:-1] + ("x" if right[-1] != "x" else "y")
    assert "SaslAuthenticationFailed" in _log_in(stack, "police", wrong, caplog)
    assert "SaslAuthenticationFailed" in _log_in(stack, "burglar", right, caplog)
    # A partner's password is no key to another principal.
    assert "SaslAuthenticationFailed" in _log_in(stack, "admin", right, caplog)


# -- a worker behind the ACLs -------------------------------------------------------------------

MALFORMED = [b"not json at all", b'{"schema_version": 1, "event_id": "x"}']


@dataclass
class Run:
    events_per_partner: Counter[str]
    samples: Samples
    worker_log: str


@pytest.fixture(scope="module")
def processed(stack: SecureStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """Partners publish simulated events with their own logins; one worker with the workers'."""
    s = stack.settings
    tmp = tmp_path_factory.mktemp("secure-worker")
    worker = WorkerProcess(
        {
            **stack.env(WORKERS),
            "KETENMONITOR_PSEUDONYM_KEY": PSEUDONYM_KEY,
        },
        log_path=tmp / "worker.log",
    )
    worker.start()
    try:
        worker.wait_ready()
        end = datetime.now(UTC).timestamp() - 86400
        cases = simulate_cases(load_scenario(), 60, end - 365 * 86400, end, seed=5)
        by_partner: dict[str, list[dict]] = {p: [] for p in CHAIN.partner_ids}
        for event in contract_events(cases, CHAIN, seed=5):
            by_partner[event["organisation"]].append(event)
        for partner, events in by_partner.items():
            with PartnerPublisher(
                s.kafka_bootstrap, **stack.broker.client_security(partner)
            ) as publisher:
                for event in events:
                    publisher.send(s.partner_topic(partner), event)
                if partner == "police":
                    for raw in MALFORMED:
                        publisher.send_raw(s.partner_topic(partner), raw)
        wait_until_caught_up(
            s.kafka_bootstrap,
            s.app_id,
            [s.partner_topic(p) for p in CHAIN.partner_ids] + [s.cases_topic],
            timeout=240,
            security=stack.broker.client_security(OPERATOR),
        )
        # /metrics trails the commits by the totals publication interval.
        expected = sum(len(e) for e in by_partner.values())
        deadline = time.monotonic() + 60
        while True:
            samples = worker.scrape()
            accepted = sum(
                v for (n, _), v in samples.items() if n == "ketenmonitor_events_accepted_total"
            )
            if accepted >= expected or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    finally:
        worker.stop()
    log = (tmp / "worker.log").read_text(errors="replace")
    yield Run(Counter({p: len(e) for p, e in by_partner.items()}), samples, log)


def test_the_workers_process_what_partners_publish(processed: Run) -> None:
    accepted = {
        dict(labels)["organisation"]: value
        for (name, labels), value in processed.samples.items()
        if name == "ketenmonitor_events_accepted_total"
    }
    assert all(processed.events_per_partner[p] > 0 for p in CHAIN.partner_ids)
    assert accepted == {p: float(n) for p, n in processed.events_per_partner.items()}
    rejected = sum(
        value
        for (name, _), value in processed.samples.items()
        if name == "ketenmonitor_events_rejected_total"
    )
    assert rejected == len(MALFORMED) + len(PROBES_SENT)


def test_the_worker_logs_neither_its_password_nor_the_pseudonym_key(
    stack: SecureStack, processed: Run
) -> None:
    password = stack.broker.client_security(WORKERS)["sasl_plain_password"]
    assert "owned partitions now" in processed.worker_log  # the log is the worker's, at info level
    assert password not in processed.worker_log
    assert PSEUDONYM_KEY not in processed.worker_log


def _read(stack: SecureStack, user: str, topic: str) -> list[tuple[bytes, dict[str, bytes]]]:
    """Everything in partition 0 of `topic`, read as `user` (no group, no commit).

    Raises TopicAuthorizationFailedError when the broker refuses: the offset lookup without
    DESCRIBE, the fetch without READ. (kafka-python's poll() only logs a topic whose metadata is
    refused and then polls as if it were empty: hence the explicit offset lookup first.)
    """
    consumer = KafkaConsumer(
        bootstrap_servers=stack.broker.bootstrap_servers,
        enable_auto_commit=False,
        **stack.broker.client_security(user),
    )
    try:
        partition = TopicPartition(topic, 0)
        consumer.beginning_offsets([partition])
        consumer.assign([partition])
        consumer.seek_to_beginning()
        records, idle_polls = [], 0
        while idle_polls < 3:
            batch = [m for ms in consumer.poll(timeout_ms=1000).values() for m in ms]
            records += batch
            idle_polls = 0 if batch else idle_polls + 1
        return [(m.value, dict(m.headers)) for m in records]
    finally:
        consumer.close()


def test_only_the_operator_reads_the_dead_letter_topic(
    stack: SecureStack, processed: Run
) -> None:
    dead_letter = stack.settings.dead_letter_topic
    dead = _read(stack, OPERATOR, dead_letter)
    assert sorted(value for value, _ in dead) == sorted(MALFORMED + [PROBE] * len(PROBES_SENT))
    assert all(headers["reason"] for _, headers in dead)
    for user in ("police", "om", WORKERS):
        with pytest.raises(TopicAuthorizationFailedError):
            _read(stack, user, dead_letter)


def test_partners_and_operators_cannot_read_partner_or_internal_topics(
    stack: SecureStack, processed: Run
) -> None:
    s = stack.settings
    assert _read(stack, WORKERS, s.partner_topic("police"))  # the topic has data: control
    for user in ("police", "om", OPERATOR):
        for topic in (s.partner_topic("police"), s.partner_topic("om"), s.cases_topic):
            with pytest.raises(TopicAuthorizationFailedError):
                _read(stack, user, topic)


def test_the_broker_config_with_passwords_is_private(stack: SecureStack) -> None:
    data_dir = stack.broker.data_dir
    assert data_dir is not None
    for name in ("server.properties", "controller.secret"):
        assert (Path(data_dir) / name).stat().st_mode & 0o077 == 0, name
