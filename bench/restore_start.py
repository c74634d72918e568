"""How long a worker's first restore takes when its changelogs are empty (a new deployment, or
a group's first start), with and without local state, from the worker's own log line.

    .venv/bin/python -m bench.restore_start --starts 3 --kafka-port 36600 --name restore-start

Each start is a fresh worker (its own topics, group and changelogs) on one broker; the two modes
alternate, the first of them changing per start. The figure is the worker's "restored N cases
... in S s" for its first assignment: nothing to read, so what it measures is the restore's own
overhead (end offsets, checkpoint lookups). Written for a stall of aiokafka's fetch wait (0.5 s)
in the restorer (bench/analysis.md); the restart-to-exact times of real state are
bench/recovery.py's and bench/national.py's.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import tempfile
import time
from pathlib import Path

from bench.kafka_env import bench_broker, run_env
from bench.machine import load_average, standalone_record
from ketenmonitor.infra.worker_process import WorkerProcess

RESTORED = re.compile(r"restored \d+ cases and \d+ partner partitions for .* in ([0-9.]+)s")
MODES = ("in-memory", "state")


def first_restore_seconds(env: dict[str, str], log_path: Path, timeout: float = 90.0) -> float:
    worker = WorkerProcess(env, log_path=log_path).start()
    try:
        worker.wait_ready(timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = RESTORED.search(log_path.read_text(errors="replace"))
            if found:
                return float(found.group(1))
            time.sleep(0.1)
        raise TimeoutError(f"no restore in {log_path} after {timeout}s")
    finally:
        worker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--starts", type=int, default=3, help="starts of each mode")
    parser.add_argument("--kafka-port", type=int, default=36600)
    parser.add_argument("--name", default="restore-start")
    args = parser.parse_args()
    started_load = load_average()
    seconds: dict[str, list[float]] = {mode: [] for mode in MODES}
    work = Path(tempfile.mkdtemp(prefix="ketenmonitor-restore-start-"))
    with bench_broker(args.kafka_port) as broker:
        for start in range(args.starts):
            for mode in MODES if start % 2 == 0 else reversed(MODES):
                extra = {"KETENMONITOR_STATE_DIR": str(work / f"state-{start}")} \
                    if mode == "state" else {}
                env = run_env(broker, f"restore-{start}-{mode}", **extra)
                seconds[mode].append(
                    first_restore_seconds(env, work / f"{mode}-{start}.log")
                )
    command = (f"python -m bench.restore_start --starts {args.starts} --kafka-port "
               f"{args.kafka_port} --name {args.name}")
    result = {
        **standalone_record(command, started_load, __doc__),
        "restore_seconds": seconds,
        "medians": {mode: statistics.median(v) for mode, v in seconds.items()},
    }
    out = Path("bench/results") / f"{time.strftime('%Y-%m-%d')}-{args.name}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["restore_seconds"]), f"-> {out}")


if __name__ == "__main__":
    main()
