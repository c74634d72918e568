"""The Strimzi resources (ketenmonitor/access/strimzi.py) against what the native path creates on
a real broker: same topics (names, partitions, topic configs) and same ACLs (principals,
operations, resources, patterns).

A secure broker of its own (SASL/SCRAM, authorizer) with one user per role. The native path is
run as an operator runs it: `ketenmonitor topics` and `ketenmonitor acl apply` as admin, then the
workers' own topic preparation (streams/topics.py `prepare_topics`, what `ketenmonitor worker` calls
first) as the workers' user, which creates the changelogs. What the broker then holds is read
back with the admin client and compared with the KafkaTopic and KafkaUser resources that
`ketenmonitor acl strimzi` prints for the same settings.

Run: .venv/bin/pytest tests/integration/test_strimzi_native.py
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient
from ketenmonitor.streams.topics import prepare_topics

from ketenmonitor.access.kafka_acls import Scope, current_grants
from ketenmonitor.access.strimzi import grants_of
from ketenmonitor.domain.chain import load_chain
from ketenmonitor.infra.kafka_broker import LocalKafkaBroker
from ketenmonitor.infra.worker_process import free_port
from ketenmonitor.settings import Settings
from tests.integration.conftest import TEST_BROKER_JVM_OPTS

REPO = Path(__file__).resolve().parents[2]
CHAIN = load_chain()
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def native(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalKafkaBroker, Settings]]:
    users = {
        name: secrets.token_urlsafe(18)
        for name in ("admin", "ketenmonitor", "operator", *CHAIN.partner_ids)
    }
    broker = LocalKafkaBroker(
        port=free_port(), controller_port=free_port(),
        data_dir=tmp_path_factory.mktemp("kafka-strimzi"), secure=True, users=users,
        jvm_opts=TEST_BROKER_JVM_OPTS,
    )
    broker.start()
    try:
        run = uuid.uuid4().hex[:8]
        names = {"KETENMONITOR_TOPIC_PREFIX": f"st{run}", "KETENMONITOR_APP_ID": f"km-st{run}",
                 "KETENMONITOR_PARTITIONS": "4"}
        for command in (["topics"], ["acl", "apply"]):
            result = subprocess.run(
                [sys.executable, "-m", "ketenmonitor.cli", *command],
                env={**os.environ, **broker.settings_env("admin"), **names},
                cwd=REPO, capture_output=True, text=True, timeout=180,
            )
            assert result.returncode == 0, result.stdout + result.stderr
        as_workers = {
            key.removeprefix("KETENMONITOR_").lower(): value
            for key, value in {**broker.settings_env("ketenmonitor"), **names}.items()
        }
        prepare_topics(Settings(**as_workers), CHAIN)  # the changelogs, as a worker makes them
        yield broker, Settings(**{k: v for k, v in as_workers.items() if "kafka" not in k})
    finally:
        broker.stop()


def strimzi_resources(settings: Settings) -> list[dict]:
    result = subprocess.run(
        [sys.executable, "-m", "ketenmonitor.cli", "acl", "strimzi", "--cluster", "kafka"],
        env={"PATH": "/usr/bin:/bin", "KETENMONITOR_TOPIC_PREFIX": settings.topic_prefix,
             "KETENMONITOR_APP_ID": settings.app_id,
             "KETENMONITOR_PARTITIONS": str(settings.partitions)},
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def test_strimzi_topics_equal_the_topics_the_native_path_created(
    native: tuple[LocalKafkaBroker, Settings],
) -> None:
    broker, settings = native
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap_servers,
                             **broker.client_security("admin"))
    try:
        ours = sorted(
            t for t in admin.list_topics()
            if t.startswith((f"{settings.topic_prefix}.", f"{settings.app_id}-"))
        )
        partitions = {t["name"]: len(t["partitions"]) for t in admin.describe_topics(ours)}
        # Only the configs set on the topic (config_filter "modified"), as a KafkaTopic sets them.
        described = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, t) for t in ours], config_filter="modified"
        )["topic"]
        configs = {
            name: {key: entry["value"] for key, entry in entries.items()}
            for name, entries in described.items()
        }
    finally:
        admin.close()
    on_broker = {(t, partitions[t], tuple(sorted(configs[t].items()))) for t in ours}
    # partners, cases, dead letter, the cases, ingest-stats and totals changelogs, and the
    # placement record (streams/placement.py)
    assert len(on_broker) == len(CHAIN.partner_ids) + 6
    assert any(config for _, _, config in on_broker)  # the changelogs are compacted
    topics = [d for d in strimzi_resources(settings) if d["kind"] == "KafkaTopic"]
    rendered = {
        (t["spec"]["topicName"], t["spec"]["partitions"],
         tuple(sorted(t["spec"].get("config", {}).items())))
        for t in topics
    }
    assert rendered == on_broker


def test_strimzi_user_acls_equal_the_acls_the_native_path_created(
    native: tuple[LocalKafkaBroker, Settings],
) -> None:
    broker, settings = native
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap_servers,
                             **broker.client_security("admin"))
    try:
        on_broker = {g for g in current_grants(admin) if Scope.of(settings).covers(g)}
    finally:
        admin.close()
    assert len(on_broker) > 20
    users = [d for d in strimzi_resources(settings) if d["kind"] == "KafkaUser"]
    rendered = set().union(*(grants_of(u) for u in users))
    assert rendered == on_broker
