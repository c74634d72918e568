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
