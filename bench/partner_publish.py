"""Partner-side publishing against a real broker: `publish`, `import-log`, `simulate`.

    .venv/bin/python -m bench.partner_publish --bootstrap 127.0.0.1:19592 \\
        --code after=. --code before=/path/to/older/checkout [--rounds 2] [--wait-load 3]

Inputs (made once in --workdir): a police JSON Lines file (`simulate --cases 30000 --seed 3`,
the police rows repeated --repeat times with new event ids), and a CSV case event log in the
format of examples/eventlog/mapping.yaml (tests/integration/test_eventlog_import.write_log,
--log-cases cases; 80,000 give ~560k rows, the size of the log that took 544 s). Each round runs
every command with every code version (PYTHONPATH=<dir>; candidates interleaved, order rotating per
round) as a subprocess, each into fresh topics, and records wall time, the child's CPU time
(user+system) and events per second of wall time, start-up included. Prints a JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from bench.machine import load_average, machine_facts
from ketenmonitor.kafka_io import ensure_topics

PARTNERS = ("police", "om", "courts", "cjib")

ROOT = Path(__file__).resolve().parent.parent


def make_inputs(workdir: Path, repeat: int, log_cases: int) -> dict[str, Path]:
    workdir.mkdir(parents=True, exist_ok=True)
    sim, police, log = workdir / "sim.jsonl", workdir / "police.jsonl", workdir / "log.csv"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KETENMONITOR_PSEUDONYM_KEY": "bench-key-0123"}
    if not sim.exists():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "ketenmonitor.cli",
                "simulate",
                "--cases",
                "30000",
                "--seed",
                "3",
                "--end",
                "1764000000",
                "--quiet",
                "--output",
                str(sim),
            ],
            env=env,
            check=True,
        )
    if not police.exists():
        rows = [r for r in sim.read_bytes().splitlines() if b'"organisation":"police"' in r]
        with police.open("wb") as out:
            for n in range(repeat):
                for row in rows:
                    out.write(row.replace(b'"event_id":"sim3-', b'"event_id":"r%d-' % n, 1))
                    out.write(b"\n")
    if not log.exists():
        sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "integration")]  # it imports batch_truth
        import yaml

        from tests.integration.test_eventlog_import import MAPPING, write_log

        write_log(log, yaml.safe_load(MAPPING.read_text()), cases=log_cases, seed=5)
    return {"publish": police, "import-log": log}


def run(code: Path, args: list[str], bootstrap: str) -> dict[str, Any]:
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    # The partner topics as deployed (6 partitions), not as the broker would auto-create them.
    ensure_topics(bootstrap, [f"{prefix}.events.{p}" for p in PARTNERS], partitions=6)
    env = {
        **os.environ,
        "PYTHONPATH": str(code),
        "KETENMONITOR_KAFKA_BOOTSTRAP": bootstrap,
        "KETENMONITOR_TOPIC_PREFIX": prefix,
        "KETENMONITOR_PSEUDONYM_KEY": "bench-key-0123",
    }
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = load_average()
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "ketenmonitor.cli", *args],
        # In the code's folder: `python -m` puts the working directory before PYTHONPATH, so a
        # run from another checkout would import that checkout's code instead.
        cwd=code,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    summary = (done.stdout.strip().splitlines() or [""])[-1]
    counted = re.search(r"(\d+) (?:sent|messages)", summary)
    events = int(counted.group(1)) if counted else 0
    return {
        "exit": done.returncode,
        "summary": summary,
        "stderr_tail": done.stderr[-300:] if done.returncode else "",
        "events": events,
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "events_per_s_wall": round(events / wall) if wall else 0,
        "events_per_cpu_s": round(events / cpu) if cpu else 0,
        "load_average": load,
    }


def run_partner_publish(
    bootstrap: str,
    codes: dict[str, str],
    workdir: Path,
    repeat: int = 7,
    log_cases: int = 80_000,
    sim_cases: int = 30_000,
    rounds: int = 1,
    only: str = "publish,import-log,simulate",
    wait_load: float | None = None,
) -> dict[str, Any]:
    """Every command with every code version, `rounds` times, interleaved (order rotating)."""
    workdir = workdir.resolve()  # the commands run in the code's folder
    codes = {label: str(Path(code).resolve()) for label, code in codes.items()}
    inputs = make_inputs(workdir, repeat, log_cases)
    mapping = ROOT / "examples" / "eventlog" / "mapping.yaml"
    simulate = ["simulate", "--cases", str(sim_cases), "--seed", "3", "--end", "1764000000"]
    commands = {
        "publish": ["publish", str(inputs["publish"]), "--organisation", "police"],
        "import-log": ["import-log", str(inputs["import-log"]), "--mapping", str(mapping)],
        "simulate": simulate,
        "simulate-to-file": [*simulate, "--output", str(workdir / "sim-out.jsonl")],
    }
    wanted = only.split(",")
    if "simulate" in wanted:
        wanted.append("simulate-to-file")  # the generation alone, for the publish share
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    pairs = [(c, label) for c in wanted for label in codes]
    for round_ in range(rounds):
        if wait_load is not None:
            while os.getloadavg()[0] > wait_load:
                time.sleep(5)
        shift = round_ % len(pairs)
        for command, label in pairs[shift:] + pairs[:shift]:
            figure = run(Path(codes[label]), commands[command], bootstrap)
            results.setdefault(command, {}).setdefault(label, []).append(figure)
            print(command, label, figure, file=sys.stderr, flush=True)
    return {
        "codes": {label: _describe_code(Path(code)) for label, code in codes.items()},
        "inputs": {k: str(v) for k, v in inputs.items()},
        "results": results,
    }


def _describe_code(code: Path) -> dict[str, str]:
    """Where a code version is, and its commit (and whether it had uncommitted changes)."""
    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=code, capture_output=True, text=True, check=False
        )
        return done.stdout.strip()

    dirty = git("status", "--porcelain", "--", "ketenmonitor", "schemas")
    return {"path": str(code), "commit": git("rev-parse", "HEAD"), "dirty": str(bool(dirty))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:19592")
    parser.add_argument("--code", action="append", default=[], help="LABEL=DIR (repeatable)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/ketenmonitor-bench-publish"))
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--log-cases", type=int, default=80_000)
    parser.add_argument("--sim-cases", type=int, default=30_000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--only", default="publish,import-log,simulate")
    parser.add_argument("--wait-load", type=float, default=None)
    args = parser.parse_args(argv)
    codes = dict(c.split("=", 1) for c in args.code) or {"this": str(ROOT)}
    document = run_partner_publish(
        args.bootstrap, codes, args.workdir, args.repeat, args.log_cases, args.sim_cases,
        args.rounds, args.only, args.wait_load,
    )
    print(
        json.dumps(
            {
                "command": "python -m bench.partner_publish " + " ".join(argv or sys.argv[1:]),
                "machine": machine_facts(),
                **document,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
