"""The benchmark harness end to end on a small log: its output is well-formed and its check holds.

Starts its own broker (python -m bench run does) on a free port; asserts no timings.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ketenmonitor.infra.worker_process import free_port

REPO = Path(__file__).resolve().parents[2]


# In the fault scenarios' process (`fault_lane`): it evens out the two processes of `make test`.
@pytest.mark.fault_lane
def test_a_small_replay_run_writes_machine_facts_command_figures_and_passing_checks(
    tmp_path: Path,
):
    port = free_port(consecutive=2)  # the benchmark's broker takes the next port for its controller
    command = [
        sys.executable, "-m", "bench", "run", "--events", "2000", "--only", "replay",
        "--no-naive", "--kafka-port", str(port), "--results-dir", str(tmp_path),
        "--no-summary", "--name", "test",
    ]
    # A worker setting in the environment: every worker the run starts inherits it, and the
    # command recorded says so.
    env = {k: v for k, v in os.environ.items() if not k.startswith("KETENMONITOR_")}
    env["KETENMONITOR_CHECKPOINT_SECONDS"] = "30"
    done = subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    (path,) = tmp_path.glob("*-test.json")
    document = json.loads(path.read_text())
    assert document["command"].startswith(
        "KETENMONITOR_CHECKPOINT_SECONDS=30 python -m bench run --events 2000"
    ), document["command"]
    machine = document["machine"]
    assert machine["nproc"] >= 1 and machine["memory_total_bytes"] > 0
    assert machine["kafka_broker"] and machine["packages"]["aiokafka"]
    assert machine["packages"]["faust-streaming"]  # the naive baseline's runtime
    assert len(machine["load_average_at_start"]) == 3
    assert document["errors"] == {}

    replay = document["results"]["replay"]
    assert 1500 <= replay["events"] <= 2500
    worker = replay["worker"]
    assert worker["runtime"] == "streams/worker.py, aiokafka batches"
    assert worker["completed"] and worker["lag_at_end"] == 0
    assert worker["events_processed"] == replay["events"]
    assert worker["cpu_seconds_processing"] > 0 and worker["events_per_second"] > 0
    assert worker["check"] == {
        "equal": True, "series": worker["check"]["series"], "mismatches": [], "by_metric": {}
    }
    assert worker["check"]["series"] > 500
    assert replay["batch_truth"]["series"] == worker["check"]["series"]
    assert replay["core_loop"]["events_per_cpu_second"] > 0
    assert "naive" not in replay

    # The ceiling: both decode-only loops, before and after the worker, read the whole log.
    assert set(replay["ceiling"]) == {"aiokafka", "confluent"}
    for figure in replay["ceiling"].values():
        assert figure["completed"] and len(figure["runs"]) == 2
        assert all(run["events"] == replay["events"] for run in figure["runs"])
        assert figure["events_per_second"] > 0 and figure["events_per_cpu_second"] > 0
    assert machine["packages"]["confluent-kafka"]
    # The peer: the quixstreams application processed every event, and its stage counts equal a
    # count made from the log itself.
    peer = replay["peer"]
    assert peer["completed"] and peer["events_processed"] == replay["events"]
    assert peer["versions"]["quixstreams"] == "3.28.1"
    assert peer["check"]["equal"] and peer["check"]["mismatches"] == []
    assert peer["check"]["series"] >= 10  # inflow and outflow of the chain's stages
    assert peer["events_per_second"] > 0 and peer["events_per_cpu_second"] > 0
    ratios = replay["ratios"]
    assert set(ratios) == {
        "worker_to_ceiling_aiokafka", "worker_to_ceiling_confluent", "worker_to_ceiling",
        "worker_to_peer",
    }
    expected = worker["events_per_second"] / peer["events_per_second"]
    assert abs(ratios["worker_to_peer"]["wall"] - expected) < 0.001 + 0.001 * expected
    assert all(r["wall"] > 0 and r["cpu"] > 0 for r in ratios.values())
