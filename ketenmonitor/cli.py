"""The `ketenmonitor` command.

    ketenmonitor worker                 # a stream worker (start more for more throughput)
    ketenmonitor demo                   # broker + worker + simulated partners + live summary
    ketenmonitor simulate --cases 1000 --output events.jsonl   (or --kafka to publish)
    ketenmonitor topics                 # create the partner, case and dead-letter topics

Settings come from the environment (KETENMONITOR_*, see ketenmonitor/settings.py).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

from ketenmonitor.domain.chain import ChainDefinitionError, load_chain
from ketenmonitor.settings import MissingSecretError, Settings


def _topics(settings: Settings, chain_partners: list[str]) -> list[str]:
    return [settings.partner_topic(p) for p in chain_partners] + [
        settings.cases_topic,
    ]


def cmd_topics(args: argparse.Namespace) -> int:
    from ketenmonitor.kafka_io import ensure_topics

    settings = Settings()
    chain = load_chain(settings.chain_file)
    ensure_topics(settings.kafka_bootstrap, _topics(settings, chain.partner_ids), settings.partitions)
    ensure_topics(settings.kafka_bootstrap, [settings.dead_letter_topic], 1)
    print("topics ready")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    import logging

    from ketenmonitor.kafka_io import ensure_topics
    from streams.app import create_app, run_worker

    settings = Settings()
    chain = load_chain(settings.chain_file)
    logging.basicConfig(level=args.loglevel.upper())
    ensure_topics(settings.kafka_bootstrap, _topics(settings, chain.partner_ids), settings.partitions)
    ensure_topics(settings.kafka_bootstrap, [settings.dead_letter_topic], 1)
    app = create_app(settings, chain)
    run_worker(app, loglevel=args.loglevel)
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from ketenmonitor.simulator import contract_events, load_scenario, simulate_cases

    settings = Settings()
    chain = load_chain(settings.chain_file)
    scenario = load_scenario(args.scenario)
    scenario.check_against(chain)
    end = time.time() if args.end is None else args.end
    cases = simulate_cases(scenario, args.cases, end - args.days * 86_400, end, seed=args.seed)
    events = contract_events(cases, chain, seed=args.seed)
    if args.output:
        count = 0
        with open(args.output, "w", encoding="utf-8") as out:
            for event in events:
                out.write(json.dumps(event, separators=(",", ":")) + "\n")
                count += 1
        print(f"wrote {count} events of {len(cases)} cases to {args.output}")
        return 0
    from ketenmonitor.kafka_io import PartnerPublisher

    count = 0
    interval = 1.0 / args.rate if args.rate else 0.0
    next_send = time.monotonic()
    with PartnerPublisher(settings.kafka_bootstrap) as publisher:
        for event in events:
            if interval:
                next_send += interval
                delay = next_send - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            publisher.send(settings.partner_topic(event["organisation"]), event)
            count += 1
    print(f"published {count} events of {len(cases)} cases")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from ketenmonitor.demo import run_demo

    return run_demo(cases=args.cases, rate=args.rate, seed=args.seed)


# Modules that add their own subcommands: each defines register(subparsers).
COMMAND_MODULES: tuple[str, ...] = ()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ketenmonitor", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("worker", help="run a stream worker")
    p.add_argument("--loglevel", default="warning")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("topics", help="create the topics")
    p.set_defaults(func=cmd_topics)

    p = sub.add_parser("simulate", help="simulate partner events")
    p.add_argument("--cases", type=int, default=1000)
    p.add_argument("--days", type=float, default=365.0, help="length of the simulated period")
    p.add_argument("--end", type=float, default=None, help="end of the period (POSIX seconds)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scenario", type=Path, default=None)
    p.add_argument("--output", type=Path, default=None, help="write JSON Lines instead of publishing to Kafka")
    p.add_argument("--rate", type=float, default=0.0, help="events per second (0: fast as possible)")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("demo", help="live demo: broker, worker, simulated partners, summary")
    p.add_argument("--cases", type=int, default=20_000)
    p.add_argument("--rate", type=float, default=800.0, help="events per second")
    p.add_argument("--seed", type=int, default=1)
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
