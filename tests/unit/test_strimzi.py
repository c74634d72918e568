"""Strimzi KafkaTopic and KafkaUser resources from the chain (ketenmonitor/access/strimzi.py).

The chart's copy and the comparison with a real broker are in test_helm_chart.py and
tests/integration/test_strimzi_native.py; here: names, other settings and principals, refusals.

Run: .venv/bin/pytest tests/unit/test_strimzi.py
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from k8s_schemas import CRDS

from ketenmonitor.access.plan import Principals, access_plan
from ketenmonitor.access.strimzi import (
    StrimziError,
    grants_of,
    kubernetes_name,
    manifests,
    topics,
)
from ketenmonitor.domain.chain import load_chain
from ketenmonitor.settings import Settings

REPO = Path(__file__).resolve().parents[2]
CHAIN = load_chain()


def test_a_topic_name_that_is_a_kubernetes_name_is_kept_and_others_become_distinct_ones() -> None:
    assert kubernetes_name("ketenmonitor.events.police") == "ketenmonitor.events.police"
    cleaned = {kubernetes_name(n) for n in ("KM_a.events", "km-a.events", "km_a.events")}
    assert len(cleaned) == 3
    for name in cleaned:
        assert name == name.lower() and "_" not in name and len(name) <= 253


def test_other_settings_and_principals_give_the_same_plan_as_strimzi_resources() -> None:
    settings = Settings(topic_prefix="Keten_Test", app_id="km-test", partitions=12)
    principals = Principals(
        workers="km-workers", operators=("ops-a", "ops-b"), partner_format="partner-{partner}"
    )
    resources = manifests(settings, CHAIN, cluster="prod", replicas=3, principals=principals,
                          namespace="kafka")
    for resource in resources:
        CRDS.validate(resource)
        assert resource["metadata"]["namespace"] == "kafka"
        assert resource["metadata"]["labels"]["strimzi.io/cluster"] == "prod"
    users = [r for r in resources if r["kind"] == "KafkaUser"]
    assert set().union(*(grants_of(u) for u in users)) == set(
        access_plan(CHAIN.partner_ids, settings, principals)
    )
    assert {u["metadata"]["name"] for u in users} >= {"partner-police", "ops-a", "ops-b"}
    kafka_topics = {r["spec"]["topicName"]: r for r in resources if r["kind"] == "KafkaTopic"}
    assert set(kafka_topics) == {t.topic_name for t in topics(settings, CHAIN)}
    assert kafka_topics["Keten_Test.cases"]["spec"]["partitions"] == 12
    assert kafka_topics["Keten_Test.dead-letter"]["spec"]["partitions"] == 1
    assert kafka_topics["km-test-cases-changelog"]["spec"]["config"] == {
        "cleanup.policy": "compact", "max.compaction.lag.ms": "86400000"
    }


def test_a_principal_that_cannot_be_a_kafka_user_name_is_refused() -> None:
    settings = Settings()
    with pytest.raises(StrimziError, match="lower-case Kubernetes name"):
        manifests(settings, CHAIN, cluster="kafka", replicas=3,
                  principals=Principals(partner_format="Partner_{partner}"))


def test_the_command_prints_the_resources_and_reports_a_bad_principal() -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ketenmonitor.cli", "acl", "strimzi", *args],
            cwd=REPO, capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin"},
        )

    result = run("--cluster", "kafka", "--replicas", "2")
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert {d["kind"] for d in docs} == {"KafkaTopic", "KafkaUser"}
    assert all(d["spec"]["replicas"] == 2 for d in docs if d["kind"] == "KafkaTopic")
    refused = run("--cluster", "kafka", "--workers", "Workers")
    assert refused.returncode == 2
    assert refused.stderr.startswith("ketenmonitor acl: ")
