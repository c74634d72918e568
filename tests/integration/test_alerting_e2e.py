"""End to end: a throughput breach reaches the right webhooks; a healthy stream raises none.

partner events -> Kafka -> a real `ketenmonitor worker` -> a real Prometheus (scrape and rule
evaluation every second) -> a real Alertmanager -> a webhook receiver inside this test.

The rules and the Alertmanager configuration are the generated ones, with every window and
`for` scaled so that a chain day lasts 4 s (TIME_SCALE): the 7-day throughput window becomes
28 s, its `for` of 1 day 4 s, and every Alertmanager wait at most a few seconds. The routing tree
itself is the production one.

Run: KETENMONITOR_TEST_KAFKA_PORT=<port> .venv/bin/pytest tests/integration/test_alerting_e2e.py
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from ketenmonitor.alerting.durations import TimeScale
from ketenmonitor.alerting.policy import AlertPolicy, load_policy
from ketenmonitor.alerting.routing import (
    MONITOR_OPERATIONS,
    SG_DIGEST,
    partner_receiver,
    render_alertmanager_config,
)
from ketenmonitor.alerting.rules import render_rules
from ketenmonitor.domain.chain import Chain, load_chain
from ketenmonitor.infra.alertmanager import LocalAlertmanager
from ketenmonitor.infra.prometheus import LocalPrometheus, render_prometheus_config
from ketenmonitor.infra.worker_process import WorkerProcess, free_port
from ketenmonitor.kafka_io import PartnerPublisher
from ketenmonitor.metric_names import OWNED_PARTITIONS
from ketenmonitor.settings import Settings
from ketenmonitor.simulator import SimulatedCase, iso, load_scenario, simulate_cases, step_event

pytestmark = pytest.mark.integration

TIME_SCALE = TimeScale(4 / 86_400, "3s")  # a chain day lasts 4 s; no window below 3 s
THROUGHPUT_ALERT = "KetenmonitorThroughputBreach"
STAGE = "police_investigation"  # entered at report_registered, left at file_sent_to_om
OWNER = "police"
INFLOW_WINDOW_RECORD = "stage:ketenmonitor_stage_inflow_cases:increase7d"  # nominal name
# Proves that Prometheus -> Alertmanager -> webhook delivers, so that silence means something.
# It fires once the worker has accepted an event, i.e. after the fixture saw Prometheus discover
# the Alertmanager: an alert that fires before that is dropped, and resent only a minute later.
CANARY_ALERT = "KetenmonitorE2eDeliveryCanary"
CANARY_RULES = """\
groups:
  - name: e2e-delivery-canary
    rules:
      - alert: {name}
        expr: sum(ketenmonitor_events_accepted_total) > 0
        labels: {{organisation: {owner}, severity: warning}}
        annotations: {{summary: fires with the first event so that the delivery path is proven}}
