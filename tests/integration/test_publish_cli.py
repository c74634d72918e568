"""`ketenmonitor publish` against a real broker, read back by an independent consumer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition

from ketenmonitor.kafka_io import ensure_topics


def read_topic(bootstrap: str, topic: str) -> list[bytes]:
    """Every message of `topic`, from the beginning to the current end of each partition."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        numbers = sorted(consumer.partitions_for_topic(topic))
        partitions = [TopicPartition(topic, p) for p in numbers]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        values: list[bytes] = []
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            for records in consumer.poll(timeout_ms=1000).values():
                values.extend(r.value for r in records)
        return values
    finally:
        consumer.close()


def run_publish(bootstrap: str, prefix: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "KETENMONITOR_KAFKA_BOOTSTRAP": bootstrap,
        "KETENMONITOR_TOPIC_PREFIX": prefix,
    }
    return subprocess.run(
        [sys.executable, "-m", "ketenmonitor.cli", "publish", *args],
        env=env, capture_output=True, text=True, timeout=180, check=False,
    )


def om_event(n: int, **changes: object) -> dict:
    return {
        "schema_version": 1,
        "event_id": f"om-{n}",
        "case_key": f"PN-{n:06d}",
        "organisation": "om",
        "milestone": "om_decision",
        "occurred_at": f"2024-{1 + n % 12:02d}-{1 + n % 28:02d}T09:{n % 60:02d}:00+01:00",
        "case_type": "serious",
        "district": "limburg",
        "outcome": "summons",
        **changes,
    }


def test_every_valid_row_arrives_once_and_invalid_rows_are_named_and_never_sent(
    kafka_broker, tmp_path: Path
):
    bootstrap = kafka_broker.bootstrap_servers
    prefix = f"pub{uuid.uuid4().hex[:8]}"
    topic = f"{prefix}.events.om"
    ensure_topics(bootstrap, [topic], partitions=3)

    invalid = {  # line -> (row, reason)
        7: ("{truncated", "not_json"),
        20: (json.dumps(om_event(20, outcome="acquittal")), "invalid_outcome"),
        33: (json.dumps(om_event(33, organisation="police")), "organisation_mismatch"),
        48: (json.dumps(om_event(48, notes="x")), "unknown_field"),
        61: (json.dumps(om_event(61, occurred_at="2024-02-01 10:00")), "naive_timestamp"),
        75: (json.dumps(om_event(75, occurred_at="2999-01-01T00:00:00Z")), "future_timestamp"),
        90: (json.dumps(om_event(5)), "duplicate_in_file"),
    }
    lines, valid = [], []
    for n in range(1, 1201):
        if n in invalid:
            lines.append(invalid[n][0])
        else:
            row = json.dumps(om_event(n), separators=(",", ":"))
            lines.append(row)
            valid.append(row.encode())
    path = tmp_path / "om-export.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    result = run_publish(bootstrap, prefix, str(path), "--organisation", "om")

    assert result.returncode == 1, result.stderr
    for line, (_, reason) in invalid.items():
        assert f"{path}:{line}: {reason}:" in result.stderr
    assert f"1200 rows: {len(valid)} sent" in result.stdout
    assert f"{len(invalid)} rejected" in result.stdout
    received = read_topic(bootstrap, topic)
    assert Counter(received) == Counter(valid)  # each valid row exactly once, nothing else


def test_a_clean_csv_export_is_published_completely_with_exit_status_0(kafka_broker, tmp_path):
    bootstrap = kafka_broker.bootstrap_servers
    prefix = f"pub{uuid.uuid4().hex[:8]}"
    topic = f"{prefix}.events.cjib"
    ensure_topics(bootstrap, [topic], partitions=2)
    header = (
        "schema_version,event_id,case_key,organisation,milestone,occurred_at,case_type,district"
    )
    rows = [
        f"1,cjib-{n},CJ-{n},cjib,cjib_intake,2024-05-{1 + n % 28:02d}T08:00:00Z,standard,limburg"
        for n in range(300)
    ]
    path = tmp_path / "cjib.csv"
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")

    result = run_publish(bootstrap, prefix, str(path), "--organisation", "cjib")

    assert result.returncode == 0, result.stderr
    received = [json.loads(v) for v in read_topic(bootstrap, topic)]
    assert sorted(e["event_id"] for e in received) == sorted(f"cjib-{n}" for n in range(300))
    assert all(e["schema_version"] == 1 and e["organisation"] == "cjib" for e in received)
