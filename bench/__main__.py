"""`python -m bench run [--events N] [--only replay,latency,memory,recovery,profile]`."""

from __future__ import annotations

import argparse
import sys

from bench.runner import BENCHMARKS, DEFAULTS, EXTRA_BENCHMARKS, run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="run benchmarks against a broker this command starts")
    p.add_argument("--events", type=int, default=DEFAULTS["events"],
                   help="events in the replay log (default %(default)s)")
    p.add_argument("--only", default=",".join(BENCHMARKS),
                   help="comma-separated subset of " + ",".join(BENCHMARKS)
                   + " (default), or " + ",".join(EXTRA_BENCHMARKS))
    p.add_argument("--rounds", type=int, default=2,
                   help="exactly_once, one_hop, national replay: worker runs per mode, "
                   "interleaved (default 2); "
                   "partner_publish: rounds of every command and code version (default 2)")
    p.add_argument("--rate", type=float, default=DEFAULTS["rate"],
                   help="live-latency produce rate, events/s (default %(default)s)")
    p.add_argument("--latency-seconds", type=float, default=DEFAULTS["latency_seconds"])
    p.add_argument("--open-cases", default=DEFAULTS["open_cases"],
                   help="comma-separated open-case counts for memory (default %(default)s)")
    p.add_argument("--recovery-cases", type=int, default=DEFAULTS["recovery_cases"],
                   help="open cases restored from the changelog after a restart "
                   "(default %(default)s)")
    p.add_argument("--history-cases", type=int, default=DEFAULTS["history_cases"],
                   help="national: cases of history, the open ones included; the others "
                   "closed long ago, retired by the worker (default %(default)s)")
    p.add_argument("--open-cases-national", type=int, default=DEFAULTS["national_open_cases"],
                   help="national: open cases among them (default %(default)s)")
    p.add_argument("--national-replay-cases", type=int,
                   default=DEFAULTS["national_replay_cases"],
                   help="national: cases of the smaller log replayed with and without retention "
                   "and local state (0: skip; default %(default)s)")
    p.add_argument("--national-modes", default="in-memory,retention+state",
                   help="national: the replay's worker modes, interleaved, of in-memory, "
                   "retention+state, retention, state, untuned-gc, in-memory-again (a control) "
                   "(default %(default)s)")
    p.add_argument("--national-side-by-side", action="store_true",
                   help="national: start the replay's modes together each round and compare "
                   "them over the same minutes, instead of one after the other")
    p.add_argument("--profile-events", type=int, default=DEFAULTS["profile_events"])
    p.add_argument("--no-naive", action="store_true", help="skip the naive per-event baseline")
    p.add_argument("--no-ceiling", action="store_true",
                   help="skip the decode-only aiokafka and confluent-kafka loops "
                   "(bench/ceiling.py)")
    p.add_argument("--no-peer", action="store_true",
                   help="skip the quixstreams peer (bench/quix_peer.py)")
    p.add_argument("--naive-timeout", type=float, default=DEFAULTS["naive_timeout"],
                   help="seconds the naive baseline may run before it is stopped")
    p.add_argument("--publish-code", action="append", default=[], metavar="LABEL=DIR",
                   help="partner_publish: a code version to run (repeatable; default: this "
                   "checkout), e.g. before=/path/to/older/checkout")
    p.add_argument("--publish-commands", default="publish,import-log",
                   help="partner_publish: of publish,import-log,simulate (default %(default)s)")
    p.add_argument("--publish-log-cases", type=int, default=80_000,
                   help="partner_publish: cases in the import-log CSV (80,000: ~560k rows)")
    p.add_argument("--publish-workdir", default="/tmp/ketenmonitor-bench-publish",
                   help="partner_publish: where its input files are made once")
    p.add_argument("--kafka-port", type=int, default=DEFAULTS["kafka_port"])
    p.add_argument("--name", default=None, help="results file name (default: the benchmarks run)")
    p.add_argument("--results-dir", default=None, help="default bench/results")
    p.add_argument("--no-summary", action="store_true", help="do not rewrite bench/RESULTS.md")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run(args, ["python", "-m", "bench", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
