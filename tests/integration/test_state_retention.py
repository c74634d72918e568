"""Closed cases leave the worker's state after the retention; the numbers stay exact (issue #17).

On the real broker: a simulated log is processed by a worker without retention, then a worker with
KETENMONITOR_CLOSED_CASE_RETENTION_DAYS takes over and retires the closed cases whose latest event
lies past the retention (the batch truth's own rule, batch_truth.retired_case_keys, decides which).
The totals equal the batch computation all along; the `cases` changelog ends with a marker for
each retired case and no state; events sent afterwards for retired cases are counted and kept on
the dead-letter topic; Kafka compacts the retired cases' states out of the changelog within the
configured lag; a worker killed with -9 and started again restores aggregate + remaining states
and is still exact. A real Prometheus scrapes every worker throughout: no chain counter ever goes
down within a worker (the retirement sweep, the late events, the restore), and the late count
reads right there too.
"""

from __future__ import annotations

import functools
import re
import time
from collections import Counter

import pytest
from batch_truth import CASE_METRICS, retired_case_keys, wait_for_truth
from kafka import KafkaConsumer, TopicPartition
from ketenmonitor.streams.retirement import AGGREGATE_KEY, RETIRED_MARKER
from test_resilience import Run, _scrape

from bench.machine import mapped_unnamed_bytes
from ketenmonitor.domain.chain import load_chain
from ketenmonitor.domain.pseudonym import Pseudonymiser
from ketenmonitor.infra.consumer_progress import wait_until_caught_up
from ketenmonitor.infra.prometheus import LocalPrometheus, render_prometheus_config
from ketenmonitor.infra.worker_process import free_port
from ketenmonitor.kafka_io import PartnerPublisher
from ketenmonitor.simulator import step_event

CHAIN = load_chain()
pytestmark = [pytest.mark.integration]
RETENTION_DAYS = 180.0
LAG_SECONDS = 5
LATE_EVENTS = 60
LATE = "ketenmonitor_events_retired_case_total"
ACCEPTED = "ketenmonitor_events_accepted_total"


def read_topic(bootstrap: str, topic: str) -> list:
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=3000
    )
    try:
        deadline = time.monotonic() + 60
        while not (partitions := consumer.partitions_for_topic(topic) or set()):
            assert time.monotonic() < deadline, f"no metadata for {topic}"
            consumer.topics()  # fetches the cluster's metadata
            time.sleep(0.5)
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        records = []
        deadline = time.monotonic() + 60
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            assert time.monotonic() < deadline, f"{topic} not read to its end"
            for batch in consumer.poll(timeout_ms=1000).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def patient(worker):
    """A scrape that waits up to 30 s for a worker busy restoring on a loaded machine."""
    return functools.partial(_scrape, worker, 30.0)


def wait_for_late_count(worker, expected: int) -> None:
    """Until the worker counts `expected` events for retired cases (60 s at most)."""
    deadline = time.monotonic() + 60
    while patient(worker)().get((LATE, frozenset()), 0) != expected:
        assert time.monotonic() < deadline, patient(worker)().get((LATE, frozenset()))
        time.sleep(1)


def retired_dead_letters(bootstrap: str, topic: str) -> list[bytes]:
    """The keys of the dead-lettered events that arrived for retired cases."""
    return [
        r.key for r in read_topic(bootstrap, topic)
        if dict(r.headers).get("reason") == b"case_retired"
    ]


def latest_per_key(records: list) -> dict[bytes, bytes | None]:
    latest: dict[bytes, bytes | None] = {}
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        latest[r.key] = r.value
    return latest


