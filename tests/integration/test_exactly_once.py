"""Exactly-once mode (KETENMONITOR_EXACTLY_ONCE=true) on a real broker: every batch is one Kafka
transaction with its consumer offsets, so the numbers end exact and no event reaches the case
state twice, on a normal feed and after a kill -9 mid-stream (docs/operations.md, Delivery).

The metrics of every live worker are compared with the independent batch computation of the log
(tests/integration/batch_truth.py), as in test_resilience.py. `ketenmonitor_events_duplicate_total`
counts every event the case state saw again; the simulated log has no duplicates, so at-least-once
delivery shows replays there after a crash and exactly-once must show none.
"""

from __future__ import annotations

import time

import pytest
from test_resilience import Run

pytestmark = [pytest.mark.integration]

EXACTLY_ONCE = {"KETENMONITOR_EXACTLY_ONCE": "true"}
DUPLICATES = "ketenmonitor_events_duplicate_total"


def _duplicates(samples: dict) -> float:
    return sum(v for (name, _), v in samples.items() if name == DUPLICATES)


def test_exactly_once_mode_ends_exact_on_a_normal_feed(monitor_env, start_worker, tmp_path):
    run = Run(monitor_env, cases=600, seed=7)
    worker = start_worker({**run.env, **EXACTLY_ONCE, "KETENMONITOR_WORKER_ID": "only"})
    run.publish()
    samples = run.assert_converges([worker])
    assert _duplicates(samples) == 0
    log = (tmp_path / "worker-0.log").read_text()
    assert f"transactional id {run.group}-worker-only" in log


@pytest.mark.fault
def test_exactly_once_mode_after_a_kill_9_doubles_nothing(monitor_env, start_worker):
    run = Run(monitor_env, cases=800, seed=8)
    env = {**run.env, **EXACTLY_ONCE}
    stable = start_worker({**env, "KETENMONITOR_WORKER_ID": "stable"})
    victim = start_worker({**env, "KETENMONITOR_WORKER_ID": "victim"})
    publisher = run.publish_in_background(rate=1000)
    time.sleep(2.5)
    victim.kill()  # mid-stream, mid-transaction most likely
    # The same worker id: the restarted worker's producer id request aborts the open transaction
    # of the killed one at once (without it, the broker aborts it after the transaction timeout).
    victim = start_worker({**env, "KETENMONITOR_WORKER_ID": "victim"})
    publisher.join()
    samples = run.assert_converges([stable, victim])
    for worker in (stable, victim):
        assert _duplicates(worker.scrape()) == 0, worker.metrics_url
    assert samples[("ketenmonitor_cases_tracked", frozenset())] == sum(
        1 for c in run.cases if c.steps
    )
