"""Runs the chosen benchmarks on one broker and writes the results file and summary.

    python -m bench run --events 20000 --only replay     (see bench/__main__.py for flags)
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.kafka_env import BENCH_DIR, bench_broker
from bench.machine import load_average, machine_facts
from ketenmonitor.domain.chain import load_chain

BENCH_ROOT = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_ROOT / "results"
BENCHMARKS = ("replay", "latency", "memory", "recovery", "profile")
# Run only when named in --only: the exactly-once cost (bench/exactly_once.py), one hop against
# two hops (bench/one_hop.py), partner-side `publish` and `import-log` (bench/partner_publish.py;
# --publish-code to compare code versions), national scale of issue #17 (bench/national.py).
EXTRA_BENCHMARKS = ("exactly_once", "one_hop", "partner_publish", "national")
DEFAULTS: dict[str, Any] = {
    "events": 200_000,
    "rate": 2000.0,
    "latency_seconds": 30.0,
    "open_cases": "100000",
    "recovery_cases": 100_000,
    "profile_events": 100_000,
    "naive_timeout": 300.0,
    "kafka_port": 39092,
    "history_cases": 10_000_000,
    "national_open_cases": 1_000_000,
    "national_replay_cases": 500_000,
}


class UnknownBenchmark(ValueError):
    pass


def run(args: argparse.Namespace, argv: list[str]) -> int:
    only = [b.strip() for b in args.only.split(",") if b.strip()]
    unknown = set(only) - set(BENCHMARKS) - set(EXTRA_BENCHMARKS)
    if unknown:
        raise UnknownBenchmark(
            f"unknown benchmarks {sorted(unknown)}; choose from {BENCHMARKS + EXTRA_BENCHMARKS}"
        )
    chain = load_chain()
    started = datetime.now(UTC)
    name = args.name or "-".join(only)
    results_dir = Path(args.results_dir) if args.results_dir else RESULTS_DIR
    results_dir.mkdir(parents=True, exist_ok=True)
    logs = BENCH_DIR / "logs" / started.strftime("%Y%m%dT%H%M%S")
    logs.mkdir(parents=True, exist_ok=True)
    document: dict[str, Any] = {
        "started_at": started.isoformat(timespec="seconds"),
        # The worker settings the run's environment sets (every worker it starts inherits them).
        "command": shlex.join([*(f"{k}={v}" for k, v in settings_in_environment().items()),
                               *argv]),
        "machine": machine_facts(),
        "results": {},
        "errors": {},
    }
    path = results_dir / f"{started.strftime('%Y-%m-%d')}-{name}.json"
    steps: dict[str, Callable[[Any], dict[str, Any]]] = _steps(args, chain, logs)
    with bench_broker(args.kafka_port) as broker:
        for bench in only:
            print(f"[bench] {bench} ... (load {load_average()})", flush=True)
            t0 = time.monotonic()
            try:
                document["results"][bench] = steps[bench](broker)
            except Exception as exc:  # one failing benchmark must not lose the others' figures
                document["errors"][bench] = "".join(traceback.format_exception(exc))[-3000:]
                print(document["errors"][bench], flush=True)
            print(f"[bench] {bench} done in {time.monotonic() - t0:.0f} s", flush=True)
            _write(path, document)
    document["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    document["machine"]["load_average_at_end"] = load_average()
    _write(path, document)
    print(f"[bench] results: {path}")
    if not args.no_summary:
        from bench.summary import write_summary

        summary = write_summary(results_dir)
        print(f"[bench] summary: {summary}")
    return 1 if document["errors"] or not checks_pass(document) else 0


def checks_pass(document: dict[str, Any]) -> bool:
    """Every correctness check in the document found the worker equal to the batch numbers."""
    return all(check["equal"] for check in iter_checks(document["results"]))


def settings_in_environment() -> dict[str, str]:
    """KETENMONITOR_* variables of this process's environment (the test suite's own
    KETENMONITOR_TEST_* and secrets left out)."""
    return {k: v for k, v in sorted(os.environ.items())
            if k.startswith("KETENMONITOR_") and not k.startswith("KETENMONITOR_TEST_") and not any(
                word in k for word in ("KEY", "PASSWORD", "SECRET", "TOKEN"))}


def iter_checks(node: Any) -> Any:
    if isinstance(node, dict):
        if "check" in node and isinstance(node["check"], dict):
            yield node["check"]
        for value in node.values():
            yield from iter_checks(value)
    elif isinstance(node, list):
        for value in node:
            yield from iter_checks(value)


def _write(path: Path, document: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(document, indent=2, sort_keys=False, default=str) + "\n")
    tmp.replace(path)


def _steps(args: argparse.Namespace, chain: Any, logs: Path) -> dict[str, Callable[[Any], Any]]:
    from bench import (
        exactly_once,
        latency,
        memory,
        national,
        one_hop,
        partner_publish,
        profile,
        recovery,
        replay,
    )

    return {
        "replay": lambda broker: replay.run_replay(
            broker, chain, args.events, logs, naive=not args.no_naive,
            naive_timeout=args.naive_timeout, ceiling=not args.no_ceiling, peer=not args.no_peer,
        ),
        "latency": lambda broker: latency.run_latency(
            broker, chain, args.rate, args.latency_seconds, logs
        ),
        "memory": lambda broker: memory.run_memory(
            broker, chain, [int(n) for n in str(args.open_cases).split(",")], logs
        ),
        "recovery": lambda broker: recovery.run_recovery(
            broker, chain, args.recovery_cases, logs
        ),
        "profile": lambda broker: profile.run_profile(broker, chain, args.profile_events, logs),
        "exactly_once": lambda broker: exactly_once.run_exactly_once(
            broker, chain, args.events, logs, rounds=args.rounds
        ),
        "one_hop": lambda broker: one_hop.run_one_hop(
            broker, chain, args.events, logs, rounds=args.rounds
        ),
        "national": lambda broker: national.run_national(
            broker, chain, args.history_cases, args.open_cases_national, logs,
            replay_cases=args.national_replay_cases, rounds=args.rounds,
            modes=tuple(args.national_modes.split(",")),
            side_by_side=args.national_side_by_side,
        ),
        "partner_publish": lambda broker: partner_publish.run_partner_publish(
            broker.bootstrap_servers,
            dict(c.split("=", 1) for c in args.publish_code) or {"this": str(BENCH_ROOT.parent)},
            Path(args.publish_workdir),
            log_cases=args.publish_log_cases,
            rounds=args.rounds,
            only=args.publish_commands,
        ),
    }