class KeyedByCase(Run):
    """Every partner keys its messages by case key and is applied in one hop (streams/
    placement.py): retired cases must be recognised on that path too."""

    def __init__(self, monitor_env: dict[str, str], cases: int, seed: int) -> None:
        super().__init__(monitor_env, cases, seed)
        self.env = {
            **self.env,
            "KETENMONITOR_CASE_PLACEMENT": "case-key",
            "KETENMONITOR_ONE_HOP_PARTNERS": ",".join(CHAIN.partner_ids),
        }

    def publish(self, events: list[dict] | None = None, rate: float = 0.0) -> None:
        with PartnerPublisher(self.settings.kafka_bootstrap) as publisher:
            for event in self.events if events is None else events:
                topic = self.settings.partner_topic(event["organisation"])
                publisher.send(topic, event, key_by_case=True)


# The re-keyed run goes in the fault scenarios' process (`fault_lane`): it evens out the two
# processes of `make test` (tests/run_side_by_side.sh).
@pytest.mark.parametrize(
    "placement", [pytest.param("re-keyed", marks=pytest.mark.fault_lane), "one-hop"]
)
def test_closed_cases_retire_after_the_retention_and_the_numbers_stay_exact(
    monitor_env, start_worker, placement, tmp_path, request
):
    run = (KeyedByCase if placement == "one-hop" else Run)(monitor_env, cases=2000, seed=23)
    # The changelogs the first worker creates let Kafka compact a superseded record within 5 s.
    run.env = {**run.env, "KETENMONITOR_CHANGELOG_MAX_COMPACTION_LAG_SECONDS": str(LAG_SECONDS)}
    bootstrap = run.settings.kafka_bootstrap
    retired = retired_case_keys(CHAIN, run.cases, run.reference, RETENTION_DAYS)
    assert 300 < len(retired) < len(run.cases) - 300  # both kinds, plenty of each

    ports = [free_port() for _ in range(3)]  # one per worker: an instance each in Prometheus
    config = tmp_path / "prometheus.yml"
    config.write_text(render_prometheus_config([f"127.0.0.1:{p}" for p in ports], [], "1s", "1s"))
    prometheus = LocalPrometheus(free_port(), config, tmp_path / "prometheus").start()
    request.addfinalizer(prometheus.stop)

    first = start_worker(run.env, metrics_port=ports[0])  # no retention: every case stays
    run.publish()
    run.assert_converges([first])
    first.stop()

    retiring = {**run.env, "KETENMONITOR_CLOSED_CASE_RETENTION_DAYS": str(RETENTION_DAYS)}
    if placement == "one-hop":  # with local state: the retired keys' digests are mapped files
        retiring["KETENMONITOR_STATE_DIR"] = str(tmp_path / "state")
        retiring["KETENMONITOR_CHECKPOINT_SECONDS"] = "2"
    second = start_worker(retiring, metrics_port=ports[1])
    pseudonym = Pseudonymiser(monitor_env["KETENMONITOR_PSEUDONYM_KEY"].encode())
    retired_keys = {pseudonym(k).encode() for k in retired}
    changelog = f"{run.group}-cases-changelog"  # the app id is the group
    deadline = time.monotonic() + 120
    while True:  # the takeover's sweep retires the cases the batch rule names, and only those
        latest = latest_per_key(read_topic(bootstrap, changelog))
        markers = {k for k, v in latest.items() if v == RETIRED_MARKER}
        if markers == retired_keys or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert markers == retired_keys, (len(markers), len(retired_keys))
    states = {k for k, v in latest.items() if v and k != AGGREGATE_KEY and v != RETIRED_MARKER}
    assert len(states) == len(run.cases) - len(retired)
    assert sum(1 for k in latest if k == AGGREGATE_KEY) == 1
    run.assert_converges([second])  # the totals did not move
    assert patient(second)().get((LATE, frozenset()), 0) == 0

    # Late events: a corrected last milestone for 60 retired cases (would reopen or change them):
    # counted, dead-lettered, not applied. 60 reach every changelog partition (all but surely).
    by_key = {c.case_key: c for c in run.cases}
    late_retired = sorted(retired)[:LATE_EVENTS]
    late_events = [
        step_event(by_key[k], len(by_key[k].steps) - 1, CHAIN, seed=run.seed,
                   event_id=f"late-{k}", revision=1)
        for k in late_retired
    ]
    run.publish(late_events)
    wait_until_caught_up(bootstrap, run.group, run.topics, timeout=300)
    accepted = Counter(e["organisation"] for e in late_events)
    expected = dict(run.expected)
    for organisation, n in accepted.items():
        key = (ACCEPTED, frozenset({("organisation", organisation)}))
        expected[key] = expected.get(key, 0) + n  # accepted by the contract, then not applied
    wait_for_truth(patient(second), expected, CASE_METRICS, timeout=120)
    wait_for_late_count(second, LATE_EVENTS)
    dead = retired_dead_letters(bootstrap, run.settings.dead_letter_topic)
    assert sorted(dead) == sorted(pseudonym(k).encode() for k in late_retired)

    # Compaction within the lag: the states of retired cases leave the changelog itself, so a
    # restore reads their markers only. The aggregate records the late events wrote rolled the
    # active segments; Kafka's cleaner runs every 15 s.
    deadline = time.monotonic() + 120
    while True:
        records = read_topic(bootstrap, changelog)
        stale = {r.key for r in records if r.key in retired_keys and r.value != RETIRED_MARKER}
        if not stale or time.monotonic() > deadline:
            break
        time.sleep(5)
    assert not stale, f"{len(stale)} retired cases still have states in the changelog"
    assert len(records) < len(run.events) + len(retired_keys)  # compacted, not merely appended

    # kill -9 and a new worker: aggregate + remaining states, exact; the late count survives
    second.kill()
    third = start_worker(retiring, metrics_port=ports[2])
    wait_for_truth(patient(third), expected, CASE_METRICS, timeout=120)
    assert patient(third)().get((LATE, frozenset()), 0) == LATE_EVENTS
    latest = latest_per_key(read_topic(bootstrap, changelog))
    assert {k for k, v in latest.items() if v == RETIRED_MARKER} == retired_keys
    late_total = LATE_EVENTS
    if placement == "one-hop":
        # Restored from the local checkpoints, the retired digests read back into mapped files:
        # late events for other retired cases are still recognised, counted and kept.
        # (its metrics can be exact before it has restored: they come from the totals topic)
        deadline = time.monotonic() + 60
        while len(TAIL.findall(third.log_path.read_text())) < 6:
            assert time.monotonic() < deadline, third.log_path.read_text()[-3000:]
            time.sleep(0.5)
        assert len(TAIL.findall(third.log_path.read_text())) == 6
        assert mapped_unnamed_bytes(third.process.pid, tmp_path / "state") >= 8 * len(retired)
        more = sorted(retired)[LATE_EVENTS : LATE_EVENTS + 20]
        more_events = [
            step_event(by_key[k], len(by_key[k].steps) - 1, CHAIN, seed=run.seed,
                       event_id=f"later-{k}", revision=2)
            for k in more
        ]
        run.publish(more_events)
        late_total += len(more)
        for organisation, n in Counter(e["organisation"] for e in more_events).items():
            key = (ACCEPTED, frozenset({("organisation", organisation)}))
            expected[key] = expected.get(key, 0) + n
        wait_until_caught_up(bootstrap, run.group, run.topics, timeout=300)
        wait_for_truth(patient(third), expected, CASE_METRICS, timeout=120)
        wait_for_late_count(third, late_total)
        dead = retired_dead_letters(bootstrap, run.settings.dead_letter_topic)
        assert sorted(dead) == sorted(pseudonym(k).encode() for k in late_retired + more)

    # As Prometheus saw it: every chain counter of every worker only went up, and the late count
    # reads right (taken as the rules take it: the max across workers).
    time.sleep(3)  # a scrape of the third worker after it was exact
    counters = [  # each name on its own: a function drops the name, and the series would clash
        found["metric"]["__name__"] for found in prometheus.query(
            'count by (__name__) ({__name__=~"ketenmonitor_.+(_total|_bucket|_count|_sum)"})'
        )
    ]
    assert {ACCEPTED, LATE, "ketenmonitor_stage_inflow_cases_total"} <= set(counters), counters
    went_down = [
        (name, found["metric"], found["value"])
        for name in counters for found in prometheus.query(f"resets({name}[1h]) > 0")
    ]
    assert went_down == []
    late = prometheus.query(f"max({LATE})")
    assert late and float(late[0]["value"][1]) == late_total, late


