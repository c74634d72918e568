"""The Helm chart (deploy/helm/ketenmonitor), rendered by the real helm and validated offline.

`helm lint` and `helm template` run with the default values and with everything switched on
(Strimzi topics and users, KEDA autoscaling, TLS, store, Grafana data sources). Every rendered
manifest of a core kind is validated with kubernetes-validate's schemas for the oldest and the
newest Kubernetes the chart supports; every custom resource against its CRD (tests/data/crds/).
The PrometheusRule carries exactly the generated rules and passes promtool; the dashboards are
exactly dashboards/json; the Strimzi topics and ACLs are those of the native path.

Run: .venv/bin/pytest tests/unit/test_helm_chart.py
(helm from deploy/go-tools.sh, which deploy/setup.sh runs; promtool from Debian's prometheus)
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from k8s_schemas import CRDS, validate_core
from ketenmonitor.dashboards import datasources
from ketenmonitor.streams.topics import worker_topics

from ketenmonitor.access.plan import access_plan
from ketenmonitor.access.strimzi import grants_of
from ketenmonitor.domain.chain import load_chain
from ketenmonitor.infra.prometheus import WORKER_JOB
from ketenmonitor.settings import Settings

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "ketenmonitor"
RULES = REPO / "deploy" / "prometheus" / "rules" / "ketenmonitor.rules.yml"
DASHBOARDS = REPO / "dashboards" / "json"
# The chart's kubeVersion floor and the newest schemas kubernetes-validate ships. helm built with
# `go install` assumes Kubernetes 1.20 (release builds set it at link time): always name one.
KUBERNETES_VERSIONS = ("1.27", "1.37")

REQUIRED = {
    "kafka.bootstrap": "kafka-kafka-bootstrap.kafka.svc:9093",
    "pseudonymKey.existingSecret": "ketenmonitor-pseudonym-key",
    "kafka.existingSecret": "ketenmonitor-kafka",
}
FULL = {
    **{k: v for k, v in REQUIRED.items() if k != "kafka.existingSecret"},  # Strimzi's Secret
    "strimzi.enabled": "true",
    "autoscaling.enabled": "true",
    "kafka.tls.caSecret": "kafka-cluster-ca-cert",
    "store.existingSecret": "ketenmonitor-store",
    "dashboards.datasources.enabled": "true",
    "dashboards.datasources.store.host": "postgres.db.svc:5432",
    "persistence.enabled": "false",
}
PROFILES = {"default": REQUIRED, "full": FULL}
CORE_KINDS = {"ServiceAccount", "Service", "StatefulSet", "PodDisruptionBudget", "ConfigMap"}
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


@cache
def helm_binary() -> str:
    path = subprocess.run(
        ["bash", str(REPO / "deploy" / "go-tools.sh"), "path", "helm"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    assert Path(path).is_file(), f"no helm at {path}: run `bash deploy/go-tools.sh`"
    return path


def helm(
    *args: str, values: dict[str, str], kubernetes: str = KUBERNETES_VERSIONS[-1]
) -> subprocess.CompletedProcess[str]:
    sets = [a for k, v in values.items() for a in ("--set", f"{k}={v}")]
    return subprocess.run(
        [helm_binary(), *args, "--kube-version", f"{kubernetes}.0", *sets],
        capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "HOME": "/tmp", "HELM_CACHE_HOME": "/tmp/helm-cache"},
    )


@cache
def render(profile: str, kubernetes: str = KUBERNETES_VERSIONS[-1]) -> tuple[dict[str, Any], ...]:
    result = helm(
        "template", "km", str(CHART), "--namespace", "keten",
        values=PROFILES[profile], kubernetes=kubernetes,
    )
    assert result.returncode == 0, result.stderr
    return tuple(d for d in yaml.safe_load_all(result.stdout) if d)


def of_kind(profile: str, kind: str) -> list[dict[str, Any]]:
    return [d for d in render(profile) if d["kind"] == kind]


def one(profile: str, kind: str) -> dict[str, Any]:
    (doc,) = of_kind(profile, kind)
    return doc


def env_of(statefulset: dict[str, Any]) -> dict[str, dict[str, Any]]:
    (container,) = statefulset["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e for e in container["env"]}


# -- helm itself ---------------------------------------------------------------------------------
def test_the_chart_refuses_a_kubernetes_older_than_it_supports() -> None:
    result = helm("template", "km", str(CHART), values=REQUIRED, kubernetes="1.26")
    assert result.returncode != 0 and "kubeVersion" in result.stderr


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_helm_lint_passes(profile: str) -> None:
    result = helm("lint", "--strict", str(CHART), values=PROFILES[profile])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"pseudonymKey.existingSecret": ""}, "pseudonymKey.existingSecret is required"),
        ({"kafka.bootstrap": ""}, "kafka.bootstrap is required"),
        ({"kafka.existingSecret": ""}, "needs kafka.existingSecret"),
        ({"replicaCount": "7"}, "replicaCount exceeds kafka.partitions"),
        ({"autoscaling.enabled": "true", "autoscaling.maxReplicas": "12"},
         "maxReplicas exceeds kafka.partitions"),
        ({"strimzi.enabled": "true", "kafka.topicPrefix": "other"},
         "files/strimzi.yaml was generated for topicPrefix=ketenmonitor"),
        ({"strimzi.enabled": "true", "kafka.username": "someone"},
         "kafka.username=someone is none of the generated Kafka users"),
    ],
)
def test_the_chart_refuses_values_that_would_not_work(change: dict, message: str) -> None:
    result = helm("template", "km", str(CHART), values={**REQUIRED, **change})
    assert result.returncode != 0
    assert message in result.stderr


def test_the_rendered_kinds_are_the_expected_ones() -> None:
    default = {d["kind"] for d in render("default")}
    assert default == CORE_KINDS | {"ServiceMonitor", "PrometheusRule"}
    full = {d["kind"] for d in render("full")}
    assert full == default | {"ScaledObject", "TriggerAuthentication", "KafkaTopic", "KafkaUser"}


# -- schemas -------------------------------------------------------------------------------------
@pytest.mark.parametrize("profile", sorted(PROFILES))
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_core_manifest_is_valid_for_kubernetes(profile: str, version: str) -> None:
    core = [d for d in render(profile, version) if d["kind"] in CORE_KINDS]
    assert len(core) >= 5
    for doc in core:
        validate_core(doc, version)  # raises with the path of the first error


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_every_custom_resource_is_valid_for_its_crd(profile: str) -> None:
    custom = [d for d in render(profile) if d["kind"] not in CORE_KINDS]
    assert {(d["apiVersion"], d["kind"]) for d in custom} <= CRDS.kinds()
    for doc in custom:
        CRDS.validate(doc)


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_every_resource_name_is_a_valid_kubernetes_name(profile: str) -> None:
    for doc in render(profile):
        name = doc["metadata"]["name"]
        limit = 253 if doc["kind"] in {"KafkaTopic", "ConfigMap"} else 63
        assert DNS_SUBDOMAIN.match(name) and len(name) <= limit, (doc["kind"], name)


def test_the_validators_catch_a_wrong_field() -> None:
    statefulset = json.loads(json.dumps(one("default", "StatefulSet")))
    statefulset["spec"]["template"]["spec"]["containers"][0]["enviroment"] = []
    with pytest.raises(jsonschema.ValidationError):
        validate_core(statefulset, KUBERNETES_VERSIONS[-1])
    monitor = json.loads(json.dumps(one("default", "ServiceMonitor")))
    monitor["spec"]["endpoints"][0]["intervall"] = "15s"
    with pytest.raises(jsonschema.ValidationError):
        CRDS.validate(monitor)
    user = json.loads(json.dumps(of_kind("full", "KafkaUser")[0]))
    user["spec"]["authorization"]["acls"][0]["operations"] = ["Frobnicate"]
    with pytest.raises(jsonschema.ValidationError):
        CRDS.validate(user)


# -- generated content ---------------------------------------------------------------------------
def test_the_charts_copies_are_up_to_date() -> None:
    assert (CHART / "files" / "ketenmonitor.rules.yml").read_bytes() == RULES.read_bytes(), (
        "the chart's rules are stale: run `ketenmonitor chart sync`"
    )
    copies = {p.name: p.read_bytes() for p in (CHART / "files" / "dashboards").glob("*.json")}
    assert copies == {p.name: p.read_bytes() for p in DASHBOARDS.glob("*.json")}, (
        "the chart's dashboards are stale: run `ketenmonitor chart sync`"
    )
    result = subprocess.run(
        [sys.executable, "-m", "ketenmonitor.cli", "chart", "sync", "--check"],
        cwd=REPO, capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_prometheus_rule_carries_exactly_the_generated_rules_and_passes_promtool(
    tmp_path: Path,
) -> None:
    rule = one("default", "PrometheusRule")
    assert rule["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]
    extracted = tmp_path / "rules.yml"
    extracted.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: apt-get install -y prometheus"
    result = subprocess.run(
        [promtool, "check", "rules", str(extracted)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_every_dashboard_is_a_config_map_for_grafanas_sidecar() -> None:
    maps = [
        m for m in of_kind("default", "ConfigMap") if "grafana_dashboard" in m["metadata"]["labels"]
    ]
    wanted = {p.name: json.loads(p.read_text()) for p in DASHBOARDS.glob("*.json")}
    assert wanted
    found = {}
    for config_map in maps:
        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert config_map["metadata"]["annotations"]["grafana_folder"] == "Ketenmonitor"
        for name, text in config_map["data"].items():
            found[name] = json.loads(text)
    assert found == wanted


def test_the_grafana_data_sources_have_the_uids_the_dashboards_use() -> None:
    (config_map,) = [
        m for m in of_kind("full", "ConfigMap") if "grafana_datasource" in m["metadata"]["labels"]
    ]
    (text,) = config_map["data"].values()
    sources = {s["uid"]: s for s in yaml.safe_load(text)["datasources"]}
    assert {(s["type"], s["uid"]) for s in sources.values()} == {
        (d.plugin, d.provisioned_uid) for d in datasources.ALL
    }
    store = sources["ketenmonitor-store"]
    assert store["user"] == "ketenmonitor_reader"
    assert store["secureJsonData"]["password"] == "$__env{KETENMONITOR_STORE_READER_PASSWORD}"


# -- workers -------------------------------------------------------------------------------------
def test_workers_are_a_stateful_set_with_a_volume_for_local_state() -> None:
    statefulset = one("default", "StatefulSet")
    service = one("default", "Service")
    assert statefulset["spec"]["serviceName"] == service["metadata"]["name"]
    assert statefulset["spec"]["replicas"] == 2
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    (container,) = statefulset["spec"]["template"]["spec"]["containers"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == "/var/lib/ketenmonitor"
    # persistence off: the same mount from an emptyDir
    full = one("full", "StatefulSet")
    assert "volumeClaimTemplates" not in full["spec"]
    volumes = {v["name"]: v for v in full["spec"]["template"]["spec"]["volumes"]}
    assert "emptyDir" in volumes["state"]


def test_every_worker_setting_is_one_the_worker_knows_and_no_secret_is_inline() -> None:
    known = {f"KETENMONITOR_{name.upper()}" for name in Settings.model_fields}
    for profile in PROFILES:
        statefulset = one(profile, "StatefulSet")
        env = env_of(statefulset)
        assert set(env) <= known, set(env) - known
        for name, entry in env.items():
            if re.search(r"PASSWORD$|KEY$|URL$", name):
                assert "value" not in entry, f"{name} must come from a Secret"
        volumes = {v["name"]: v for v in statefulset["spec"]["template"]["spec"]["volumes"]}
        assert volumes["pseudonym-key"]["secret"]["secretName"] == "ketenmonitor-pseudonym-key"
        assert env["KETENMONITOR_PSEUDONYM_KEY_FILE"]["value"].endswith("/pseudonym-key")
        assert env["KETENMONITOR_KAFKA_PASSWORD_FILE"]["value"].endswith("/password")
    pod = one("default", "StatefulSet")["spec"]["template"]["spec"]
    default = {v["name"]: v for v in pod["volumes"]}
    assert default["kafka-password"]["secret"]["secretName"] == "ketenmonitor-kafka"
    full = one("full", "StatefulSet")
    volumes = {v["name"]: v for v in full["spec"]["template"]["spec"]["volumes"]}
    # With Strimzi the password is in the Secret the User Operator writes for the workers' user.
    assert volumes["kafka-password"]["secret"]["secretName"] == "ketenmonitor"
    assert env_of(full)["KETENMONITOR_STORE_URL"]["valueFrom"]["secretKeyRef"]["name"] == (
        "ketenmonitor-store"
    )


def test_the_worker_settings_in_the_chart_give_a_valid_worker_configuration(
    tmp_path: Path,
) -> None:
    """The rendered environment, with the Secrets' files stood in for, is accepted by Settings."""
    env = {}
    for name, entry in env_of(one("full", "StatefulSet")).items():
        if "value" in entry:
            env[name] = entry["value"]
    for name in ("KETENMONITOR_PSEUDONYM_KEY_FILE", "KETENMONITOR_KAFKA_PASSWORD_FILE",
                 "KETENMONITOR_KAFKA_SSL_CAFILE"):
        stand_in = tmp_path / Path(env[name]).name
        stand_in.write_text("stand-in-secret-0123456789")
        env[name] = str(stand_in)
    names = {n.removeprefix("KETENMONITOR_").lower(): v for n, v in env.items()}
    settings = Settings(**names)
    assert settings.partitions == 6 and settings.metrics_port == 9464
    assert settings.kafka_security_protocol == "SASL_SSL" and settings.kafka_username
    assert len(settings.pseudonym_secret()) >= 16


