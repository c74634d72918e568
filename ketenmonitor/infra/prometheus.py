"""A local Prometheus (Debian package) started by deploy/prometheus/prometheus.sh, from Python.

    config = tmp / "prometheus.yml"
    config.write_text(render_prometheus_config(["127.0.0.1:9464"], [rules], "1s", "1s", None))
    with LocalPrometheus(port=free_port(), config_file=config, data_dir=tmp / "prom") as prom:
        prom.query('sum(ketenmonitor_backlog_cases)')   # -> [{"metric": {...}, "value": [t, "v"]}]
        prom.alerts()                                    # active alerts (pending and firing)

Stdlib only for HTTP (urllib); the configuration is rendered with PyYAML, which the project
already needs for the chain definition.
"""

from __future__ import annotations

import subprocess
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from ketenmonitor.infra.script_server import DEPLOY_DIR, ScriptServer, ServerError
from ketenmonitor.metric_names import WORKER_JOB

__all__ = [
    "ALERTMANAGER_JOB",
    "DEFAULT_PORT",
    "PROMETHEUS_SCRIPT",
    "WORKER_JOB",
    "LocalPrometheus",
    "QueryError",
    "render_prometheus_config",
]

PROMETHEUS_SCRIPT = DEPLOY_DIR / "prometheus" / "prometheus.sh"
DEFAULT_PORT = 9090
ALERTMANAGER_JOB = "alertmanager"
SAMPLE_LIMIT = 100_000  # the scrape budget of one worker (docs/metrics.md)


class QueryError(ServerError):
    """Prometheus rejected a query (bad PromQL) or answered with status "error"."""


def prometheus3_binary() -> Path:
    """The Prometheus 3 binary that deploy/setup.sh builds (deploy/go-tools.sh); a missing one is
    an error that says how to build it, never a silent fallback to Prometheus 2."""
    tools = DEPLOY_DIR / "go-tools.sh"
    path = Path(subprocess.run(
        ["bash", str(tools), "path", "prometheus3"], check=True, capture_output=True, text=True
    ).stdout.strip())
    if not path.is_file():
        raise ServerError(f"no Prometheus 3 at {path}: run `bash {tools}` (or deploy/setup.sh)")
    return path


class LocalPrometheus(ScriptServer):
    """`binary`: the prometheus executable (default: Debian's Prometheus 2 on the PATH)."""

    script = PROMETHEUS_SCRIPT
    env_prefix = "PROMETHEUS"

    def __init__(
        self, port: int, config_file: Path, data_dir: Path, binary: Path | None = None
    ) -> None:
        super().__init__(port, config_file, data_dir)
        self.binary = binary

    def _script_env(self) -> dict[str, str]:
        env = super()._script_env()
        if self.binary is not None:
            env["PROMETHEUS_BIN"] = str(self.binary)
        return env

    def query_range(
        self, promql: str, start: float, end: float, step: float = 1.0
    ) -> list[dict[str, Any]]:
        """Range query (GET /api/v1/query_range): the `result` list (each with `values`)."""
        params = {"query": promql, "start": repr(start), "end": repr(end), "step": repr(step)}
        return self._result("/api/v1/query_range", params, f"range query {promql!r}")

    def query(self, promql: str, time: float | None = None) -> list[dict[str, Any]]:
        """Instant query (GET /api/v1/query): the `result` list of the answer."""
        params = {"query": promql}
        if time is not None:
            params["time"] = repr(time)
        return self._result("/api/v1/query", params, f"query {promql!r}")

    def _result(self, path: str, params: dict[str, str], what: str) -> list[dict[str, Any]]:
        """The `data.result` list of a successful answer to GET `path`; QueryError otherwise."""
        try:
            answer = self._request("GET", path + "?" + urllib.parse.urlencode(params))
        except ServerError as exc:
            raise QueryError(f"{what} failed: {exc}") from exc
        if not isinstance(answer, dict) or answer.get("status") != "success":
            raise QueryError(f"{what} failed: {answer!r}")
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def alerts(self) -> list[dict[str, Any]]:
        """Active alerts, pending and firing (GET /api/v1/alerts)."""
        return self._get_list("/api/v1/alerts", "alerts")

    def rule_groups(self) -> list[dict[str, Any]]:
        """Loaded rule groups with their health and last error (GET /api/v1/rules)."""
        return self._get_list("/api/v1/rules", "groups")

    def targets(self) -> list[dict[str, Any]]:
        """Active scrape targets with health and last error (GET /api/v1/targets)."""
        return self._get_list("/api/v1/targets", "activeTargets")

    def _get_list(self, path: str, key: str) -> list[dict[str, Any]]:
        """The list `data.<key>` of the answer to GET `path`."""
        answer = self._request("GET", path)
        items: list[dict[str, Any]] = answer["data"][key]
        return items


def render_prometheus_config(
    scrape_targets: Sequence[str],
    rule_files: Sequence[Path],
    scrape_interval: str = "15s",
    evaluation_interval: str = "15s",
    alertmanager_url: str | None = None,
    scrape_timeout: str | None = None,
) -> str:
    """A prometheus.yml scraping the workers at `scrape_targets` ("host:port") as job
    ketenmonitor_worker, loading `rule_files` (made absolute) and, if given, sending alerts to
    the Alertmanager at `alertmanager_url` ("http://127.0.0.1:9094")."""
    if not scrape_targets:
        raise ValueError("render_prometheus_config needs at least one scrape target")
    config: dict[str, Any] = {
        "global": {
            "scrape_interval": scrape_interval,
            "evaluation_interval": evaluation_interval,
            "external_labels": {"monitor": "ketenmonitor"},
            **({"scrape_timeout": scrape_timeout} if scrape_timeout else {}),
        },
        "rule_files": [str(Path(f).resolve()) for f in rule_files],
        "scrape_configs": [
            {
                "job_name": WORKER_JOB,
                "sample_limit": SAMPLE_LIMIT,
                "static_configs": [{"targets": list(scrape_targets)}],
            },
        ],
    }
    if alertmanager_url is not None:
        parsed = urllib.parse.urlsplit(alertmanager_url)
        if not parsed.scheme or not parsed.netloc:
            raise ValueError(
                f"alertmanager_url must look like http://host:port, not {alertmanager_url!r}"
            )
        alertmanager: dict[str, Any] = {
            "scheme": parsed.scheme,
            "static_configs": [{"targets": [parsed.netloc]}],
        }
        if parsed.path.strip("/"):
            alertmanager["path_prefix"] = parsed.path
        config["alerting"] = {"alertmanagers": [alertmanager]}
    return yaml.safe_dump(config, sort_keys=False)
