"""docker-compose.yml: valid for Debian's docker-compose and fit for a real network.

Checked here: partners on other hosts can reach Kafka (advertised address from the environment,
never localhost; an internal listener for the services), nothing is published that need not be,
no secret has a default (compose refuses to start without it), images are pinned, every
long-running service has a healthcheck and every start condition waits for health or
completion, Grafana reads the store with a read-only login, Alertmanager's receivers reach a
service of the stack. No Docker engine runs here: the file is validated, not run.

Run: .venv/bin/pytest tests/unit/test_compose.py   (needs the Debian package docker-compose)
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from ketenmonitor.infra import alertmanager, prometheus
from ketenmonitor.settings import Settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
SCRAM_SCRIPT = REPO / "deploy" / "compose" / "kafka-scram.sh"

# Every variable compose must refuse to start without, with a value for the tests.
REQUIRED = {
    "KAFKA_ADVERTISED_HOST": "kafka.keten.example",
    "KAFKA_ADMIN_PASSWORD": "test-admin-0123456789",
    "KAFKA_WORKERS_PASSWORD": "test-workers-0123456789",
    "KAFKA_OPERATOR_PASSWORD": "test-operator-0123456789",
    "KAFKA_POLICE_PASSWORD": "test-police-0123456789",
    "KAFKA_OM_PASSWORD": "test-om-0123456789",
    "KAFKA_COURTS_PASSWORD": "test-courts-0123456789",
    "KAFKA_CJIB_PASSWORD": "test-cjib-0123456789",
    "KETENMONITOR_PSEUDONYM_KEY": "test-pseudonym-key-0123456789",
    "POSTGRES_PASSWORD": "test-store-owner-0123456789",
    "STORE_READER_PASSWORD": "test-store-reader-0123456789",
    "GRAFANA_ADMIN_PASSWORD": "test-grafana-0123456789",
}
SECRET_NAME = re.compile(r"PASSWORD|KEY|SECRET|TOKEN")


def compose(
    path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("docker-compose")
    assert binary, "docker-compose is missing: apt-get install -y docker-compose"
    return subprocess.run(
        [binary, "-f", str(path), *args],
        cwd=path.parent,
        capture_output=True,
        text=True,
        timeout=120,
        # No user .env values: only what the test gives.
        env={"PATH": "/usr/bin:/bin", **(REQUIRED if env is None else env)},
    )


@cache
def resolved() -> dict:
    """The compose file as docker-compose resolves it (anchors, interpolation, profiles)."""
    result = compose(COMPOSE, "config")
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def raw() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def published(service: dict) -> list[tuple[str, int, int]]:
    """(host address, host port, container port) of a service's `ports` in the raw file."""
    result = []
    for entry in service.get("ports", []):
        parts = str(entry).split(":")
        address = parts[0] if len(parts) == 3 else "0.0.0.0"
        result.append((address, int(parts[-2]), int(parts[-1].split("/")[0])))
    return result


def test_docker_compose_config_passes_with_every_required_value() -> None:
    result = compose(COMPOSE, "config", "-q")
    assert result.returncode == 0, result.stderr


def test_the_check_catches_a_broken_file(tmp_path: Path) -> None:
    broken = raw()
    broken["services"]["worker"]["depends_on"] = {"nonexistent": {"condition": "service_healthy"}}
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(broken))
    assert compose(path, "config", "-q").returncode != 0


@pytest.mark.parametrize("missing", ["KETENMONITOR_PSEUDONYM_KEY", "KAFKA_ADVERTISED_HOST"])
def test_compose_refuses_to_start_without_a_secret_or_the_advertised_host(missing: str) -> None:
    env = {k: v for k, v in REQUIRED.items() if k != missing}
    result = compose(COMPOSE, "config", "-q", env=env)
    assert result.returncode != 0
    assert f"set {missing}" in result.stderr


def test_no_secret_has_a_default_and_every_one_is_required() -> None:
    text = COMPOSE.read_text()
    references = re.findall(r"\$\{([A-Z0-9_]+)(:?[-?+]?)", text)
    assert references
    secrets = {name for name, _ in references if SECRET_NAME.search(name)}
    assert secrets >= {n for n in REQUIRED if SECRET_NAME.search(n)}
    for name, operator in references:
        if name in secrets or name == "KAFKA_ADVERTISED_HOST":
            assert operator == ":?", f"${{{name}}} must be required (${{{name}:?message}})"
    assert set(REQUIRED) == {name for name, op in references if op == ":?"}
    assert "demo-only" not in text and "ketenmonitor-demo" not in text


def test_the_resolved_stack_carries_the_given_secrets_not_defaults() -> None:
    services = resolved()["services"]
    assert services["worker"]["environment"]["KETENMONITOR_PSEUDONYM_KEY"] == (
        REQUIRED["KETENMONITOR_PSEUDONYM_KEY"]
    )
    assert services["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"] == (
        REQUIRED["GRAFANA_ADMIN_PASSWORD"]
    )


