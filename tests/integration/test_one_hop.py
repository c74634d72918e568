"""One hop on a real broker (streams/placement.py): a mixed chain where every partner but one keys
its messages by case and is applied where it arrives, and one partner's events are re-keyed
through the case topic. /metrics equals the independent batch computation
(tests/integration/batch_truth.py); a case's state lives in exactly one changelog partition, the
one Kafka's partitioner gives its case key; a message keyed into another partition is not applied
there; one-hop events never reach the case topic; neither topic nor changelog holds a case key."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime

import pytest
from batch_truth import CASE_METRICS, comparable, expected_samples, wait_for_truth
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from ketenmonitor.domain.chain import load_chain
from ketenmonitor.domain.pseudonym import pseudonymise
from ketenmonitor.infra.consumer_progress import wait_until_caught_up
from ketenmonitor.infra.worker_process import WorkerProcess
from ketenmonitor.kafka_io import ensure_topics
from ketenmonitor.partitioning import kafka_partition
from ketenmonitor.settings import Settings
from ketenmonitor.simulator import contract_events, load_scenario, simulate_cases

pytestmark = pytest.mark.integration

CHAIN = load_chain()
PARTITIONS = 6
PUBLISH = [sys.executable, "-m", "ketenmonitor.cli", "publish"]
RE_KEYED = "om"  # the partner that cannot key by case
ONE_HOP = [p for p in CHAIN.partner_ids if p != RE_KEYED]


class MixedRun:
    def __init__(self, monitor_env: dict[str, str], cases: int, seed: int, **extra: str) -> None:
        self.reference = float(int(time.time()) - 3600)
        self.env = {
            **monitor_env,
            "KETENMONITOR_AGE_REFERENCE_TIME": datetime.fromtimestamp(
                self.reference, UTC
            ).isoformat(),
            "KETENMONITOR_CASE_PLACEMENT": "case-key",
            "KETENMONITOR_ONE_HOP_PARTNERS": ",".join(ONE_HOP),
            "KETENMONITOR_SESSION_TIMEOUT_SECONDS": "6",
            **extra,
        }
        self.settings = Settings(
            kafka_bootstrap=monitor_env["KETENMONITOR_KAFKA_BOOTSTRAP"],
            topic_prefix=monitor_env["KETENMONITOR_TOPIC_PREFIX"],
            app_id=monitor_env["KETENMONITOR_APP_ID"],
        )
        self.cases = simulate_cases(
            load_scenario(), cases, self.reference - 2 * 365 * 86400, self.reference, seed=seed
        )
        self.events = list(contract_events(self.cases, CHAIN, seed=seed))
        self.expected = comparable(
            expected_samples(CHAIN, self.cases, self.reference), CASE_METRICS
        )
        self.topics = [self.settings.partner_topic(p) for p in CHAIN.partner_ids]
        ensure_topics(self.settings.kafka_bootstrap, self.topics, PARTITIONS)
        self.misplaced: list[dict] = []  # sent, keyed by case, into another partition
        self.sent_to_case_topic = 0  # events expected on the case topic

    def publish(self, rate: float = 0.0, misplace_every: int = 0) -> None:
        """Partners' own Kafka clients: one-hop partners key by case key and let the default
        partitioner choose; the re-keyed partner keys by event id. Every `misplace_every`-th
        one-hop event is sent keyed by its case key into the partition after its own."""
        producer = KafkaProducer(bootstrap_servers=self.settings.kafka_bootstrap, linger_ms=5)
        interval = 1.0 / rate if rate else 0.0
        try:
            for n, event in enumerate(self.events):
                organisation = event["organisation"]
                topic = self.settings.partner_topic(organisation)
                value = json.dumps(event).encode()
                if organisation == RE_KEYED:
                    producer.send(topic, value, key=event["event_id"].encode())
                    self.sent_to_case_topic += 1
                elif misplace_every and n % misplace_every == 0:
                    key = event["case_key"].encode()
                    wrong = (kafka_partition(key, PARTITIONS) + 1) % PARTITIONS
                    producer.send(topic, value, key=key, partition=wrong)
                    self.misplaced.append(event)
                    self.sent_to_case_topic += 1
                else:
                    producer.send(topic, value, key=event["case_key"].encode())
                if interval and n % 100 == 99:
                    time.sleep(interval * 100)
            producer.flush(120)
        finally:
            producer.close()

    def converge(self, workers: list[WorkerProcess], timeout: float = 180.0) -> dict:
        wait_until_caught_up(
            self.settings.kafka_bootstrap,
            self.env["KETENMONITOR_APP_ID"],
            [*self.topics, self.settings.cases_topic],
            timeout=300,
        )
        samples: dict = {}
        for worker in workers:
            samples = wait_for_truth(worker.scrape, self.expected, CASE_METRICS, timeout)
        return samples

    def read(self, topic: str) -> dict[int, list]:
        """Every record of `topic` by partition (read_committed)."""
        consumer = KafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            enable_auto_commit=False,
            isolation_level="read_committed",
        )
        try:
            tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            ends = consumer.end_offsets(tps)
            out: dict[int, list] = defaultdict(list)
            while any(consumer.position(tp) < ends[tp] for tp in tps):
                for tp, records in consumer.poll(timeout_ms=1000).items():
                    out[tp.partition].extend(records)
            return out
        finally:
            consumer.close()

    def check_placement_and_paths(self) -> None:
        """Each case's state in exactly one changelog partition, Kafka's partition of its case
        key; the case topic carries only the re-keyed events; no case key anywhere."""
        by_pseudonym = {
            pseudonymise(self.env["KETENMONITOR_PSEUDONYM_KEY"].encode(), c.case_key): c.case_key
            for c in self.cases
            if c.steps
        }
        changelog = self.read(self.settings.changelog_topic("cases"))
        partitions_of: dict[bytes, set[int]] = defaultdict(set)
        for partition, records in changelog.items():
            for record in records:
                partitions_of[record.key].add(partition)
        assert {k.decode() for k in partitions_of} == set(by_pseudonym)
        for key, partitions in partitions_of.items():
            case_key = by_pseudonym[key.decode()]
            assert partitions == {kafka_partition(case_key.encode(), PARTITIONS)}, case_key
        case_topic = self.read(self.settings.cases_topic)
        forwarded = [r for records in case_topic.values() for r in records]
        # At-least-once: a batch redone after a failure may forward again; none here.
        assert len(forwarded) == self.sent_to_case_topic
        for partition, records in case_topic.items():
            for record in records:
                case_key = by_pseudonym[record.key.decode()]
                assert partition == kafka_partition(case_key.encode(), PARTITIONS)
        stored = b"".join(r.value for records in changelog.values() for r in records)
        carried = b"".join(r.value + r.key for r in forwarded)
        for case_key in list(by_pseudonym.values())[:500]:
            assert case_key.encode() not in stored and case_key.encode() not in carried


@pytest.mark.parametrize("exactly_once", [False, True], ids=["at-least-once", "exactly-once"])
def test_a_mixed_chain_one_hop_and_re_keyed_equals_the_batch_truth(
    monitor_env, start_worker, exactly_once
):
    extra = {"KETENMONITOR_EXACTLY_ONCE": "true"} if exactly_once else {}
    run = MixedRun(monitor_env, cases=2500, seed=18, **extra)
    worker = start_worker(run.env)
    run.publish(misplace_every=97)
    assert len(run.misplaced) > 50
    assert {e["organisation"] for e in run.events} >= {RE_KEYED, *ONE_HOP}
    samples = run.converge([worker])
    accepted = sum(v for k, v in samples.items() if k[0] == "ketenmonitor_events_accepted_total")
    assert accepted == len(run.events)
    run.check_placement_and_paths()


def test_kill_9_and_rescaling_with_both_paths_lose_and_double_nothing(monitor_env, start_worker):
    seed = random.SystemRandom().randrange(1_000_000)
    print(f"one-hop kill test seed {seed}")
    rng = random.Random(seed)
    run = MixedRun(monitor_env, cases=6000, seed=seed % 1000)
    stable = start_worker(run.env)
    victim = start_worker(run.env)
    publisher = threading.Thread(target=run.publish, kwargs={"rate": 3000, "misplace_every": 53})
    publisher.start()
    for _ in range(2):
        time.sleep(rng.uniform(3.0, 10.0))
        victim.kill()
        victim = start_worker(run.env)
    publisher.join()
    run.converge([stable, victim])


def test_a_worker_refuses_a_placement_other_than_the_recorded_one(monitor_env, start_worker):
    run = MixedRun(monitor_env, cases=50, seed=3)
    start_worker(run.env).stop()  # records case-key
    env = {**monitor_env, "KETENMONITOR_CASE_PLACEMENT": "pseudonym"}
    result = subprocess.run(
        [sys.executable, "-m", "ketenmonitor.cli", "worker"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "placed by the 'case-key' rule over 6 partitions" in result.stderr
    assert "Traceback" not in result.stderr


def _keys_and_partitions(bootstrap: str, topic: str) -> list[tuple[bytes | None, int, dict]]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        out = []
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            for tp, records in consumer.poll(timeout_ms=1000).items():
                out += [(r.key, tp.partition, json.loads(r.value)) for r in records]
        return out
    finally:
        consumer.close()


def test_partner_tools_key_by_case_into_the_case_partition(kafka_broker, tmp_path):
    """`publish --key-by case-key` and `simulate` for a one-hop partner: every message keyed by
    its case key, in the partition Kafka's partitioner gives that key; `publish` by default keys
    by event id."""
    bootstrap = kafka_broker.bootstrap_servers
    env = {
        **os.environ,
        "KETENMONITOR_KAFKA_BOOTSTRAP": bootstrap,
        "KETENMONITOR_PARTITIONS": str(PARTITIONS),
    }
    events = [
        {
            "schema_version": 1,
            "event_id": f"om-{n}",
            "case_key": f"PN-{n:06d}",
            "organisation": "om",
            "milestone": "om_decision",
            "occurred_at": "2024-03-02T09:15:00+01:00",
            "case_type": "serious",
            "district": "limburg",
            "outcome": "summons",
        }
        for n in range(3000)
    ]
    export = tmp_path / "export.jsonl"
    export.write_text("".join(json.dumps(e) + "\n" for e in events))
    for key_by in ("case-key", "event-id"):
        prefix = f"k{key_by[:4]}{os.getpid()}{int(time.time())}"
        run_env = {**env, "KETENMONITOR_TOPIC_PREFIX": prefix}
        ensure_topics(bootstrap, [f"{prefix}.events.om"], PARTITIONS)
        result = subprocess.run(
            [*PUBLISH, str(export), "--organisation", "om", "--key-by", key_by, "--quiet"],
            env=run_env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert result.returncode == 0, result.stderr
        records = _keys_and_partitions(bootstrap, f"{prefix}.events.om")
        assert len(records) == len(events)
        for key, partition, event in records:
            if key_by == "case-key":
                assert key == event["case_key"].encode()
                assert partition == kafka_partition(key, PARTITIONS)
            else:
                assert key == event["event_id"].encode()
        if key_by == "case-key":  # (by event id: sticky, a whole batch per partition)
            assert len({p for _, p, _ in records}) == PARTITIONS
    prefix = f"ksim{os.getpid()}{int(time.time())}"
    sim_env = {
        **env,
        "KETENMONITOR_TOPIC_PREFIX": prefix,
        "KETENMONITOR_CASE_PLACEMENT": "case-key",
        "KETENMONITOR_ONE_HOP_PARTNERS": "police,courts",
    }
    result = subprocess.run(
        [sys.executable, "-m", "ketenmonitor.cli", "simulate", "--cases", "300", "--quiet"],
        env=sim_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    for partner in CHAIN.partner_ids:
        records = _keys_and_partitions(bootstrap, f"{prefix}.events.{partner}")
        assert records, partner
        for key, partition, event in records:
            if partner in ("police", "courts"):
                assert key == event["case_key"].encode()
                assert partition == kafka_partition(key, PARTITIONS)
            else:
                assert key == event["event_id"].encode()
