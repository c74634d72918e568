"""The garbage-collector probe (README.md here): the national replay log through one worker at a
time per collector mode, modes alternating per round.

    PYTHONPATH=. .venv/bin/python bench/gc_probe/run.py PORT CASES ROUNDS MODES LOG_DIR
"""

import json
import os
import sys
import time
from pathlib import Path

from bench.kafka_env import LagWatch, bench_broker
from bench.machine import CpuClock, settle
from bench.national import _national_env, _produce, _topics, national_cases
from bench.workload import reference_time
from ketenmonitor.domain.chain import load_chain
from ketenmonitor.infra.worker_process import WorkerProcess

PROBE = str(Path(__file__).resolve().parent)


def main() -> None:
    port, cases, rounds = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    modes = sys.argv[4].split(",")
    logs = Path(sys.argv[5])
    logs.mkdir(parents=True, exist_ok=True)
    chain = load_chain()
    closed, open_cases = cases * 8 // 10, cases * 2 // 10
    reference = reference_time()
    events = 2 * closed + open_cases
    with bench_broker(port) as broker:
        shared = _national_env(broker, chain, "gcx", reference)
        topics = _topics(broker, chain, shared)
        print(_produce(broker, chain, national_cases(chain, closed, open_cases, reference), shared),
              flush=True)
        watch = LagWatch(broker.bootstrap_servers)
        for round_ in range(rounds):
            for mode in modes if round_ % 2 == 0 else modes[::-1]:
                name = mode.replace("+", "-").replace("=", "")
                stats = logs / f"{name}-{round_}.gc.json"
                group = f"{shared['KETENMONITOR_APP_ID']}-{name}-{round_}"
                env = {**shared, "KETENMONITOR_APP_ID": group,
                       "PYTHONPATH": PROBE + ":" + os.environ.get("PYTHONPATH", ""),
                       "GC_EXPERIMENT": mode, "GC_EXPERIMENT_OUT": str(stats)}
                settle()
                worker = WorkerProcess(env, log_path=logs / f"{name}-{round_}.log", loglevel="info")
                started = time.monotonic()
                worker.start()
                assert worker.process is not None
                clock = CpuClock(worker.process.pid)
                try:
                    worker.wait_ready(timeout=120)
                    while watch.lag(env["KETENMONITOR_APP_ID"], topics) != 0:
                        time.sleep(0.25)
                    wall, cpu = time.monotonic() - started, clock.cpu_seconds()
                    time.sleep(2.5)  # the probe's next write of its figures
                    collector = json.loads(stats.read_text())
                finally:
                    worker.stop(timeout=300)
                print(json.dumps({"round": round_, "mode": mode,
                                  "events_per_s": round(events / wall),
                                  "events_per_cpu_s": round(events / cpu), "cpu": round(cpu, 2),
                                  "gc": collector}), flush=True)
        watch.close()


if __name__ == "__main__":
    main()
