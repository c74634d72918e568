"""Malformed input lands on the dead-letter topic with its bytes and reason, is counted, and the
worker keeps going."""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

from kafka import KafkaConsumer

from ketenmonitor.infra.consumer_progress import wait_until_caught_up
from ketenmonitor.kafka_io import PartnerPublisher
from ketenmonitor.settings import Settings

NOW = datetime.now(UTC).replace(microsecond=0)


def event(n: int, **changes) -> dict:
    base = {
        "schema_version": 1,
        "event_id": f"dl-{n}",
        "case_key": f"PN-DL-{n}",
        "organisation": "police",
        "milestone": "report_registered",
        "occurred_at": (NOW - timedelta(days=10)).isoformat(),
        "case_type": "standard",
        "district": "amsterdam",
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def dumps(d: dict) -> bytes:
    return json.dumps(d).encode()


def test_malformed_events_are_dead_lettered_with_bytes_and_reason(monitor_env, start_worker):
    settings = Settings(
        kafka_bootstrap=monitor_env["KETENMONITOR_KAFKA_BOOTSTRAP"],
        topic_prefix=monitor_env["KETENMONITOR_TOPIC_PREFIX"],
    )
    rng = random.Random(20261128)
    print("fuzz seed 20261128")
    bad: list[tuple[bytes, str]] = [
        (b"this is not json", "not_json"),
        (dumps(event(1, milestone="coffee_break")), "unknown_milestone"),
        (
            dumps(event(2, occurred_at=(NOW - timedelta(days=3)).replace(tzinfo=None).isoformat())),
            "naive_timestamp",
        ),
        (dumps(event(3, suspect_name="J. Jansen")), "unknown_field"),
        (dumps(event(4, revision="high")), "wrong_type"),
        (dumps(event(5, organisation="om", milestone="om_intake")), "organisation_mismatch"),
        (dumps(event(6, occurred_at=(NOW + timedelta(days=30)).isoformat())), "future_timestamp"),
        (b"\x00\x81\xfe\xff", "not_utf8"),
    ]
    # Fuzz: random byte strings (reason depends on what the bytes happen to be).
    fuzz = [bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 200))) for _ in range(50)]
    valid = [event(100 + n) for n in range(40)]

    worker = start_worker()
    topic = settings.partner_topic("police")
    with PartnerPublisher(settings.kafka_bootstrap) as publisher:
        for n, v in enumerate(valid):
            publisher.send(topic, v)
            if n < len(bad):
                publisher.send_raw(topic, bad[n][0])
        for raw in fuzz:
            publisher.send_raw(topic, raw)
        publisher.send(topic, event(999))  # the worker keeps going after the garbage

    wait_until_caught_up(
        settings.kafka_bootstrap,
        monitor_env["KETENMONITOR_APP_ID"],
        [settings.partner_topic(p) for p in ("police", "om", "courts", "cjib")]
        + [settings.cases_topic],
        timeout=180,
    )
    consumer = KafkaConsumer(
        settings.dead_letter_topic,
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
    )
    dead = [(m.value, dict(m.headers)) for m in consumer]
    consumer.close()
    dead_values = Counter(value for value, _ in dead)
    for raw, reason in bad:
        matches = [h for value, h in dead if value == raw]
        assert matches, f"{reason} not dead-lettered"
        assert matches[0]["reason"].decode() == reason
        assert matches[0]["detail"]
        assert matches[0]["source"].decode().startswith(topic)
    for raw in fuzz:
        assert dead_values[raw] >= 1
    assert len(dead) == len(bad) + len(fuzz)

    accepted_key = ("ketenmonitor_events_accepted_total", frozenset({("organisation", "police")}))
    deadline = time.monotonic() + 60  # /metrics trails the commits by the totals publication
    while (samples := worker.scrape()).get(accepted_key) != len(valid) + 1:
        assert time.monotonic() < deadline, samples.get(accepted_key)
        time.sleep(0.5)
    rejected = {
        dict(labels)["reason"]: v
        for (name, labels), v in samples.items()
        if name == "ketenmonitor_events_rejected_total" and v
    }
    reasons_in_topic = Counter(h["reason"].decode() for _, h in dead)
    assert rejected == dict(reasons_in_topic)
    accepted = samples[
        ("ketenmonitor_events_accepted_total", frozenset({("organisation", "police")}))
    ]
    assert accepted == len(valid) + 1
    assert samples[("ketenmonitor_cases_tracked", frozenset())] == len(valid) + 1