def test_the_whole_stack_is_there_with_kafka_at_the_native_version() -> None:
    services = raw()["services"]
    assert set(services) >= {
        "kafka", "kafka-init", "worker", "simulator", "prometheus", "alertmanager",
        "alert-receiver", "grafana", "postgres",
    }
    pom = (REPO / "deploy" / "kafka" / "pom.xml").read_text()
    native = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", pom)
    assert native
    assert services["kafka"]["image"] == f"apache/kafka:{native.group(1)}"


def exact_version(image: str) -> bool:
    """name:1.2.3[-variant] (PostgreSQL, numbered major.minor since 10: name:15.18[-variant])."""
    name, _, tag = image.partition(":")
    parts = 2 if name == "postgres" else 3
    return bool(re.fullmatch(r"v?\d+" + r"\.\d+" * (parts - 1) + r"(-[a-z0-9]+)*", tag))


def test_every_image_is_pinned_to_an_exact_version() -> None:
    assert not exact_version("postgres:15") and not exact_version("apache/kafka:4.1")
    assert not exact_version("ketenmonitor:latest")
    for name, service in raw()["services"].items():
        image = service.get("image")
        assert image, f"{name} has no image"
        assert exact_version(image), f"{name}: {image} is not an exact version"
    base = re.search(r"^FROM (\S+)", (REPO / "Dockerfile").read_text(), re.M)
    assert base and exact_version(base.group(1)), "the Dockerfile's base image must be pinned"


def test_only_kafka_and_grafana_are_reachable_from_the_network() -> None:
    services = raw()["services"]
    everywhere = {
        (name, container)
        for name, service in services.items()
        for address, _, container in published(service)
        if address != "127.0.0.1"
    }
    kafka_port = int(Settings().kafka_bootstrap.rsplit(":", 1)[1])
    assert everywhere == {("kafka", kafka_port), ("grafana", 3000)}
    assert "ports" not in services["postgres"]
    # The operator's views stay on the host's loopback, on the native defaults.
    assert published(services["prometheus"]) == [
        ("127.0.0.1", prometheus.DEFAULT_PORT, prometheus.DEFAULT_PORT)
    ]
    assert published(services["alertmanager"]) == [("127.0.0.1", alertmanager.DEFAULT_PORT, 9093)]
    assert f"{Settings().metrics_port}" in services["worker"]["expose"]


