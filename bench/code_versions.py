"""The worker's per-event loop (bench/core_loop.py) at several commits, interleaved in one run.

    .venv/bin/python -m bench.code_versions --events 100000 --rounds 2 382eeefe HEAD

Why: the shared machine's speed changes from day to day (a VM's share of its host), so a figure
taken on another day says little about the code. Each commit is checked out once into a detached
worktree under .cache/bench/worktrees/, and each round runs every commit's own
`run_core_loop(chain, replay_log(chain, events).raw)` in a fresh process (PYTHONPATH = that
worktree, the interpreter of this checkout), one commit after the other, the order alternating
per round. Each version generates its own log from the same seed, so a version whose simulator
emits more events per case (loops, repeats) is compared per event. Figures: events per
CPU-second of the loop (process time), and its two parts, route (contract + pseudonym) and process
(the case step). Written to bench/results/<date>-<name>.json with the machine facts.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.machine import load_average, machine_facts

ROOT = Path(__file__).resolve().parents[1]
WORKTREES = ROOT / ".cache" / "bench" / "worktrees"
RESULTS = ROOT / "bench" / "results"

# Run inside each version's worktree (as the working directory): only names that every version
# since 2026-11-28 has.
CHILD = r"""
import importlib.util, json, os, sys
# This worktree's own streams/, schemas/ and dashboards/ as ketenmonitor's subpackages (the
# installed package maps them to the main checkout's folders).
import ketenmonitor
root = os.getcwd()
for sub in ("streams", "schemas", "dashboards"):
    init = os.path.join(root, sub, "__init__.py")
    if os.path.isfile(init):
        spec = importlib.util.spec_from_file_location(
            "ketenmonitor." + sub, init, submodule_search_locations=[os.path.join(root, sub)])
        module = importlib.util.module_from_spec(spec)
        sys.modules["ketenmonitor." + sub] = module
        spec.loader.exec_module(module)
from bench.core_loop import run_core_loop
from bench.workload import replay_log
from ketenmonitor.domain.chain import load_chain
chain = load_chain()
log = replay_log(chain, int(sys.argv[1]))
r = run_core_loop(chain, log.raw)
print(json.dumps({"events": r.events, "cpu_seconds": r.seconds,
                  "route_seconds": r.route_seconds, "process_seconds": r.process_seconds}))
"""


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def worktree(revision: str) -> tuple[str, Path]:
    """(full commit, a detached worktree of it), made once and reused."""
    commit = _git("rev-parse", "--verify", f"{revision}^{{commit}}")
    path = WORKTREES / commit[:12]
    if not (path / "bench").is_dir():
        WORKTREES.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "worktree", "prune"], cwd=ROOT, check=True)
        subprocess.run(
            ["git", "worktree", "add", "--detach", "--force", str(path), commit],
            cwd=ROOT, check=True, capture_output=True,
        )
    return commit, path


def run_once(path: Path, events: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(path)}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(events)], cwd=path, env=env, capture_output=True,
        text=True, check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the core loop at {path.name} failed:\n{done.stderr[-3000:]}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    figures["events_per_cpu_second"] = round(figures["events"] / figures["cpu_seconds"], 1)
    figures["load_average_after"] = load_average()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("revisions", nargs="+", help="git revisions to compare (two or more)")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--name", default="code-versions")
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    versions = [(rev, *worktree(rev)) for rev in args.revisions]
    started = datetime.now(UTC)
    runs: dict[str, list[dict[str, Any]]] = {rev: [] for rev, _, _ in versions}
    for round_no in range(args.rounds):
        order = versions if round_no % 2 == 0 else list(reversed(versions))
        for rev, _, path in order:
            figures = run_once(path, args.events)
            runs[rev].append({"round": round_no + 1, **figures})
            print(f"[code_versions] round {round_no + 1} {rev}: "
                  f"{figures['events_per_cpu_second']:,.0f} events per CPU-second", flush=True)
    out = {
        "started_at": started.isoformat(timespec="seconds"),
        "command": "python -m bench.code_versions " + " ".join(argv or sys.argv[1:]),
        "machine": machine_facts(),
        "versions": [
            {
                "revision": rev,
                "commit": commit,
                "runs": runs[rev],
                "median_events_per_cpu_second": statistics.median(
                    r["events_per_cpu_second"] for r in runs[rev]
                ),
            }
            for rev, commit, _ in versions
        ],
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    args.results_dir.mkdir(parents=True, exist_ok=True)
    path = args.results_dir / f"{started.strftime('%Y-%m-%d')}-{args.name}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"[code_versions] results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
