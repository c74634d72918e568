"""The Prometheus and Alertmanager runners start real servers, answer, reload and stop."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ketenmonitor.infra.alertmanager import LocalAlertmanager
from ketenmonitor.infra.prometheus import (
    LocalPrometheus,
    QueryError,
    render_prometheus_config,
)
from ketenmonitor.infra.script_server import ServerStartError
from ketenmonitor.infra.worker_process import free_port

MINIMAL_ALERTMANAGER = 'route: {receiver: "null"}\nreceivers: [{name: "null"}]\n'


def test_prometheus_answers_queries_reloads_and_stops(tmp_path: Path) -> None:
    rules = tmp_path / "r.rules.yml"
    rules.write_text(
        "groups: [{name: g, rules: [{record: 'test:one', expr: 'vector(1)'}]}]\n"
    )
    config = tmp_path / "prometheus.yml"
    config.write_text(render_prometheus_config(["127.0.0.1:1"], [rules], "1s", "1s", None))
    prometheus = LocalPrometheus(free_port(), config, tmp_path / "prometheus")
    with prometheus:
        assert prometheus.is_running()
        assert prometheus.query("vector(42)")[0]["value"][1] == "42"
        assert [g["name"] for g in prometheus.rule_groups()] == ["g"]
        # Service discovery hands the static target over shortly after the start.
        deadline = time.monotonic() + 30
        while not (targets := prometheus.targets()) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert [t["scrapeUrl"] for t in targets] == ["http://127.0.0.1:1/metrics"]
        assert prometheus.alerts() == []  # recording rules only
        with pytest.raises(QueryError):
            prometheus.query("sum(")
        config.write_text(render_prometheus_config(["127.0.0.1:1"], [], "1s", "1s", None))
        prometheus.reload()
        assert prometheus.rule_groups() == []
    assert not prometheus.is_running()


def test_alertmanager_accepts_alerts_and_stops(tmp_path: Path) -> None:
    config = tmp_path / "alertmanager.yml"
    config.write_text(MINIMAL_ALERTMANAGER)
    alertmanager = LocalAlertmanager(free_port(), config, tmp_path / "alertmanager")
    with alertmanager:
        alertmanager.post_alerts([{"labels": {"alertname": "RunnerTest"}}])
        assert [a["labels"]["alertname"] for a in alertmanager.alerts()] == ["RunnerTest"]
    assert not alertmanager.is_running()


def test_an_invalid_configuration_fails_the_start_with_the_servers_log(tmp_path: Path) -> None:
    config = tmp_path / "prometheus.yml"
    config.write_text("scrape_configs: [{job_name: x, no_such_field: 1}]\n")
    prometheus = LocalPrometheus(free_port(), config, tmp_path / "prometheus")
    with pytest.raises(ServerStartError, match="no_such_field"):
        prometheus.start()
    assert not prometheus.is_running()
    assert "no_such_field" in prometheus.log_tail()


def test_render_prometheus_config_points_at_the_alertmanager() -> None:
    text = render_prometheus_config(["127.0.0.1:9464"], [], "5s", "5s", "http://127.0.0.1:9094")
    assert "127.0.0.1:9094" in text
    assert "job_name: ketenmonitor_worker" in text
    with pytest.raises(ValueError, match="alertmanager_url"):
        render_prometheus_config(["127.0.0.1:9464"], [], alertmanager_url="127.0.0.1:9094")