TAIL = re.compile(r"local checkpoint at offset (\d+), changelog tail of (\d+) records read")
OUTSIDE = "is outside the changelog"
SAVED_TOTALS = "taken from its local checkpoint"


@pytest.mark.fault_lane  # evens out the two processes of `make test`
def test_a_restart_with_local_state_reads_the_tail_and_a_stale_copy_falls_back_exactly(
    monitor_env, start_worker, tmp_path
):
    run = Run(monitor_env, cases=2000, seed=29)
    state = {
        **run.env,
        "KETENMONITOR_STATE_DIR": str(tmp_path / "state"),
        "KETENMONITOR_CHECKPOINT_SECONDS": "2",
    }
    half = len(run.events) // 2
    first = start_worker(state)
    run.publish(run.events[:half])
    wait_until_caught_up(run.settings.kafka_bootstrap, run.group, run.topics, timeout=300)
    first.stop()  # SIGTERM: the last checkpoint is written on the way out
    changelog = f"{run.group}-cases-changelog"  # the app id is the group
    records_at_stop = len(read_topic(run.settings.kafka_bootstrap, changelog))

    run.publish(run.events[half:])
    second = start_worker(state)
    run.assert_converges([second])
    tails = [(int(o), int(n)) for o, n in TAIL.findall(second.log_path.read_text())]
    assert len(tails) == 6, second.log_path.read_text()[-3000:]  # every partition from its copy
    assert sum(o for o, _ in tails) >= records_at_stop  # the checkpoints reached the stop
    changelog_records = len(read_topic(run.settings.kafka_bootstrap, changelog))
    assert sum(n for _, n in tails) < changelog_records - records_at_stop // 2  # a tail only
    second.kill()

    # A stale local copy: its offsets are moved past the changelog's end (as a copy from another
    # epoch of the topic would be), and one partition's copy is removed: every partition is read
    # from the changelog's beginning and the numbers are exact.
    from ketenmonitor.streams.state_store import CheckpointStore

    store = CheckpointStore(tmp_path / "state" / run.env["KETENMONITOR_APP_ID"])
    with store._env.begin(write=True) as txn:
        for partition in range(6):
            key = f"{changelog}/{partition}".encode()
            raw = txn.get(key, db=store._db)
            assert raw is not None
            version, offset, position = store_meta(raw)
            if partition == 0:
                txn.delete(key, db=store._db)
            else:
                txn.put(key, pack_meta(version, offset + 10_000, position, raw), db=store._db)
    store.close()
    third = start_worker(state)
    run.assert_converges([third])
    log_text = third.log_path.read_text()
    assert log_text.count(OUTSIDE) == 5 and not TAIL.findall(log_text), log_text[-3000:]
    assert SAVED_TOTALS not in log_text  # every partition's totals folded from its cases

    # Stopped (SIGTERM) and started again with nothing written in between: each partition's
    # totals come from its checkpoint, no case is folded, and the numbers are exact.
    third.stop()
    fourth = start_worker(state)
    run.assert_converges([fourth])
    log_text = fourth.log_path.read_text()
    assert log_text.count(SAVED_TOTALS) == 6, log_text[-3000:]
    assert [int(n) for _, n in TAIL.findall(log_text)] == [0] * 6


def store_meta(raw: bytes) -> tuple[int, int, int]:
    from ketenmonitor.streams.state_store import _META

    return _META.unpack_from(raw)


def pack_meta(version: int, offset: int, position: int, raw: bytes) -> bytes:
    from ketenmonitor.streams.state_store import _META

    return _META.pack(version, offset, position) + raw[_META.size :]
