"""Every Prometheus query of the shipped dashboards returns data from a real stack.

simulator -> Kafka -> a real `ketenmonitor worker` -> a real Prometheus (Debian package) that
scrapes it and evaluates the shipped recording rules. Each panel query of dashboards/json/*.json,
with its template variables resolved the way Grafana resolves them (the variable's own
label_values query against the same Prometheus) and Grafana's $__rate_interval and $__range
substituted, must answer with at least one series, and with numbers where numbers are certain.

Run: KETENMONITOR_TEST_KAFKA_PORT=<port> .venv/bin/pytest \
     tests/integration/test_dashboard_queries.py
"""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path
from typing import Any

import pytest
from ketenmonitor.dashboards.build import JSON_DIR
from ketenmonitor.dashboards.panels import ALL

from ketenmonitor.domain.chain import load_chain
from ketenmonitor.infra.consumer_progress import wait_until_caught_up
from ketenmonitor.infra.prometheus import LocalPrometheus, render_prometheus_config
from ketenmonitor.infra.worker_process import free_port
from ketenmonitor.kafka_io import PartnerPublisher
from ketenmonitor.settings import Settings
from ketenmonitor.simulator import contract_events, load_scenario, simulate_cases

REPO = Path(__file__).resolve().parents[2]
SHIPPED_RULES = REPO / "deploy" / "prometheus" / "rules" / "ketenmonitor.rules.yml"
# The worker renders the whole chain's series (~160 kB gzipped) on every scrape: measured 1.1-4.5 s
# per scrape on this loaded 2-core machine, at rest and while ingesting. At a 1 s or 5 s interval
# (Prometheus caps the scrape timeout at the interval) every scrape timed out; at 10 s the timeout
# is Prometheus's default 10 s. Grafana's $__rate_interval is at least four scrape intervals.
SCRAPE_INTERVAL = "10s"
RATE_INTERVAL = "60s"
# The time picker's range: longer than the whole run, so windows see every event published.
RANGE = "1h"
# ALERTS only has series while an alert fires: this rule fires from its first evaluation, so the
# alert panels are tested on the real ALERTS series (with the labels the shipped rules carry).
ALWAYS_FIRING = """\
groups:
  - name: dashboard-test
    rules:
      - alert: DashboardTestAlwaysFiring
        expr: vector(1)
        labels: {organisation: om, severity: warning}
        annotations: {summary: fires so that the alert panels have data}
"""
PROMETHEUS_DASHBOARDS = ("ketenoverzicht.json", "fase.json", "pijplijn.json")


@pytest.fixture(scope="module")
def shipped() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in JSON_DIR.glob("*.json")}


def publish_simulated_partners(settings: Settings, days: float, cases: int) -> int:
    """A simulated log, duplicates of some events, and malformed messages (rejects)."""
    chain = load_chain()
    end = float(int(time.time()) - 3600)
    simulated = simulate_cases(load_scenario(), cases, end - days * 86_400, end, seed=6)
    events = list(contract_events(simulated, chain, seed=6))
    with PartnerPublisher(settings.kafka_bootstrap) as publisher:
        for event in events:
            publisher.send(settings.partner_topic(event["organisation"]), event)
        for event in events[:50]:  # delivered twice: counted as duplicates, not twice
            publisher.send(settings.partner_topic(event["organisation"]), event)
        for n in range(20):
            publisher.send_raw(settings.partner_topic(chain.partner_ids[n % 4]), b"{not json")
    return len(events)


def resolve_variables(board: dict[str, Any], prometheus: LocalPrometheus) -> dict[str, str]:
    """Pick a value per variable as Grafana offers them: query variables from their own
    label_values(...) query, preferring the value with the most series behind it."""
    values: dict[str, str] = {}
    for variable in board["templating"]["list"]:
        if variable["type"] == "datasource":
            continue  # panels name it in their data source, never in a query
        if variable["type"] == "custom":
            values[variable["name"]] = variable["current"]["value"]
            continue
        definition = variable["query"]["query"]
        match = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", definition)
        assert match, definition
        selector, label = substitute(match.group(1), values), match.group(2)
        result = prometheus.query(f"sort_desc(count by ({label}) ({selector}))")
        assert result, f"variable {variable['name']}: no values from {selector}"
        values[variable["name"]] = result[0]["metric"][label]
    return values


