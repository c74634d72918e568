"""The `ketenmonitor` command.

    ketenmonitor worker                 # a stream worker (start more for more throughput)
    ketenmonitor demo                   # broker + worker + simulated partners + live summary
    ketenmonitor simulate --cases 1000 [--output events.jsonl]   # to Kafka unless --output
    ketenmonitor topics                 # create the partner, case and dead-letter topics
    ketenmonitor publish | import-log | report | stuck | replay | rules | acl | dashboards | chart

Settings come from the environment (KETENMONITOR_*, see ketenmonitor/settings.py).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ketenmonitor.domain.chain import ChainDefinitionError, load_chain
from ketenmonitor.settings import MissingSecretError, Settings


def cmd_topics(args: argparse.Namespace) -> int:
    from streams.topics import create_monitor_topics

    settings = Settings()
    create_monitor_topics(settings, load_chain(settings.chain_file))
    print("topics ready")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    import logging

    from streams.topics import TopicLayoutError
    from streams.worker import run_worker

    settings = Settings()
    chain = load_chain(settings.chain_file)
    logging.basicConfig(
        level=args.loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, logging.root.level))
    try:
        run_worker(settings, chain)
    except TopicLayoutError as exc:
        print(f"ketenmonitor worker: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from ketenmonitor.demo import run_demo

    return run_demo(cases=args.cases, rate=args.rate, seed=args.seed, duration=args.duration)


# Modules that add their own subcommands: each defines register(subparsers).
COMMAND_MODULES: tuple[str, ...] = (
    "ketenmonitor.simulate_command",
    "ketenmonitor.publish",
    "ketenmonitor.eventlog_import",
    "ketenmonitor.store.commands",
    "ketenmonitor.alerting.commands",
    "dashboards.publish",
    "ketenmonitor.access.commands",
    "ketenmonitor.chart",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ketenmonitor", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("worker", help="run a stream worker")
    p.add_argument("--loglevel", default="warning")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("topics", help="create the topics")
    p.set_defaults(func=cmd_topics)

    p = sub.add_parser("demo", help="live demo: broker, worker, simulated partners, summary")
    p.add_argument("--cases", type=int, default=20_000)
    p.add_argument("--rate", type=float, default=800.0, help="events per second")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.set_defaults(func=cmd_demo)

    for module in COMMAND_MODULES:
        importlib.import_module(module).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (ChainDefinitionError, MissingSecretError) as exc:
        print(f"ketenmonitor: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
