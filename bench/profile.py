"""A sampling profile (py-spy) of a worker replaying a preloaded log: where the CPU goes.

    result = run_profile(broker, chain, events=100_000, logs=Path(...))

py-spy samples the worker's Python stacks (100 Hz) from when it answers HTTP until it has committed
everything; the raw (collapsed) stacks are kept beside the logs and summarised here: the functions
with the most samples on top of the stack (self), the most samples anywhere on the stack
(inclusive), and the share of samples by layer (our code, aiokafka, asyncio, aiohttp, ...).
The worker (streams/worker.py) runs on aiokafka without faust: the faust and mode layers stay to
read older profiles and should be ~0 now.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.kafka_env import LagWatch, create_topics, run_env
from bench.machine import load_average
from bench.workload import produce, replay_log
from ketenmonitor.domain.chain import Chain
from ketenmonitor.infra.kafka_broker import LocalKafkaBroker
from ketenmonitor.infra.worker_process import WorkerProcess
from ketenmonitor.settings import Settings

RUNTIME = "streams/worker.py, aiokafka batches"

# Layer of a frame, by the file in its "function (file:line)" label; first match wins. WORK: our
# files that do the per-event work. The runtime (streams/worker.py: consume loop, batch, restore;
# streams/web.py: the HTTP server) is on every stack of the main thread, so it is machinery: its
# share counts only the samples whose innermost frame is its own code (the loops over a batch).
# streams/app.py is the faust-based runtime up to commit 2cb3c4f, kept for older profiles.
WORK = (
    ("ours: domain core", ("ketenmonitor/domain/",)),
    ("ours: contract (schemas)", ("schemas/",)),
    ("ours: streams processing/codec/ingest", (
        "streams/processing.py", "streams/codec.py", "streams/ingest.py",
    )),
    ("ours: batch sender", ("streams/batch_sender.py",)),
    ("ours: /metrics collector", ("streams/metrics.py", "prometheus_client/")),
)
MACHINERY = (
    ("pydantic", ("pydantic",)),
    ("faust", ("faust/",)),
    ("mode", ("mode/",)),
    ("aiokafka", ("aiokafka/",)),
    ("aiohttp (/metrics server)", ("aiohttp/", "multidict/", "yarl/")),
    ("ours: runtime (streams/worker.py, web.py)", ("streams/worker.py", "streams/web.py")),
    ("ours: streams/app.py glue (faust runtime)", ("streams/app.py",)),
    ("asyncio", ("asyncio/",)),
    ("json/hmac/stdlib", ("json/", "hmac.py", "hashlib", "datetime", "enum.py", "typing.py")),
)
IDLE = "waiting in select (idle)"
# The thread asyncio.to_thread started (topic creation at start-up) waits in a C call for more
# work; py-spy does not always see that as idle, so it would show up as "other".
IDLE_THREAD = "idle thread-pool thread"


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise FileNotFoundError("py-spy is not installed (pip install py-spy)")
    return found


def file_of(frame: str) -> str:
    """'apply_event (ketenmonitor/domain/case.py:5)' -> 'ketenmonitor/domain/case.py'."""
    inside = frame.rpartition("(")[2]
    return inside.rpartition(":")[0] or inside.rstrip(")")


def layer_of(frame: str) -> str:
    path = file_of(frame)
    for name, prefixes in (*WORK, *MACHINERY):
        if any(path.startswith(p) or f"/{p}" in f"/{path}" for p in prefixes):
            return name
    return "other"


def sample_layer(frames: list[str]) -> str:
    """The innermost frame of our per-event work if any (the work), else what the leaf is."""
    leaf = frames[-1]
    if leaf.startswith(("select (", "EpollSelector.select (", "poll (")):
        return IDLE
    if leaf.startswith("_worker (") and file_of(leaf).endswith("concurrent/futures/thread.py"):
        return IDLE_THREAD
    for frame in reversed(frames):
        layer = layer_of(frame)
        if any(layer == name for name, _ in WORK) or layer == "pydantic":
            return layer
    return layer_of(leaf)


def summarise(collapsed: str, top: int = 15) -> dict[str, Any]:
    """Self, inclusive and per-layer sample shares of py-spy's raw (collapsed) output."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    layers: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        n = int(count_text)
        parts = [f for f in stack.split(";") if f]
        frames = [f for f in parts if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
        layers[sample_layer(frames)] += n

    def share(counter: Counter[str]) -> list[dict[str, Any]]:
        return [
            {"frame": f, "samples": n, "share": round(n / total, 3)}
            for f, n in counter.most_common(top)
        ]

    return {
        "samples": total,
        "self": share(own),
        "inclusive": share(inclusive),
        "layers": {k: round(v / total, 3) for k, v in layers.most_common()} if total else {},
    }


def run_profile(
    broker: LocalKafkaBroker, chain: Chain, events: int, logs: Path, timeout: float = 1800
) -> dict[str, Any]:
    log = replay_log(chain, events, seed=12)
    env = run_env(broker, "profile")
    settings = Settings(
        kafka_bootstrap=broker.bootstrap_servers, topic_prefix=env["KETENMONITOR_TOPIC_PREFIX"]
    )
    topics = [settings.partner_topic(p) for p in chain.partner_ids] + [settings.cases_topic]
    create_topics(broker.bootstrap_servers, topics)
    produce(broker.bootstrap_servers, log.raw, settings.partner_topic)
    raw_path = logs / "profile.collapsed.txt"
    worker = WorkerProcess(env, log_path=logs / "profile-worker.log", loglevel="warning")
    watch = LagWatch(broker.bootstrap_servers)
    worker.start()
    spy = None
    try:
        worker.wait_ready()
        assert worker.process is not None
        spy = subprocess.Popen(
            [py_spy(), "record", "--pid", str(worker.process.pid), "--rate", "100",
             "--format", "raw", "--output", str(raw_path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        started = time.monotonic()
        while watch.lag(env["KETENMONITOR_APP_ID"], topics) != 0:
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"profiled worker not caught up after {timeout}s")
            time.sleep(0.5)
        seconds = time.monotonic() - started
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            _, err = spy.communicate(timeout=120)
            if spy.returncode not in (0, -signal.SIGINT) and not raw_path.exists():
                raise RuntimeError(f"py-spy failed ({spy.returncode}): {err.decode()[-2000:]}")
        watch.close()
        worker.stop()
    result = summarise(raw_path.read_text())
    result.update({
        "runtime": RUNTIME,
        "events": len(log),
        "profiled_seconds": round(seconds, 2),
        "collapsed_stacks": str(raw_path),
        "load_average": load_average(),
    })
    return result
