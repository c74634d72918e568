"""The peer of the replay benchmark: the monitor's work as a Python user would write it with
quixstreams. Runs in its own virtualenv (bench/peer.py makes it); imports nothing of the project.

    PEER_CONFIG=config.json .cache/bench/quixstreams-venv/bin/python bench/quix_peer.py

config.json: {"bootstrap", "group", "topics", "events", "state_dir", "enters", "exits"} where
enters/exits map a milestone to the stages it enters/leaves (from chain.yaml). The application
reads every partner topic from the beginning, re-keys the events by case (group_by: a repartition
topic), keeps per case the stages it entered and left in its RocksDB store (changelogged to Kafka),
and counts per stage the cases that entered and left it. After `events` events it stops (the
checkpoint is committed on the way out) and prints one JSON line: the counts and its CPU time.
"""

import json
import os
import time
from collections import Counter
from importlib.metadata import version

from quixstreams import Application


def main() -> None:
    with open(os.environ["PEER_CONFIG"]) as f:
        config = json.load(f)
    app = Application(
        broker_address=config["bootstrap"],
        consumer_group=config["group"],
        auto_offset_reset="earliest",
        state_dir=config["state_dir"],
    )
    enters, exits = config["enters"], config["exits"]
    inflow, outflow = Counter(), Counter()
    processed = 0

    def track_stages(event, state):
        nonlocal processed
        entered = state.get("entered", [])
        left = state.get("left", [])
        for stage in enters.get(event["milestone"], ()):
            if stage not in entered:
                entered.append(stage)
                inflow[stage] += 1
        for stage in exits.get(event["milestone"], ()):
            if stage not in left:
                left.append(stage)
                outflow[stage] += 1
        state.set("entered", entered)
        state.set("left", left)
        processed += 1
        if processed == config["events"]:
            app.stop()

    topics = [app.topic(name, value_deserializer="json") for name in config["topics"]]
    sdf = app.dataframe(topics[0])
    for topic in topics[1:]:
        sdf = sdf.concat(app.dataframe(topic))
    sdf = sdf.group_by("case_key")
    sdf.update(track_stages, stateful=True)

    started = time.process_time()
    app.run()
    cpu = time.process_time() - started
    print(
        json.dumps(
            {
                "processed": processed,
                "cpu_seconds": round(cpu, 3),
                "inflow": inflow,
                "outflow": outflow,
                "versions": {p: version(p) for p in ("quixstreams", "confluent-kafka")},
            }
        )
    )


if __name__ == "__main__":
    main()
