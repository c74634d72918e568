"""Run the quixstreams peer (bench/quix_peer.py) on the replay log and check its counts.

    figure = run_peer(bootstrap, chain, partner_topics, log.raw, logs)

quixstreams 3.28.1 caps pydantic below 2.14 and pydantic-settings below 2.16, which the project
pins higher (pyproject.toml), so the peer cannot live in the project's virtualenv: it gets its own,
made here from bench/quixstreams-requirements.txt (pip, once; remade when that file changes).

The peer is timed as the worker is: from process start (interpreter, imports, group join, topic
creation) to the end, here its exit after it stopped at the last event and committed. Its CPU per
event is its own process time from `app.run()` on. Its counts are checked against a count made
here from the log itself: per stage, the cases with any event whose milestone enters (leaves) it.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from bench.kafka_env import BENCH_DIR
from bench.machine import load_average
from ketenmonitor.domain.chain import Chain

BENCH_ROOT = Path(__file__).resolve().parent
REQUIREMENTS = BENCH_ROOT / "quixstreams-requirements.txt"
PEER_APP = BENCH_ROOT / "quix_peer.py"
VENV = BENCH_DIR / "quixstreams-venv"
WHAT = (
    "bench/quix_peer.py: quixstreams 3.28.1 Application, the four partner topics concatenated, "
    "group_by case key (repartition topic), per-case stages entered/left in its RocksDB store "
    "(changelogged), an in-process counter per stage"
)


def peer_python() -> Path:
    """The peer's interpreter, its virtualenv made (or remade) from REQUIREMENTS first."""
    python = VENV / "bin" / "python"
    stamp = VENV / ".requirements-sha256"
    want = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    if python.exists() and stamp.exists() and stamp.read_text() == want:
        return python
    shutil.rmtree(VENV, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, env=env)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS)], check=True, env=env
    )
    stamp.write_text(want)
    return python


def stage_moves(chain: Chain) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """milestone -> stages it enters, milestone -> stages it leaves (the stages' exit lists)."""
    enters: dict[str, list[str]] = {}
    exits: dict[str, list[str]] = {}
    for stage in chain.spec.stages:
        for milestone in stage.enter:
            enters.setdefault(milestone, []).append(stage.id)
        for milestone in stage.exit:
            exits.setdefault(milestone, []).append(stage.id)
    return enters, exits


def expected_counts(
    raw: list[tuple[str, bytes]], enters: dict[str, list[str]], exits: dict[str, list[str]]
) -> dict[str, dict[str, int]]:
    """Per stage, the cases that ever entered / left it, counted from the log directly."""
    entered: set[tuple[str, str]] = set()
    left: set[tuple[str, str]] = set()
    for _, value in raw:
        event = orjson.loads(value)
        case, milestone = event["case_key"], event["milestone"]
        entered.update((case, stage) for stage in enters.get(milestone, ()))
        left.update((case, stage) for stage in exits.get(milestone, ()))
    return {
        "inflow": dict(Counter(stage for _, stage in entered)),
        "outflow": dict(Counter(stage for _, stage in left)),
    }


def run_peer(
    bootstrap: str,
    chain: Chain,
    topics: list[str],
    raw: list[tuple[str, bytes]],
    logs: Path,
    timeout: float = 1800,
) -> dict[str, Any]:
    python = peer_python()
    enters, exits = stage_moves(chain)
    state_dir = Path(tempfile.mkdtemp(prefix="ketenmonitor-quix-peer-"))
    config = state_dir / "config.json"
    config.write_text(
        json.dumps(
            {
                "bootstrap": bootstrap,
                "group": f"bench-quix-peer-{uuid.uuid4().hex[:6]}",
                "topics": topics,
                "events": len(raw),
                "state_dir": str(state_dir / "state"),
                "enters": enters,
                "exits": exits,
            }
        )
    )
    load = load_average()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    try:
        with open(logs / "replay-quix-peer.log", "wb") as log:
            done = subprocess.run(
                [str(python), str(PEER_APP)],
                env={"PEER_CONFIG": str(config), "PATH": "/usr/bin"},
                stdout=subprocess.PIPE,
                stderr=log,
                timeout=timeout,
                check=False,
            )
    finally:
        wall = time.monotonic() - started
        shutil.rmtree(state_dir, ignore_errors=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"the quixstreams peer failed (exit {done.returncode}); see {log.name}")
    own = json.loads(done.stdout.decode().strip().splitlines()[-1])
    cpu_total = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    expected = expected_counts(raw, enters, exits)
    counted = {"inflow": own["inflow"], "outflow": own["outflow"]}
    processed = own["processed"]
    return {
        "what": WHAT,
        "versions": own["versions"],
        "events": len(raw),
        "events_processed": processed,
        "completed": processed == len(raw),
        "wall_seconds_from_start": round(wall, 2),
        "cpu_seconds_total": round(cpu_total, 2),
        "cpu_seconds_processing": own["cpu_seconds"],
        "events_per_second": round(processed / wall, 1),
        "events_per_cpu_second": round(processed / max(own["cpu_seconds"], 1e-9), 1),
        "check": {
            "what": "cases per stage entered/left, against a count from the log itself",
            "equal": counted == expected,
            "series": sum(len(v) for v in expected.values()),
            "mismatches": [
                [kind, stage, counted[kind].get(stage), expected[kind].get(stage)]
                for kind in expected
                for stage in sorted(set(expected[kind]) | set(counted[kind]))
                if counted[kind].get(stage) != expected[kind].get(stage)
            ],
        },
        "load_average_before": load,
        "load_average": load_average(),
    }
