"""A local Alertmanager (Debian package) started by deploy/alertmanager/alertmanager.sh.

    with LocalAlertmanager(port=free_port(), config_file=cfg, data_dir=tmp / "am") as am:
        am.alerts()          # alerts Alertmanager holds now (GET /api/v2/alerts)
        am.post_alerts([{"labels": {"alertname": "Test"}}])   # what Prometheus does

Stdlib only (urllib). Clustering is off: one Alertmanager per configuration.
"""

from __future__ import annotations

from typing import Any

from ketenmonitor.infra.script_server import DEPLOY_DIR, ScriptServer

__all__ = ["ALERTMANAGER_SCRIPT", "DEFAULT_PORT", "LocalAlertmanager"]

ALERTMANAGER_SCRIPT = DEPLOY_DIR / "alertmanager" / "alertmanager.sh"
DEFAULT_PORT = 9094  # not 9093: Kafka's KRaft controller listens there


class LocalAlertmanager(ScriptServer):
    script = ALERTMANAGER_SCRIPT
    env_prefix = "ALERTMANAGER"

    def alerts(self) -> list[dict[str, Any]]:
        answer: list[dict[str, Any]] = self._request("GET", "/api/v2/alerts")
        return answer

    def post_alerts(self, alerts: list[dict[str, Any]]) -> None:
        self._request("POST", "/api/v2/alerts", body=alerts)

    def status(self) -> dict[str, Any]:
        """Cluster status, uptime and the loaded configuration (GET /api/v2/status)."""
        answer: dict[str, Any] = self._request("GET", "/api/v2/status")
        return answer
