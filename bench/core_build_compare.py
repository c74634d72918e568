"""bench/core_micro.py with the domain core interpreted and compiled (mypyc), interleaved.

    nice -n 19 .venv/bin/python -m bench.core_build_compare --events 10000 --repeat 2 --rounds 3 \
        --out bench/results/codec/<date>-core-micro-compiled-vs-interpreted.json

Needs the compiled core in the checkout (deploy/compile_core.py, KETENMONITOR_COMPILE_CORE=1 for
deploy/setup.sh). Every measurement is a child process running core_micro's `measure` on the same
replay log; the interpreted child loads the core modules from their Python source although the
compiled modules are there (a finder placed before Python's own), and each child reports the build
it ran (ketenmonitor/core_build.py), which must be the one asked for. The two builds alternate,
the order reversed every other round; the load average is recorded before and after each child.
Figures are microseconds of process CPU time per event, best of --repeat within a child, and the
result holds each round and the medians over rounds, with compiled/interpreted ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.machine import load_average, machine_facts
from ketenmonitor.core_build import COMPILED, CORE_MODULES, INTERPRETED

ROOT = Path(__file__).resolve().parents[1]
BUILDS = (INTERPRETED, COMPILED)

_CHILD = """
import importlib.util, json, sys
from pathlib import Path
if sys.argv[1] == "interpreted":
    class _FromSource:  # the core's Python source, not the compiled modules beside it
        def find_spec(self, name, path=None, target=None):
            if name in {modules!r}:
                return importlib.util.spec_from_file_location(
                    name, Path({root!r}, *name.split(".")).with_suffix(".py"))
            return None
    sys.meta_path.insert(0, _FromSource())
from bench.core_micro import measure
from bench.workload import replay_log
from ketenmonitor.core_build import core_build
from ketenmonitor.domain.chain import load_chain
chain = load_chain()
result = measure(chain, replay_log(chain, int(sys.argv[2])).raw, int(sys.argv[3]))
result["core"] = core_build()
print(json.dumps(result))
"""


def run_child(build: str, events: int, repeat: int) -> dict[str, Any]:
    code = _CHILD.format(modules=set(CORE_MODULES), root=str(ROOT))
    load_before = load_average()
    started = time.time()
    done = subprocess.run(
        [sys.executable, "-c", code, build, str(events), str(repeat)],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result["core"] != build:
        raise SystemExit(f"asked for the {build} core, the child ran {result['core']}")
    result.update(
        load_before=load_before, load_after=load_average(), wall_seconds=time.time() - started
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    facts = machine_facts()
    import mypy.version

    facts["packages"]["mypy"] = mypy.version.__version__
    rounds = []
    for i in range(args.rounds):
        order = BUILDS if i % 2 == 0 else BUILDS[::-1]
        runs = {}
        for build in order:
            runs[build] = run_child(build, args.events, args.repeat)
            r = runs[build]
            print(
                f"round {i + 1} {build:>11}: process {r['process']:6.2f} us/event, apply_event "
                f"{r['apply_event']:6.2f}, decode {r['decode']:5.2f}, load {r['load_before']} -> "
                f"{r['load_after']}", flush=True,
            )
        rounds.append({"order": list(order), **runs})
    measures = [m for m in rounds[0][INTERPRETED] if isinstance(rounds[0][INTERPRETED][m], float)
                and m not in ("wall_seconds", "state_bytes_per_case")]
    medians = {
        b: {m: round(statistics.median(r[b][m] for r in rounds), 2) for m in measures}
        for b in BUILDS
    }
    ratios = {m: round(medians[COMPILED][m] / medians[INTERPRETED][m], 3) for m in measures}
    result = {
        "benchmark": "core_build_compare",
        "command": " ".join(["python -m bench.core_build_compare", *sys.argv[1:]]),
        "events": rounds[0][INTERPRETED]["events"],
        "unit": "microseconds of process CPU time per event, best of --repeat in a child",
        "machine": facts,
        "load_average_at_end": load_average(),
        "rounds": rounds,
        "medians": medians,
        "compiled_over_interpreted": ratios,
    }
    print(json.dumps({"medians": medians, "compiled_over_interpreted": ratios}, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"written: {args.out}")


if __name__ == "__main__":
    main()
