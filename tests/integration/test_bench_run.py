"""The benchmark harness end to end on a small log: its output is well-formed and its check holds.

Starts its own broker (python -m bench run does) on a free port; asserts no timings.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ketenmonitor.infra.worker_process import free_port

REPO = Path(__file__).resolve().parents[2]


def test_a_small_replay_run_writes_machine_facts_command_figures_and_a_passing_check(
    tmp_path: Path,
):
    port = free_port()
    command = [
        sys.executable, "-m", "bench", "run", "--events", "2000", "--only", "replay",
        "--no-naive", "--kafka-port", str(port), "--results-dir", str(tmp_path),
        "--no-summary", "--name", "test",
    ]
    done = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=900, check=False
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    (path,) = tmp_path.glob("*-test.json")
    document = json.loads(path.read_text())
    assert document["command"].startswith("python -m bench run --events 2000")
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
    assert worker["check"] == {"equal": True, "series": worker["check"]["series"], "mismatches": []}
    assert worker["check"]["series"] > 500
    assert replay["batch_truth"]["series"] == worker["check"]["series"]
    assert replay["core_loop"]["events_per_cpu_second"] > 0
    assert "naive" not in replay
