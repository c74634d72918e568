"""The ceiling of the replay benchmark: read the partner topics and JSON-decode every value, nothing
more, with aiokafka and with confluent-kafka (librdkafka). What Python can read from Kafka here.

    python -m bench.ceiling aiokafka --bootstrap 127.0.0.1:39092 --topics a,b --events 400180
    figure = run_ceiling("confluent", bootstrap, topics, events)     # the same, as a child process

Each loop consumes from the beginning with a fresh consumer group (no commits), decodes every value
with orjson (as the worker does) and stops when it has decoded `events` values. It prints one JSON
line: the loop's own wall and CPU seconds (time.process_time: every thread of the process, so
librdkafka's too), from the consumer's creation to the last value decoded. `run_ceiling` also
times the child from its start (interpreter and imports included), as the worker is timed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import time
import uuid
from typing import Any

import orjson

from bench.machine import load_average

LOOPS = ("aiokafka", "confluent")
WHAT = {
    "aiokafka": "aiokafka AIOKafkaConsumer.getmany (max 10,000 records), orjson.loads per value",
    "confluent": "confluent-kafka Consumer.consume (10,000 messages), orjson.loads per value",
}


def aiokafka_loop(bootstrap: str, topics: list[str], events: int, group: str) -> int:
    from aiokafka import AIOKafkaConsumer

    async def loop() -> int:
        consumer = AIOKafkaConsumer(
            *topics,
            bootstrap_servers=bootstrap,
            group_id=group,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            max_partition_fetch_bytes=4 * 1024 * 1024,
            fetch_max_bytes=16 * 1024 * 1024,
        )
        await consumer.start()
        decoded = 0
        try:
            while decoded < events:
                batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
                for records in batches.values():
                    for record in records:
                        orjson.loads(record.value)
                    decoded += len(records)
        finally:
            await consumer.stop()
        return decoded

    return asyncio.run(loop())


def confluent_loop(bootstrap: str, topics: list[str], events: int, group: str) -> int:
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe(topics)
    decoded = 0
    try:
        while decoded < events:
            for message in consumer.consume(num_messages=10_000, timeout=1.0):
                if message.error() is None:
                    orjson.loads(message.value())
                    decoded += 1
    finally:
        consumer.close()
    return decoded


def run_ceiling(
    loop: str, bootstrap: str, topics: list[str], events: int, timeout: float = 600
) -> dict[str, Any]:
    """One loop as a child process, timed from its start; its own figures added."""
    group = f"bench-ceiling-{loop}-{uuid.uuid4().hex[:6]}"
    command = [
        sys.executable,
        "-m",
        "bench.ceiling",
        loop,
        "--bootstrap",
        bootstrap,
        "--topics",
        ",".join(topics),
        "--events",
        str(events),
        "--group",
        group,
    ]
    load = load_average()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"ceiling loop {loop} failed: {done.stderr[-2000:]}")
    own = json.loads(done.stdout.strip().splitlines()[-1])
    cpu_total = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "what": WHAT[loop],
        "events": own["decoded"],
        "completed": own["decoded"] >= events,
        "wall_seconds_from_start": round(wall, 2),
        "cpu_seconds_total": round(cpu_total, 2),
        "loop_wall_seconds": own["wall_seconds"],
        "cpu_seconds_processing": own["cpu_seconds"],
        # As the worker's: events over wall time from process start, and over the CPU time of
        # the work (the worker's after it answers HTTP, here the loop's).
        "events_per_second": round(own["decoded"] / wall, 1),
        "events_per_cpu_second": round(own["decoded"] / max(own["cpu_seconds"], 1e-9), 1),
        "load_average_before": load,
        "load_average": load_average(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ceiling", description=__doc__)
    parser.add_argument("loop", choices=LOOPS)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topics", required=True, help="comma-separated")
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--group", default=None, help="default: a fresh one")
    args = parser.parse_args(argv)
    group = args.group or f"bench-ceiling-{uuid.uuid4().hex[:6]}"
    loop = aiokafka_loop if args.loop == "aiokafka" else confluent_loop
    wall, cpu = time.monotonic(), time.process_time()
    decoded = loop(args.bootstrap, args.topics.split(","), args.events, group)
    wall, cpu = time.monotonic() - wall, time.process_time() - cpu
    print(
        json.dumps(
            {"decoded": decoded, "wall_seconds": round(wall, 3), "cpu_seconds": round(cpu, 3)}
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
