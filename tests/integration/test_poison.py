"""Records a worker cannot process are isolated, kept and counted; their partition moves on.

A 1 MiB partner message between valid events (its dead-letter copy with headers is larger than the
broker's default message size), and junk written straight onto the case topic (possible only
without ACLs): every valid event is counted, the poison is kept whole on the dead-letter topic with
its reason, and the worker stays up.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer

from ketenmonitor.domain.chain import SECONDS_PER_DAY as DAY
from ketenmonitor.infra.consumer_progress import wait_until_caught_up
from ketenmonitor.kafka_io import PartnerPublisher
from ketenmonitor.settings import Settings
from ketenmonitor.simulator import iso

pytestmark = pytest.mark.integration


def _event(n: int) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "event_id": f"poison-test-{n}",
        "case_key": f"case-{n}",
        "organisation": "police",
        "milestone": "report_registered",
        "occurred_at": iso(time.time() - 10 * DAY),
        "case_type": "standard",
        "district": "amsterdam",
    }


def test_a_1_mib_message_and_case_topic_junk_are_kept_counted_and_passed(
    monitor_env: dict[str, str], start_worker: Any
) -> None:
    settings = Settings(
        kafka_bootstrap=monitor_env["KETENMONITOR_KAFKA_BOOTSTRAP"],
        topic_prefix=monitor_env["KETENMONITOR_TOPIC_PREFIX"],
    )
    worker = start_worker()
    topic = settings.partner_topic("police")
    poison = b'{"schema_version": 1, "padding": "' + b"x" * (1024 * 1024 - 100) + b'"}'
    with PartnerPublisher(settings.kafka_bootstrap, max_request_size=2 * 1024 * 1024) as p:
        for n in range(50):
            p.send(topic, _event(n))
        p.flush()
    # The broker's default message size: raise it for the partner topic as a partner might have.
    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    admin.alter_configs(
        [
            ConfigResource(
                ConfigResourceType.TOPIC, topic, configs={"max.message.bytes": str(2 * 1024 * 1024)}
            )
        ]
    )
    admin.close()
    raw = KafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, max_request_size=4 * 1024 * 1024
    )
    raw.send(topic, poison).get(timeout=30)
    raw.send(settings.cases_topic, b"not a case event", key=b"k", partition=0).get(timeout=30)
    raw.send(settings.cases_topic, b"[9, 1, 2]", key=None, partition=1).get(timeout=30)
    raw.close()
    with PartnerPublisher(settings.kafka_bootstrap) as p:
        for n in range(50, 100):
            p.send(topic, _event(n))
        p.flush()

    wait_until_caught_up(
        settings.kafka_bootstrap,
        monitor_env["KETENMONITOR_APP_ID"],
        [settings.partner_topic(o) for o in ("police", "om", "courts", "cjib")]
        + [settings.cases_topic],
        timeout=120,
    )
    key = ("ketenmonitor_events_accepted_total", frozenset({("organisation", "police")}))
    deadline = time.monotonic() + 60
    while (samples := worker.scrape()).get(key) != 100:
        assert time.monotonic() < deadline, samples.get(key)
        time.sleep(0.5)
    too_large = (
        "ketenmonitor_events_rejected_total",
        frozenset({("organisation", "police"), ("reason", "too_large")}),
    )
    assert samples[too_large] == 1
    assert worker.process is not None and worker.process.poll() is None

    consumer = KafkaConsumer(
        settings.dead_letter_topic,
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
        max_partition_fetch_bytes=16 * 1024 * 1024,
    )
    dead = [(m.value, dict(m.headers)) for m in consumer]
    consumer.close()
    reasons = sorted(h["reason"].decode() for _, h in dead)
    assert reasons == ["invalid_case_record", "invalid_case_record", "too_large"], reasons
    kept = next(v for v, h in dead if h["reason"] == b"too_large")
    assert kept == poison  # the original bytes, whole