def test_metrics_are_scraped_under_the_job_the_rules_select() -> None:
    service, monitor = one("default", "Service"), one("default", "ServiceMonitor")
    statefulset = one("default", "StatefulSet")
    assert service["metadata"]["labels"][monitor["spec"]["jobLabel"]] == WORKER_JOB
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    (port,) = service["spec"]["ports"]
    assert endpoint["port"] == port["name"] == "metrics" and endpoint["path"] == "/metrics"
    (container,) = statefulset["spec"]["template"]["spec"]["containers"]
    (container_port,) = container["ports"]
    assert container_port["containerPort"] == Settings().metrics_port == port["port"]
    assert service["spec"]["selector"].items() <= (
        statefulset["spec"]["template"]["metadata"]["labels"].items()
    )


def expected_memory_mib(cases: int, partitions: int, workers: int, sizing: dict) -> int:
    share = -(-partitions // max(workers, 1))
    per_partition = -(-cases // partitions)
    total = sizing["idleRssMiB"] * 2**20 + per_partition * share * sizing["rssBytesPerCase"]
    return total * (100 + sizing["headroomPercent"]) // (100 * 2**20)


def test_resource_requests_follow_the_measured_figures() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    sizing = values["sizing"]
    # The figures come from the benchmark: idle RSS and RSS per case of the 1M-case run.
    memory = json.loads((REPO / "bench/results/2026-11-28-memory-1m.json").read_text())
    measured = memory["results"]["memory"]["sizes"]["1000000"]
    assert sizing["idleRssMiB"] == round(measured["rss_idle_bytes"] / 2**20)
    assert sizing["rssBytesPerCase"] >= measured["rss_bytes_per_case"]
    (container,) = one("default", "StatefulSet")["spec"]["template"]["spec"]["containers"]
    resources = container["resources"]
    partitions, workers = values["kafka"]["partitions"], values["replicaCount"]
    cases = sizing["casesInState"]
    assert resources["requests"]["memory"] == (
        f"{expected_memory_mib(cases, partitions, workers, sizing)}Mi"
    )
    # The limit covers the partitions of a worker that is gone.
    assert resources["limits"]["memory"] == (
        f"{expected_memory_mib(cases, partitions, workers - 1, sizing)}Mi"
    )
    assert resources["requests"]["cpu"] == sizing["cpuRequest"]
    explicit = helm("template", "km", str(CHART), values={
        **REQUIRED, "resources.requests.memory": "3Gi", "resources.requests.cpu": "1500m",
    })
    assert explicit.returncode == 0, explicit.stderr
    (statefulset,) = [
        d for d in yaml.safe_load_all(explicit.stdout) if d and d["kind"] == "StatefulSet"
    ]
    assert statefulset["spec"]["template"]["spec"]["containers"][0]["resources"] == {
        "requests": {"memory": "3Gi", "cpu": "1500m"}
    }


def test_a_drain_takes_one_worker_at_a_time() -> None:
    budget = one("default", "PodDisruptionBudget")
    assert budget["spec"]["maxUnavailable"] == 1
    pods = one("default", "StatefulSet")["spec"]["template"]["metadata"]["labels"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= pods.items()


def test_autoscaling_follows_the_consumer_lag_of_the_workers_group() -> None:
    scaled = one("full", "ScaledObject")
    statefulset = one("full", "StatefulSet")
    assert "replicas" not in statefulset["spec"]  # KEDA's HPA owns the count
    target = scaled["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("StatefulSet", statefulset["metadata"]["name"])
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "kafka"
    metadata = trigger["metadata"]
    assert metadata["consumerGroup"] == Settings().app_id
    assert metadata["bootstrapServers"] == FULL["kafka.bootstrap"]
    assert (metadata["sasl"], metadata["tls"]) == ("scram_sha512", "enable")
    assert 1 <= scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"] <= 6
    auth = one("full", "TriggerAuthentication")
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    refs = {r["parameter"]: r for r in auth["spec"]["secretTargetRef"]}
    assert refs["password"]["name"] == "ketenmonitor"
    assert refs["ca"]["name"] == "kafka-cluster-ca-cert"
    (username,) = auth["spec"]["env"]
    assert username["name"] in env_of(statefulset)


# -- Strimzi: the same topics and ACLs as the native path --------------------------------------
def test_strimzi_topics_are_those_the_native_path_creates() -> None:
    settings, chain = Settings(), load_chain()
    native = {
        (name, partitions, tuple(sorted(config.items())))
        for name, partitions, config in worker_topics(settings, chain)
    }
    topics = of_kind("full", "KafkaTopic")
    rendered = {
        (t["spec"]["topicName"], t["spec"]["partitions"],
         tuple(sorted(t["spec"].get("config", {}).items())))
        for t in topics
    }
    assert rendered == native
    for topic in topics:
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == "kafka"
        assert topic["spec"]["replicas"] == 3


def test_strimzi_users_have_exactly_the_native_acl_plan() -> None:
    settings, chain = Settings(), load_chain()
    plan = set(access_plan(chain.partner_ids, settings))
    users = of_kind("full", "KafkaUser")
    rendered = set().union(*(grants_of(u) for u in users))
    assert rendered == plan
    assert {u["metadata"]["name"] for u in users} == {
        g.principal.removeprefix("User:") for g in plan
    }
    for user in users:
        assert user["spec"]["authentication"]["type"] == "scram-sha-512"


# -- docs/sizing.md quotes what the chart computes -------------------------------------------------
SIZING_SCENARIOS = {  # the values docs/sizing.md gives per deployment
    "one district": {"replicaCount": "2", "sizing.casesInState": "315000"},
    "national chain": {"replicaCount": "3", "sizing.casesInState": "2430000"},
    "chain + Wahv": {"replicaCount": "6", "kafka.partitions": "24",
                     "sizing.casesInState": "26430000", "sizing.rssBytesPerCase": "514"},
}


def test_the_sizing_document_quotes_the_memory_the_chart_computes() -> None:
    doc = (REPO / "docs" / "sizing.md").read_text()
    row = next(line for line in doc.splitlines() if line.startswith("| worker memory request"))
    cells = [c.strip() for c in row.strip("|").split("|")][1:]
    header = next(line for line in doc.splitlines() if line.startswith("| | one district"))
    names = [c.strip() for c in header.strip("|").split("|")][1:]
    assert names == list(SIZING_SCENARIOS)
    for name, cell in zip(names, cells, strict=True):
        result = helm("template", "km", str(CHART), values={**REQUIRED, **SIZING_SCENARIOS[name]})
        assert result.returncode == 0, result.stderr
        (statefulset,) = [
            d for d in yaml.safe_load_all(result.stdout) if d and d["kind"] == "StatefulSet"
        ]
        resources = statefulset["spec"]["template"]["spec"]["containers"][0]["resources"]
        request = resources["requests"]["memory"].removesuffix("Mi")
        limit = resources["limits"]["memory"].removesuffix("Mi")
        assert cell.startswith(f"{request} / {limit} MiB"), (name, cell, request, limit)
        for key, value in SIZING_SCENARIOS[name].items():
            assert f"{key.split('.')[-1]}: {value}" in doc, (name, key)