"""
STACK_DEADLINE_S = 180  # no single wait in this file may take longer
TICK_S = 1.0  # publishing cadence: a batch of cases every second


class WebhookReceiver:
    """Alertmanager's webhook target: keeps every notification with the path it was posted to.

        with WebhookReceiver() as hook:
            url_template = hook.url_template        # http://127.0.0.1:<port>/alerts/{receiver}
            hook.alerts()                            # [(receiver, alert dict), ...]
    """

    def __init__(self) -> None:
        self.notifications: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        received = self.notifications
        lock = self._lock

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    payload = json.loads(body)
                except ValueError:
                    payload = {"unparsable": body.decode(errors="replace")}
                with lock:
                    received.append({"path": self.path, **payload})
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # Alertmanager posts every few seconds: keep the test output readable

        # Port 0: the kernel picks a free port, no race with other tests.
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url_template(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/alerts/{{receiver}}"

    def alerts(self, alertname: str | None = None) -> list[tuple[str, dict[str, Any]]]:
        """(receiver, alert) of every alert in every notification so far, firing or resolved."""
        with self._lock:
            notifications = list(self.notifications)
        return [
            (n.get("receiver", "?"), alert)
            for n in notifications
            for alert in n.get("alerts", [])
            if alertname is None or alert["labels"].get("alertname") == alertname
        ]

    def describe(self) -> str:
        with self._lock:
            notifications = list(self.notifications)
        lines = [f"{len(notifications)} webhook notification(s):"]
        for n in notifications[-30:]:
            names = sorted(
                f"{a['labels'].get('alertname')}{{stage={a['labels'].get('stage')}, "
                f"organisation={a['labels'].get('organisation')}}}:{a.get('status')}"
                for a in n.get("alerts", [])
            )
            lines.append(f"  {n['path']} receiver={n.get('receiver')} {names}")
        return "\n".join(lines)

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


@dataclass
class AlertingStack:
    chain: Chain
    policy: AlertPolicy
    settings: Settings
    worker: WorkerProcess
    prometheus: LocalPrometheus
    alertmanager: LocalAlertmanager
    webhook: WebhookReceiver

    def diagnose(self) -> str:
        """What every part of the pipeline holds now, for a failure message."""
        parts = [self.webhook.describe()]
        try:
            alerts = self.prometheus.alerts()
            parts.append(
                "Prometheus /api/v1/alerts:\n"
                + "\n".join(
                    f"  {a['labels'].get('alertname')} {a['state']} {a['labels']} "
                    f"value={a.get('value')}"
                    for a in alerts
                )
            )
            targets = [
                (t["scrapeUrl"], t["health"], t["lastError"]) for t in self.prometheus.targets()
            ]
            parts.append(f"Prometheus targets: {targets}")
            for expr in (
                f'{INFLOW_WINDOW_RECORD}{{stage="{STAGE}"}}',
                f'stage:ketenmonitor_backlog_cases:growth7d{{stage="{STAGE}"}}',
            ):
                parts.append(f"{expr} = {values(self.prometheus.query(expr))}")
            parts.append(
                "Alertmanager alerts: "
                + str(sorted(a["labels"].get("alertname", "?") for a in self.alertmanager.alerts()))
            )
        except Exception as exc:  # a diagnosis must not hide the real failure
            parts.append(f"(could not query the servers: {exc!r})")
        parts.append("Prometheus log tail:\n" + self.prometheus.log_tail(1500))
        parts.append("Alertmanager log tail:\n" + self.alertmanager.log_tail(1500))
        return "\n".join(parts)


def values(result: list[dict[str, Any]]) -> list[float]:
    return [float(sample["value"][1]) for sample in result]


def wait_until_owning_all_partitions(worker: WorkerProcess, partitions: int) -> None:
    """Publishing before the first assignment would bunch the first events into one burst."""
    deadline = time.monotonic() + STACK_DEADLINE_S
    owned = 0.0
    while time.monotonic() < deadline:
        owned = worker.scrape().get((OWNED_PARTITIONS, frozenset()), 0.0)
        if owned == partitions:
            return
        time.sleep(0.5)
    raise AssertionError(f"the worker owns {owned} of {partitions} partitions after the deadline")


def wait_until_alertmanager_discovered(prometheus: LocalPrometheus, alertmanager_url: str) -> None:
    """Prometheus drops the alerts that fire before service discovery hands it the Alertmanager
    (a few seconds after start) and resends them only after a minute: wait for it."""
    url = prometheus.url + "/api/v1/alertmanagers"
    deadline = time.monotonic() + STACK_DEADLINE_S
    active: list[str] = []
    while time.monotonic() < deadline:
        with urllib.request.urlopen(url, timeout=10) as response:
            answer = json.load(response)
        active = [a["url"] for a in answer["data"]["activeAlertmanagers"]]
        if any(u.startswith(alertmanager_url) for u in active):
            return
        time.sleep(0.5)
    raise AssertionError(f"Prometheus never discovered {alertmanager_url}; active: {active}")


@pytest.fixture
def stack(
    monitor_env: dict[str, str], start_worker: Any, tmp_path: Path
) -> Iterator[AlertingStack]:
    """Worker, Prometheus with the time-scaled generated rules, Alertmanager with the generated
    routing (webhooks to this test), all on free ports; every server stopped at the end."""
    chain, policy = load_chain(), load_policy()
    settings = Settings(
        kafka_bootstrap=monitor_env["KETENMONITOR_KAFKA_BOOTSTRAP"],
        topic_prefix=monitor_env["KETENMONITOR_TOPIC_PREFIX"],
    )
    rules = tmp_path / "ketenmonitor.rules.yml"
    rules.write_text(render_rules(chain, policy, TIME_SCALE))
    canary = tmp_path / "canary.rules.yml"
    canary.write_text(CANARY_RULES.format(name=CANARY_ALERT, owner=policy.owners.monitor))
    with ExitStack() as servers:
        webhook = servers.enter_context(WebhookReceiver())
        am_config = tmp_path / "alertmanager.yml"
        am_config.write_text(
            render_alertmanager_config(chain, policy, webhook.url_template, TIME_SCALE)
        )
        alertmanager = LocalAlertmanager(free_port(), am_config, tmp_path / "alertmanager")
        servers.enter_context(alertmanager)
        worker = start_worker()  # stopped by the start_worker fixture
        prom_config = tmp_path / "prometheus.yml"
        prom_config.write_text(
            render_prometheus_config(
                [f"127.0.0.1:{worker.metrics_port}"], [rules, canary], "1s", "1s", alertmanager.url
            )
        )
        prometheus = LocalPrometheus(free_port(), prom_config, tmp_path / "prometheus")
        servers.enter_context(prometheus)
        wait_until_alertmanager_discovered(prometheus, alertmanager.url)
        wait_until_owning_all_partitions(worker, int(monitor_env["KETENMONITOR_PARTITIONS"]))
        yield AlertingStack(chain, policy, settings, worker, prometheus, alertmanager, webhook)


class Pacer:
    """Calls `publish_tick` once per TICK_S, between checks, so that the rate stays steady."""

    def __init__(self, publisher: PartnerPublisher, settings: Settings) -> None:
        self.publisher = publisher
        self.settings = settings
        self.next_tick = time.monotonic()
        self.published_cases = 0

    def due(self) -> bool:
        return time.monotonic() >= self.next_tick

    def send_cases(self, events_per_case: list[list[dict[str, Any]]]) -> None:
        for events in events_per_case:
            for event in events:  # one case's events back to back
                self.publisher.send(self.settings.partner_topic(event["organisation"]), event)
        self.publisher.flush()
        self.published_cases += len(events_per_case)
        self.next_tick += TICK_S

    def sleep_until_due(self) -> None:
        time.sleep(max(0.0, min(0.25, self.next_tick - time.monotonic())))


def breach_cases(count: int) -> list[SimulatedCase]:
    """Simulated police cases (the simulator also makes Wahv fines, which start at the CJIB)."""
    cases = simulate_cases(load_scenario(), 3 * count, 0.0, 1.0, seed=51)
    police = [c for c in cases if c.steps[0].milestone == "report_registered"][:count]
    assert len(police) == count, f"only {len(police)} police cases simulated, {count} needed"
    return police


def closed_cases(chain: Chain, count: int) -> list[SimulatedCase]:
    """Simulated cases that ended in a closure of the chain (so they left every stage they
    entered), all in the past: the first `count` of them."""
    end = float(int(time.time()) - 3600)
    simulated = simulate_cases(load_scenario(), 3 * count, end - 6 * 365 * 86_400, end, seed=52)
    closed = [
        c
        for c in simulated
        if c.complete
        and c.steps[-1].milestone in chain.closures
        and c.steps[-1].outcome in chain.closures[c.steps[-1].milestone]
    ]
    assert len(closed) >= count, f"only {len(closed)} closed cases simulated, {count} needed"
    return closed[:count]


def test_a_growing_police_backlog_alerts_the_police_and_the_sg_digest(
    stack: AlertingStack,
) -> None:
    chain, policy = stack.chain, stack.policy
    expected_receivers = {SG_DIGEST, partner_receiver(OWNER)}
    per_tick = 5  # new reports a second, never a closed file: inflow without outflow
    cases = iter(breach_cases(per_tick * STACK_DEADLINE_S))
    started = time.monotonic()
    deadline = started + STACK_DEADLINE_S
    with PartnerPublisher(stack.settings.kafka_bootstrap) as publisher:
        pacer = Pacer(publisher, stack.settings)
        while time.monotonic() < deadline:
            if pacer.due():
                now = float(int(time.time()))
                batch = [next(cases) for _ in range(per_tick)]
                # Reported a minute ago: recent, and never in the future (that is a reject).
                pacer.send_cases(
                    [[step_event(c, 0, chain, seed=51, occurred_at=iso(now - 60))] for c in batch]
                )
            delivered = {
                receiver
                for receiver, alert in stack.webhook.alerts(THROUGHPUT_ALERT)
                if alert["labels"].get("stage") == STAGE and alert["status"] == "firing"
            }
            if expected_receivers <= delivered:
                break
            pacer.sleep_until_due()
        else:
            raise AssertionError(
                f"no firing {THROUGHPUT_ALERT} for {STAGE} reached {sorted(expected_receivers)} "
                f"within {STACK_DEADLINE_S} s ({pacer.published_cases} reports published)\n"
                + stack.diagnose()
            )
    print(f"breach delivered after {time.monotonic() - started:.1f} s")
    # Give a wrongly routed copy the same group_wait to show up before judging the receivers.
    time.sleep(TIME_SCALE.seconds("1m") + 2)

    received = [
        (receiver, alert)
        for receiver, alert in stack.webhook.alerts(THROUGHPUT_ALERT)
        if alert["labels"].get("stage") == STAGE
    ]
    assert {receiver for receiver, _ in received} == expected_receivers, stack.diagnose()
    for receiver, alert in received:
        labels, annotations = alert["labels"], alert["annotations"]
        assert labels["organisation"] == OWNER, (receiver, labels)
        assert labels["severity"] == policy.throughput.severity, (receiver, labels)
        assert labels["kind"] == "throughput", (receiver, labels)
        # The templates were rendered with the alert's own labels.
        assert f"{STAGE} ({OWNER})" in annotations["summary"], (receiver, annotations)
        assert "{{" not in annotations["summary"], (receiver, annotations)
        assert annotations["runbook"].strip(), (receiver, annotations)
    # Only the police stage lacks outflow: no other stage may be reported as breached.
    other = {a["labels"].get("stage") for _, a in stack.webhook.alerts(THROUGHPUT_ALERT)}
    assert other == {STAGE}, stack.diagnose()


def test_a_balanced_stream_of_closed_cases_raises_no_throughput_alert(
    stack: AlertingStack,
) -> None:
    chain, policy = stack.chain, stack.policy
    per_tick = 4  # closed cases a second: each case's events published back to back
    # Quiet for longer than the breach needs: a full throughput window of steady traffic, the
    # alert's `for`, Alertmanager's group_wait, and margin.
    quiet_s = (
        TIME_SCALE.seconds(policy.throughput.window)
        + TIME_SCALE.seconds(policy.throughput.for_)
        + TIME_SCALE.seconds("1m")
        + 15
    )
    needed = int(per_tick * (STACK_DEADLINE_S + quiet_s + 5))
    cases = iter(closed_cases(chain, needed))
    inflow_seen_at: float | None = None
    deadline = time.monotonic() + STACK_DEADLINE_S
    with PartnerPublisher(stack.settings.kafka_bootstrap) as publisher:
        pacer = Pacer(publisher, stack.settings)
        while True:
            if pacer.due():
                batch = [next(cases) for _ in range(per_tick)]
                pacer.send_cases(
                    [[step_event(c, n, chain, seed=52) for n in range(len(c.steps))] for c in batch]
                )
            breaches = stack.webhook.alerts(THROUGHPUT_ALERT)
            assert not breaches, (
                f"{THROUGHPUT_ALERT} delivered for a balanced stream "
                f"({pacer.published_cases} closed cases published)\n" + stack.diagnose()
            )
            now = time.monotonic()
            if inflow_seen_at is None:
                # The clock of the quiet period starts once the alert's inflow condition holds:
                # only the balance of inflow and outflow may keep it quiet.
                inflow = values(
                    stack.prometheus.query(f'{INFLOW_WINDOW_RECORD}{{stage="{STAGE}"}}')
                )
                if inflow and inflow[0] >= policy.throughput.min_inflow_cases:
                    inflow_seen_at = now
                elif now > deadline:
                    raise AssertionError(
                        f"Prometheus never saw {policy.throughput.min_inflow_cases} cases enter "
                        f"{STAGE} within a window\n" + stack.diagnose()
                    )
            elif now - inflow_seen_at >= quiet_s:
                break
            pacer.sleep_until_due()

    # Not vacuous: cases flowed in and out of the stages while Prometheus watched ...
    inflow = values(stack.prometheus.query("sum(rate(ketenmonitor_stage_inflow_cases_total[30s]))"))
    outflow = values(
        stack.prometheus.query("sum(rate(ketenmonitor_stage_outflow_cases_total[30s]))")
    )
    assert inflow and inflow[0] > 0, stack.diagnose()
    assert outflow and outflow[0] > 0, stack.diagnose()
    window_inflow = values(stack.prometheus.query(f'{INFLOW_WINDOW_RECORD}{{stage="{STAGE}"}}'))
    assert window_inflow and window_inflow[0] >= policy.throughput.min_inflow_cases
    # ... and alerts did reach the webhook (the canary, routed to the monitor's operators).
    canaries = {r for r, _ in stack.webhook.alerts(CANARY_ALERT)}
    assert canaries == {MONITOR_OPERATIONS}, stack.diagnose()
    # Yet no throughput breach fired in Prometheus or reached a receiver.
    firing = [
        a
        for a in stack.prometheus.alerts()
        if a["labels"].get("alertname") == THROUGHPUT_ALERT and a["state"] == "firing"
    ]
    assert not firing, stack.diagnose()
    assert not stack.webhook.alerts(THROUGHPUT_ALERT), stack.diagnose()
