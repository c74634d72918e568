"""`ketenmonitor simulate`: simulated chain partners, to a JSON Lines file or to Kafka.

    ketenmonitor simulate --cases 1000 --output events.jsonl  # + events.truth.jsonl, .stats.json
    ketenmonitor simulate --national --days 365 --output year.jsonl  # a year of national volume
    ketenmonitor simulate --cases 5000 --speed 86400               # to Kafka, one day per second
    ketenmonitor simulate --live --days 1 --cases 200               # to Kafka, at wall-clock time
    ketenmonitor simulate --cases 1000 --duplicates 0.02 --late 0.01 --malformed 0.005 \\
        --silence courts:100:14 --output faulty.jsonl

Without --live the simulated period ends at --end (default: now), so no event time lies in the
future; messages go out in order of their publish time (event time plus the partner's publishing
delay and faults). As fast as possible by default; --speed K replays K simulated seconds per wall
second; --live simulates the coming --days and publishes each message when its time has come.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from tqdm import tqdm

from ketenmonitor.cli_common import fail
from ketenmonitor.delivery import Delivery, DeliveryPlanner, DeliveryStats, deliveries_in_order
from ketenmonitor.domain.chain import SECONDS_PER_DAY
from ketenmonitor.partitioning import partner_message_key
from ketenmonitor.publish import add_quiet, show_progress
from ketenmonitor.simulator import Faults, Silence, load_scenario, stream_cases, truth_record


class SimulateUsageError(ValueError):
    """Flags that contradict each other or name unknown things."""


def truth_path(output: Path) -> Path:
    """Where the ground truth of `output` goes: events.jsonl -> events.truth.jsonl."""
    return output.with_name(output.name.removesuffix(".jsonl") + ".truth.jsonl")


def stats_path(output: Path) -> Path:
    return output.with_name(output.name.removesuffix(".jsonl") + ".stats.json")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "simulate",
        help="simulate chain partners (file or Kafka), with delays and faults",
        description=__doc__.split("\n\n")[-1] if __doc__ else None,
    )
    volume = p.add_mutually_exclusive_group()
    volume.add_argument("--cases", type=int, default=None, help="number of cases (default 1000)")
    volume.add_argument(
        "--national",
        action="store_true",
        help="the scenario's national volume (cases_per_year) for the period, times --scale",
    )
    p.add_argument("--scale", type=float, default=1.0, help="multiplies the national volume")
    p.add_argument("--days", type=float, default=365.0, help="length of the simulated period")
    p.add_argument("--end", type=float, default=None, help="end of the period, POSIX seconds")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same events)")
    p.add_argument("--scenario", type=Path, default=None,
                   help="scenario YAML (default: the shipped ketenmonitor/simulation.yaml)")
    p.add_argument("--output", type=Path, default=None,
                   help="write JSON Lines to this file instead of publishing to Kafka")
    p.add_argument("--truth", type=Path, default=None, help="ground-truth file (Kafka runs)")
    p.add_argument("--bootstrap", default=None, metavar="HOST:PORT",
                   help="Kafka bootstrap servers when publishing "
                   "(default: $KETENMONITOR_KAFKA_BOOTSTRAP, else 127.0.0.1:9092)")
    pace = p.add_mutually_exclusive_group()
    pace.add_argument("--live", action="store_true", help="simulate the coming --days in real time")
    pace.add_argument("--speed", type=float, default=0.0, help="simulated seconds per wall second")
    pace.add_argument("--rate", type=float, default=0.0, help="messages per second")
    p.add_argument("--no-delays", action="store_true", help="publish at the event time")
    for flag, what in (
        ("duplicates", "share of events delivered twice"),
        ("out-of-order", "share of events delivered after the case's next event"),
        ("late", "share of events delivered days late"),
        ("malformed", "extra malformed messages per event"),
        ("corrections", "share of events first sent with a wrong time, then corrected"),
    ):
        p.add_argument(f"--{flag}", type=float, default=None, help=what)
    p.add_argument(
        "--silence",
        action="append",
        default=[],
        metavar="ORG:FROM_DAY:DAYS",
        help="a partner publishes nothing from day FROM_DAY of the period for DAYS days",
    )
    add_quiet(p)
    p.set_defaults(func=cmd_simulate, needs_kafka=lambda a: a.output is None)


def _faults(base: Faults, args: argparse.Namespace) -> Faults:
    changes: dict[str, Any] = {}
    for attr, field in (
        ("duplicates", "duplicate_rate"),
        ("out_of_order", "out_of_order_rate"),
        ("late", "late_rate"),
        ("malformed", "malformed_rate"),
        ("corrections", "correction_rate"),
    ):
        value = getattr(args, attr)
        if value is not None:
            if not 0 <= value <= 1:
                raise SimulateUsageError(f"--{attr.replace('_', '-')} must be between 0 and 1")
            changes[field] = value
    silences = list(base.silences)
    for spec in args.silence:
        try:
            org, from_day, days = spec.split(":")
            silences.append(Silence(organisation=org, from_day=float(from_day), days=float(days)))
        except ValueError as exc:
            raise SimulateUsageError(f"--silence {spec!r}: expected ORG:FROM_DAY:DAYS") from exc
    changes["silences"] = tuple(silences)
    return Faults.model_validate({**base.model_dump(), **changes})


def _period(args: argparse.Namespace, now: float) -> tuple[float, float]:
    if args.days <= 0:
        raise SimulateUsageError("--days must be positive")
    if args.live:
        if args.end is not None:
            raise SimulateUsageError("--live simulates from now on: leave out --end")
        return now, now + args.days * SECONDS_PER_DAY
    end = now if args.end is None else args.end
    if end > now:
        raise SimulateUsageError("--end lies in the future: event times must not (use --live)")
    return end - args.days * SECONDS_PER_DAY, end


def _check_writable(*paths: Path | None) -> None:
    # Before simulating anything: a mistyped folder is reported at once, not after the run.
    for path in paths:
        if path is not None and not path.resolve().parent.is_dir():
            raise SimulateUsageError(
                f"cannot write {path}: the folder {path.parent} does not exist (create it first)"
            )


def pacer(args: argparse.Namespace, start: float, now: float) -> Callable[[float], None]:
    """Returns wait(publish_at) that sleeps until a message is due."""
    if args.live:
        return lambda at: time.sleep(max(0.0, at - time.time()))
    if args.speed:
        wall0 = time.monotonic()
        return lambda at: time.sleep(max(0.0, wall0 + (at - start) / args.speed - time.monotonic()))
    if args.rate:
        interval = 1.0 / args.rate
        state = {"next": time.monotonic()}

        def wait(_: float) -> None:
            state["next"] += interval
            time.sleep(max(0.0, state["next"] - time.monotonic()))

        return wait
    return lambda at: None


def cmd_simulate(args: argparse.Namespace) -> int:
    from ketenmonitor.domain.chain import load_chain
    from ketenmonitor.gc_tuning import tune_garbage_collector
    from ketenmonitor.settings import Settings

    settings = Settings()
    tune_garbage_collector(settings.gc_young_threshold)
    chain = load_chain(settings.chain_file)
    scenario = load_scenario(args.scenario)
    scenario.check_against(chain)
    try:
        faults = _faults(scenario.faults, args)
        now = time.time()
        start, end = _period(args, now)
        _check_writable(args.output, args.truth)
    except SimulateUsageError as exc:
        return fail("simulate", exc)
    if args.national:
        count = round(scenario.cases_per_year * args.days / 365.0 * args.scale)
    else:
        count = 1000 if args.cases is None else args.cases
    delays = {} if args.no_delays else scenario.publish_delay
    planner = DeliveryPlanner(chain, delays, faults, start, end, seed=args.seed)
    truth_file = truth_path(args.output) if args.output else args.truth
    wait = pacer(args, start, now)

    truth = open(truth_file, "w", encoding="utf-8") if truth_file else None  # noqa: SIM115
    cases_seen = 0
    # Cases are generated in order of their start, as their messages fall due: the bar counts them.
    bar = tqdm(
        total=count,
        unit=" cases",
        desc="simulate",
        file=sys.stderr,
        disable=not show_progress(None, args.quiet),
    )

    def on_case(case: Any) -> None:
        nonlocal cases_seen
        cases_seen += 1
        if cases_seen % 1024 == 0:
            bar.update(1024)
        if truth is not None:
            truth.write(json.dumps(truth_record(case), separators=(",", ":")) + "\n")

    deliveries = deliveries_in_order(
        stream_cases(scenario, count, start, end, seed=args.seed), planner, start, end, on_case
    )
    try:
        if args.output:
            with open(args.output, "wb") as out:
                for d in deliveries:
                    wait(d.publish_at)
                    out.write(d.value + b"\n")
            stats_path(args.output).write_text(
                json.dumps(_stats(planner.stats, args, count, start, end), indent=2) + "\n"
            )
            where = str(args.output)
        else:
            _publish(settings, chain.partner_ids, deliveries, wait, pace=not _unpaced(args))
            where = f"Kafka at {settings.kafka_bootstrap}"
        bar.update(cases_seen % 1024)
    finally:
        bar.close()
        if truth is not None:
            truth.close()
    stats = planner.stats
    print(
        f"{stats.messages} messages ({stats.valid_events} valid events of {cases_seen} cases; "
        f"faults {dict(stats.faults)}, malformed {dict(stats.malformed)}) to {where}"
        + (f"; ground truth in {truth_file}" if truth_file else "")
    )
    return 0


def _unpaced(args: argparse.Namespace) -> bool:
    return not (args.live or args.speed or args.rate)


def _publish(
    settings: Any,
    partners: list[str],
    deliveries: Any,
    wait: Callable[[float], None],
    pace: bool = True,
) -> None:
    """Send every delivery to its partner's topic. Unpaced: whole record batches (BatchPublisher);
    paced (--live, --speed, --rate): each message is flushed when it is due, as a partner would."""
    from ketenmonitor.batch_publish import BatchPublisher
    from ketenmonitor.kafka_io import PartnerPublisher, ensure_topics
    from ketenmonitor.partitioning import kafka_partition

    ensure_topics(
        settings.kafka_bootstrap, [settings.partner_topic(p) for p in partners], settings.partitions
    )
    topics = {p: settings.partner_topic(p) for p in partners}
    by_case = settings.one_hop_partner_ids  # these partners key by case (docs/partners.md)
    if not pace:
        with BatchPublisher(settings.kafka_bootstrap) as batches:
            send = batches.send_raw
            counts = {t: batches.partition_count(t) for p, t in topics.items() if p in by_case}
            for d in deliveries:
                if d.organisation in by_case:
                    key = _case_key(d.value)
                    if key is not None:
                        topic = topics[d.organisation]
                        send(topic, d.value, key, kafka_partition(key, counts[topic]))
                        continue
                send(topics[d.organisation], d.value, d.key)
        return
    with PartnerPublisher(settings.kafka_bootstrap) as publisher:
        for d in deliveries:
            assert isinstance(d, Delivery)
            wait(d.publish_at)
            # kafka-python's default partitioner is Kafka's: a case key lands in its partition.
            key = _case_key(d.value) if d.organisation in by_case else d.key
            publisher.send_raw(topics[d.organisation], d.value, key=key)


def _case_key(value: bytes) -> bytes | None:
    """The case key of a simulated message as its partner's key; None if it has none."""
    try:
        event = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    return partner_message_key(event, keyed_by_case=True) if isinstance(event, dict) else None


def _stats(
    stats: DeliveryStats, args: argparse.Namespace, count: int, start: float, end: float
) -> dict[str, Any]:
    return {"seed": args.seed, "cases": count, "start": start, "end": end, **stats.as_dict()}
