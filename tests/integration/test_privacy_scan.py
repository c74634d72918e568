"""Privacy guard: after a run, no raw case key and no value from outside the contract is anywhere.

A real worker (with a SQLite case-fact store) processes a simulated log plus malformed messages
whose bytes carry case keys and personal-looking data in every place a partner could put them.
Then everything the run produced is scanned: the /metrics text, the worker's log, the dead-letter
headers (reason, detail, source), every column of every table of the store, and the generated
dashboards. The dead-letter VALUES are the original bytes by design (operators only, see
docs/security.md): they are the positive control here, proving the scan would find a key.

Run: KETENMONITOR_TEST_KAFKA_PORT=<port> .venv/bin/pytest tests/integration/test_privacy_scan.py
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from kafka import KafkaConsumer, TopicPartition

from ketenmonitor.delivery import malformed_message
from ketenmonitor.domain.chain import load_chain
from ketenmonitor.infra.consumer_progress import wait_until_caught_up
from ketenmonitor.kafka_io import PartnerPublisher
from ketenmonitor.settings import Settings
from ketenmonitor.simulator import MALFORMED_KINDS, contract_events, load_scenario, simulate_cases

REPO = Path(__file__).resolve().parents[2]
CHAIN = load_chain()
# Values of fields outside the contract: none may reappear anywhere but in the dead-letter value.
OUTSIDE_VALUES = ("Jan Jansen", "123456782", "Kalverstraat 1 Amsterdam", "free text is not allowed")


def malformed_variants(event: dict[str, Any], n: int) -> list[bytes]:
    """Broken messages that carry the event's case key (and personal-looking data) everywhere."""
    key = event["case_key"]
    identifier_shaped = key.lower().replace("-", "_")
    variants = [malformed_message(kind, event) for kind in MALFORMED_KINDS]
    broken = [
        {**event, "suspect_name": OUTSIDE_VALUES[0], "bsn": OUTSIDE_VALUES[1]},
        {**event, "address": OUTSIDE_VALUES[2]},
        {**event, key: "a case key as a field name"},
        {**event, "schema_version": key},
        {**event, "revision": key},
        {**event, "occurred_at": key},
        {**event, "case_key": key + " " + OUTSIDE_VALUES[0]},
        {**event, "district": identifier_shaped},
        {**event, "case_type": identifier_shaped},
        {**event, "milestone": identifier_shaped},
    ]
    variants += [json.dumps({**b, "event_id": f"{event['event_id']}-bad{n}-{i}"}).encode()
                 for i, b in enumerate(broken)]
    variants.append(f"{key} is not JSON".encode())
    return variants


def find(forbidden: set[str], text: str) -> set[str]:
    return {value for value in forbidden if value in text}


def store_text(url: str) -> tuple[str, int]:
    """Every value of every column of every table, as text; and the number of rows."""
    engine = sa.create_engine(url)
    parts: list[str] = []
    rows = 0
    try:
        with engine.connect() as connection:
            for table in sa.inspect(connection).get_table_names():
                for row in connection.execute(sa.text(f'SELECT * FROM "{table}"')):
                    rows += 1
                    for value in row:
                        if isinstance(value, bytes):
                            value = value.decode("utf-8", errors="replace")
                        parts.append(str(value))
    finally:
        engine.dispose()
    return "\n".join(parts), rows


def test_nothing_a_run_produces_holds_a_case_key_or_data_from_outside_the_contract(
    monitor_env, start_worker, tmp_path
):
    settings = Settings(
        kafka_bootstrap=monitor_env["KETENMONITOR_KAFKA_BOOTSTRAP"],
        topic_prefix=monitor_env["KETENMONITOR_TOPIC_PREFIX"],
    )
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    end = time.time() - 86400
    cases = simulate_cases(load_scenario(), 300, end - 2 * 365 * 86400, end, seed=9)
    events = list(contract_events(cases, CHAIN, seed=9))
    case_keys = {c.case_key for c in cases}
    forbidden = case_keys | {k.lower().replace("-", "_") for k in case_keys} | set(OUTSIDE_VALUES)
    forbidden.add(monitor_env["KETENMONITOR_PSEUDONYM_KEY"])  # the HMAC key is never written out

    worker = start_worker({"KETENMONITOR_STORE_URL": store_url})
    malformed_sent: list[bytes] = []
    with PartnerPublisher(settings.kafka_bootstrap) as publisher:
        for n, event in enumerate(events):
            topic = settings.partner_topic(event["organisation"])
            publisher.send(topic, event)
            if n % 60 == 0:
                for raw in malformed_variants(event, n):
                    publisher.send_raw(topic, raw)
                    malformed_sent.append(raw)
    wait_until_caught_up(
        settings.kafka_bootstrap,
        monitor_env["KETENMONITOR_APP_ID"],
        [settings.partner_topic(p) for p in CHAIN.partner_ids] + [settings.cases_topic],
        timeout=240,
    )
    metrics_text = worker.scrape_text()
    worker.stop()  # flushes the log and the store

    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        consumer_timeout_ms=5000,
    )
    consumer.assign([TopicPartition(settings.dead_letter_topic, 0)])
    consumer.seek_to_beginning()
    dead = [(m.value, m.headers) for m in consumer]
    consumer.close()
    log_text = (tmp_path / "worker-0.log").read_text(errors="replace")
    stored, stored_rows = store_text(store_url)
    dashboard_files = sorted((REPO / "dashboards" / "json").glob("*.json"))
    dashboards = {p.name: p.read_text() for p in dashboard_files}

    # The haystacks are real: the run produced what is scanned.
    assert 'ketenmonitor_events_accepted_total{organisation="police"}' in metrics_text
    assert "rejected event" in log_text
    assert stored_rows >= len([c for c in cases if c.steps])
    assert len(dashboards) >= 4
    assert len(dead) == len(malformed_sent)
    # Positive control: the dead-letter values are the original bytes, keys and all.
    assert find(forbidden, b"\n".join(v for v, _ in dead).decode(errors="replace")) >= {
        OUTSIDE_VALUES[0]
    }

    headers = "\n".join(
        f"{name}={value.decode(errors='replace')}" for _, hs in dead for name, value in hs
    )
    assert {name for _, hs in dead for name, _ in hs} == {"reason", "detail", "source"}
    leaks = {
        "/metrics": find(forbidden, metrics_text),
        "worker log": find(forbidden, log_text),
        "dead-letter headers": find(forbidden, headers),
        "store": find(forbidden, stored),
        **{f"dashboard {name}": find(forbidden, text) for name, text in dashboards.items()},
    }
    assert {where: found for where, found in leaks.items() if found} == {}
