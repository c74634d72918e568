"""docker-compose.yml: valid for Debian's docker-compose, and its ports are the project's defaults.

Run: .venv/bin/pytest tests/unit/test_compose.py   (needs the Debian package docker-compose)
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from ketenmonitor.infra import alertmanager, prometheus
from ketenmonitor.settings import Settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"


def compose_config_check(path: Path) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("docker-compose")
    assert binary, "docker-compose is missing: apt-get install -y docker-compose"
    return subprocess.run(
        [binary, "-f", str(path), "config", "-q"],
        cwd=path.parent,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},  # no user .env values: the defaults must be complete
    )


def host_ports(service: dict) -> dict[int, int]:
    """container port -> host port of a service's `ports`."""
    mapping = {}
    for entry in service.get("ports", []):
        host, container = str(entry).split(":")[-2:]  # "[ip:]host:container"
        mapping[int(container)] = int(host)
    return mapping


def test_docker_compose_config_passes() -> None:
    result = compose_config_check(COMPOSE)
    assert result.returncode == 0, result.stderr


def test_the_check_catches_a_broken_file(tmp_path: Path) -> None:
    broken = yaml.safe_load(COMPOSE.read_text())
    broken["services"]["worker"]["depends_on"] = {"nonexistent": {"condition": "service_healthy"}}
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(broken))
    assert compose_config_check(path).returncode != 0


def test_the_whole_stack_is_there() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    assert set(services) >= {
        "kafka", "worker", "simulator", "prometheus", "alertmanager", "grafana", "postgres",
    }
    assert services["kafka"]["image"].startswith("apache/kafka:4.")


def test_host_ports_are_the_defaults_of_the_native_route() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    kafka_port = int(Settings().kafka_bootstrap.rsplit(":", 1)[1])
    assert kafka_port in host_ports(services["kafka"]).values()
    assert host_ports(services["prometheus"]) == {prometheus.DEFAULT_PORT: prometheus.DEFAULT_PORT}
    assert host_ports(services["alertmanager"])[9093] == alertmanager.DEFAULT_PORT
    assert host_ports(services["grafana"]) == {3000: 3000}
    assert host_ports(services["postgres"]) == {5432: 5432}
    assert f"{Settings().metrics_port}" in services["worker"]["expose"]


def test_prometheus_in_compose_scrapes_the_worker_job_the_rules_select() -> None:
    config = yaml.safe_load((REPO / "deploy" / "compose" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    worker = jobs[prometheus.WORKER_JOB]["dns_sd_configs"][0]
    assert worker["names"] == ["worker"] and worker["port"] == Settings().metrics_port


def resolved_config() -> dict:
    """The compose file as docker-compose resolves it (anchors, defaults, interpolation)."""
    binary = shutil.which("docker-compose")
    assert binary, "docker-compose is missing: apt-get install -y docker-compose"
    result = subprocess.run(
        [binary, "-f", str(COMPOSE), "config"],
        cwd=REPO, capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def kafka_users(services: dict) -> dict[str, str]:
    pairs = services["kafka"]["environment"]["KAFKA_SCRAM_CREDENTIALS"].split()
    return dict(pair.split("=", 1) for pair in pairs)


def test_kafka_in_compose_is_secure_with_a_user_per_partner_and_role() -> None:
    from ketenmonitor.domain.chain import load_chain

    services = resolved_config()["services"]
    kafka = services["kafka"]
    assert kafka["entrypoint"][-1] == "/etc/ketenmonitor/kafka-scram.sh"
    users = kafka_users(services)
    assert set(users) == {"admin", "ketenmonitor", "operator", *load_chain().partner_ids}
    assert len(set(users.values())) == len(users)  # no shared passwords
    script = (REPO / "deploy" / "compose" / "kafka-scram.sh").read_text()
    for line in (
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "allow.everyone.if.no.acl.found=false",
        "super.users=User:admin;User:kraft-controller",
    ):
        assert line in script


def test_every_kafka_client_in_compose_logs_in_with_its_own_user() -> None:
    services = resolved_config()["services"]
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