def substitute(expr: str, values: dict[str, str]) -> str:
    expr = expr.replace("$__rate_interval", RATE_INTERVAL).replace("$__range", RANGE)
    for name, value in sorted(values.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(f"${name}", ".*" if value == ALL else re.escape(value))
    assert "$" not in expr, f"unresolved variable in {expr!r}"
    return expr


def queries(board: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (panel["title"], target["expr"])
        for panel in board["panels"]
        for target in panel["targets"]
        if target["datasource"]["type"] == "prometheus"
    ]


def test_every_panel_query_returns_data_from_a_real_prometheus(
    monitor_env: dict[str, str], start_worker: Any, tmp_path: Path, shipped: dict[str, Any]
) -> None:
    chain = load_chain()
    settings = Settings(
        kafka_bootstrap=monitor_env["KETENMONITOR_KAFKA_BOOTSTRAP"],
        topic_prefix=monitor_env["KETENMONITOR_TOPIC_PREFIX"],
    )
    worker = start_worker()
    test_rules = tmp_path / "dashboard-test.rules.yml"
    test_rules.write_text(ALWAYS_FIRING)
    config = tmp_path / "prometheus.yml"
    config.write_text(
        render_prometheus_config(
            [f"127.0.0.1:{worker.metrics_port}"], [SHIPPED_RULES, test_rules],
            SCRAPE_INTERVAL, "1s",
        )
    )
    with LocalPrometheus(free_port(), config, tmp_path / "prometheus") as prometheus:
        # Every series starts at zero in Prometheus before the first event: increase() then has
        # nothing to extrapolate at the start of a window, and the share within norm (a ratio of
        # two increases) is exact. A first sample taken mid-ingest made it 1.001.
        deadline = time.monotonic() + 120
        while not prometheus.query("sum(ketenmonitor_events_accepted_total) == 0"):
            assert time.monotonic() < deadline, f"no scrape at zero: {prometheus.targets()}"
            time.sleep(1)
        published = publish_simulated_partners(settings, days=730, cases=3000)
        wait_until_caught_up(
            settings.kafka_bootstrap,
            monitor_env["KETENMONITOR_APP_ID"],
            [settings.partner_topic(p) for p in chain.partner_ids] + [settings.cases_topic],
            timeout=300,
        )
        # Prometheus holds the final state once it answers with every event counted.
        deadline = time.monotonic() + 120
        counted = 0.0
        while time.monotonic() < deadline:
            result = prometheus.query("sum(ketenmonitor_events_accepted_total)")
            counted = float(result[0]["value"][1]) if result else 0.0
            if counted >= published:
                break
            time.sleep(1)
        scrapes = [(t.get("health"), t.get("lastError")) for t in prometheus.targets()]
        assert counted >= published, (
            f"Prometheus saw {counted} of {published} events; scrapes (health, error): {scrapes}"
        )
        time.sleep(25)  # two more scrapes and rule evaluations: rates and deltas need two

        empty: list[str] = []
        checked = 0
        for name in PROMETHEUS_DASHBOARDS:
            board = shipped[name]
            concrete = resolve_variables(board, prometheus)
            settings_to_try = [concrete]
            all_values = {
                **concrete,
                **{v["name"]: ALL for v in board["templating"]["list"] if v.get("includeAll")},
            }
            if all_values != concrete:
                settings_to_try.append(all_values)
            for values in settings_to_try:
                for title, expr in queries(board):
                    promql = substitute(expr, values)
                    result = prometheus.query(promql)
                    checked += 1
                    if not result:
                        empty.append(f"{name} / {title} / {values}: {promql}")
        assert checked >= 60
        assert not empty, "queries without data:\n" + "\n".join(empty)

        # Numbers where they are certain: every configured norm has a share between 0 and 1.
        # A norm whose segment completed no case within the range reads NaN (0 / 0): no data,
        # which Grafana shows as such; most norms must have a number.
        overview = shipped["ketenoverzicht.json"]
        measured = set()
        for norm in chain.spec.norms:
            (panel,) = [p for p in overview["panels"] if p["title"] == norm.label]
            (sample,) = prometheus.query(substitute(panel["targets"][0]["expr"], {}))
            share = float(sample["value"][1])
            assert math.isnan(share) or 0.0 <= share <= 1.0, (norm.id, share)
            if not math.isnan(share):
                measured.add(norm.id)
        assert len(measured) >= len(chain.spec.norms) // 2, measured
        # p50 <= p80, both finite and positive, over the time picker's range (net of corrections)
        (lead,) = [p for p in overview["panels"] if p["title"].startswith("Doorlooptijd tegen")]
        quantiles = {
            t["legendFormat"]: float(prometheus.query(substitute(t["expr"], {}))[0]["value"][1])
            for t in lead["targets"]
        }
        for norm in chain.spec.norms:
            if norm.id not in measured:
                continue  # no completion in the range: no quantile either
            p50, p80 = quantiles[f"{norm.label} (p50)"], quantiles[f"{norm.label} (p80)"]
            assert 0 < p50 <= p80 and math.isfinite(p80), (norm.id, p50, p80)