def test_kafka_advertises_the_configured_host_to_partners_and_kafka_to_services() -> None:
    services = resolved()["services"]
    kafka = services["kafka"]
    assert kafka["environment"]["KAFKA_ADVERTISED_HOST"] == REQUIRED["KAFKA_ADVERTISED_HOST"]
    script = SCRAM_SCRIPT.read_text()
    assert "listeners=INTERNAL://:19092,EXTERNAL://:9092,CONTROLLER://:9093" in script
    assert (
        "advertised.listeners=INTERNAL://kafka:19092,EXTERNAL://$KAFKA_ADVERTISED_HOST:9092"
        in script
    )
    assert "localhost" not in re.search(r"^advertised\.listeners=.*$", script, re.M).group(0)
    for name, service in services.items():
        env = service.get("environment") or {}
        if "KETENMONITOR_KAFKA_BOOTSTRAP" in env:
            assert env["KETENMONITOR_KAFKA_BOOTSTRAP"] == "kafka:19092", name


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "bad host"])
def test_the_kafka_entrypoint_refuses_an_address_partners_cannot_reach(host: str) -> None:
    credentials = " ".join(
        f"{user}=password-0123456789-{user}" for user in ("admin", "ketenmonitor")
    )
    result = subprocess.run(
        ["sh", str(SCRAM_SCRIPT)],
        env={"PATH": "/usr/bin:/bin", "KAFKA_SCRAM_CREDENTIALS": credentials,
             "KAFKA_ADVERTISED_HOST": host},
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 2
    assert "is not an address partners can reach" in result.stderr


def test_every_long_running_service_has_a_healthcheck_and_starts_after_health() -> None:
    services = resolved()["services"]
    one_shot = {name for name, s in services.items() if s.get("restart") == "no"}
    assert one_shot == {"kafka-init", "simulator"}
    for name, service in services.items():
        if name not in one_shot:
            check = service.get("healthcheck", {})
            assert check.get("test") and not check.get("disable"), f"{name} has no healthcheck"
    depends = 0
    for name, service in services.items():
        for dependency, spec in (service.get("depends_on") or {}).items():
            depends += 1
            wanted = (
                "service_completed_successfully" if dependency in one_shot else "service_healthy"
            )
            assert spec.get("condition") == wanted, f"{name} -> {dependency}"
    assert depends >= 9
    # Monitoring must not wait for what it monitors: Prometheus alerts while a worker is down.
    assert "worker" not in services["prometheus"]["depends_on"]
    assert services["simulator"].get("profiles") == ["demo"]  # not on a real network by default


def test_grafana_reads_the_store_with_a_read_only_login() -> None:
    services = resolved()["services"]
    postgres, grafana = services["postgres"]["environment"], services["grafana"]["environment"]
    reader = grafana["KETENMONITOR_STORE_READER"]
    assert reader == postgres["KETENMONITOR_STORE_READER"] != postgres["POSTGRES_USER"]
    password = grafana["KETENMONITOR_STORE_READER_PASSWORD"]
    assert password == postgres["KETENMONITOR_STORE_READER_PASSWORD"]
    assert password != postgres["POSTGRES_PASSWORD"]
    init = [v for v in services["postgres"]["volumes"] if "docker-entrypoint-initdb.d" in str(v)]
    assert len(init) == 1 and "deploy/compose/postgres-init.sh" in str(init[0])
    sql = (REPO / "deploy" / "postgres" / "grafana-reader.sql").read_text()
    assert "default_transaction_read_only = on" in sql
    assert "GRANT SELECT ON ALL TABLES" in sql and "GRANT INSERT" not in sql
    datasource = (REPO / "deploy/grafana/provisioning/datasources/ketenmonitor.yaml").read_text()
    assert "user: ${KETENMONITOR_STORE_READER}" in datasource


def test_alertmanager_receivers_post_to_a_service_of_the_stack() -> None:
    services = resolved()["services"]
    mounted = [v for v in services["alertmanager"]["volumes"] if "alertmanager.yml" in str(v)]
    assert len(mounted) == 1 and "deploy/compose/alertmanager.yml" in str(mounted[0])
    config = yaml.safe_load((REPO / "deploy" / "compose" / "alertmanager.yml").read_text())
    urls = [w["url"] for r in config["receivers"] for w in r.get("webhook_configs", [])]
    assert len(urls) == len(config["receivers"]) >= 3
    for url in urls:
        parts = urlsplit(url)
        assert parts.hostname in services, url
        target = services[parts.hostname]
        assert str(parts.port) in [str(p) for p in target.get("expose", [])], url
        assert "healthcheck" in target


def test_the_compose_alertmanager_config_is_the_generated_one() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ketenmonitor.cli", "rules", "alertmanager",
         "--webhook-url", "http://alert-receiver:9099/alerts/{receiver}"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert (REPO / "deploy" / "compose" / "alertmanager.yml").read_text() == result.stdout, (
        "deploy/compose/alertmanager.yml is stale: regenerate it with `ketenmonitor rules "
        "alertmanager --webhook-url 'http://alert-receiver:9099/alerts/{receiver}' --output "
        "deploy/compose/alertmanager.yml`"
    )
    amtool = shutil.which("amtool")
    assert amtool, "amtool is missing: apt-get install -y prometheus-alertmanager"
    check = subprocess.run(
        [amtool, "check-config", str(REPO / "deploy" / "compose" / "alertmanager.yml")],
        capture_output=True, text=True, timeout=60,
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_prometheus_in_compose_scrapes_the_worker_job_the_rules_select() -> None:
    config = yaml.safe_load((REPO / "deploy" / "compose" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    worker = jobs[prometheus.WORKER_JOB]["dns_sd_configs"][0]
    assert worker["names"] == ["worker"] and worker["port"] == Settings().metrics_port
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: apt-get install -y prometheus"
    check = subprocess.run(
        [promtool, "check", "config", str(REPO / "deploy" / "compose" / "prometheus.yml")],
        capture_output=True, text=True, timeout=60,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    alerting = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert alerting == ["alertmanager:9093"]


def kafka_users(services: dict) -> dict[str, str]:
    pairs = services["kafka"]["environment"]["KAFKA_SCRAM_CREDENTIALS"].split()
    return dict(pair.split("=", 1) for pair in pairs)


def test_kafka_in_compose_is_secure_with_a_user_per_partner_and_role() -> None:
    from ketenmonitor.domain.chain import load_chain

    services = resolved()["services"]
    kafka = services["kafka"]
    assert kafka["entrypoint"][-1] == "/etc/ketenmonitor/kafka-scram.sh"
    users = kafka_users(services)
    assert set(users) == {"admin", "ketenmonitor", "operator", *load_chain().partner_ids}
    assert len(set(users.values())) == len(users)  # no shared passwords
    script = SCRAM_SCRIPT.read_text()
    for line in (
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "allow.everyone.if.no.acl.found=false",
        "super.users=User:admin;User:kraft-controller",
    ):
        assert line in script


def test_every_kafka_client_in_compose_logs_in_with_its_own_user() -> None:
    services = resolved()["services"]
    users = kafka_users(services)
    expected = {"worker": "ketenmonitor", "kafka-init": "admin", "simulator": "admin"}
    for name, user in expected.items():
        env = services[name]["environment"]
        assert env["KETENMONITOR_KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT", name
        assert env["KETENMONITOR_KAFKA_USERNAME"] == user, name
        assert env["KETENMONITOR_KAFKA_PASSWORD"] == users[user], name
    assert services["worker"]["depends_on"]["kafka-init"]["condition"] == (
        "service_completed_successfully"
    )
    assert "acl apply" in " ".join(services["kafka-init"]["command"])
