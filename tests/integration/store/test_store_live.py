"""A live worker with KETENMONITOR_STORE_URL fills the store exactly as a replay does."""

from __future__ import annotations

import json

from store_helpers import dump, write_log

from ketenmonitor.cli import main
from ketenmonitor.infra.consumer_progress import wait_until_caught_up
from ketenmonitor.kafka_io import PartnerPublisher
from ketenmonitor.settings import Settings
from ketenmonitor.store import make_engine


def _rows(url: str) -> dict:
    engine = make_engine(url)
    try:
        return dump(engine)
    finally:
        engine.dispose()


def test_live_worker_fills_the_store_equal_to_a_replay_from_file_and_from_topics(
    store_url, chain, simulated_cases, monitor_env, start_worker, monkeypatch, tmp_path, capsys
):
    cases = simulated_cases[:800]
    log = write_log(cases, chain, tmp_path / "events.jsonl")
    settings = Settings(
        kafka_bootstrap=monitor_env["KETENMONITOR_KAFKA_BOOTSTRAP"],
        topic_prefix=monitor_env["KETENMONITOR_TOPIC_PREFIX"],
    )
    start_worker(extra_env={"KETENMONITOR_STORE_URL": store_url})
    with PartnerPublisher(settings.kafka_bootstrap) as publisher:
        for line in log.read_text(encoding="utf-8").splitlines():
            event = json.loads(line)
            publisher.send(settings.partner_topic(event["organisation"]), event)
    partner_topics = [settings.partner_topic(p) for p in chain.partner_ids]
    wait_until_caught_up(
        settings.kafka_bootstrap,
        monitor_env["KETENMONITOR_APP_ID"],
        [*partner_topics, settings.cases_topic],
        timeout=240,
    )
    # No waiting for a timer: the worker flushes the store before it commits an offset, so a
    # group that has committed everything has stored everything.
    live = _rows(store_url)
    assert len(live["cases"]) == sum(1 for c in cases if c.steps)

    for name, value in monitor_env.items():
        monkeypatch.setenv(name, value)
    from_file = f"sqlite:///{tmp_path / 'from-file.db'}"
    from_topics = f"sqlite:///{tmp_path / 'from-topics.db'}"
    assert main(["replay", "--from-file", str(log), "--no-progress", "--store-url", from_file]) == 0
    assert main(["replay", "--from-topics", "--no-progress", "--store-url", from_topics]) == 0
    summaries = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [s["accepted"] for s in summaries] == [sum(len(c.steps) for c in cases)] * 2

    assert _rows(from_file) == live
    assert _rows(from_topics) == live


def test_a_replay_known_at_a_moment_holds_only_what_was_published_by_then(
    chain, simulated_cases, monitor_env, monkeypatch, tmp_path, capsys
):
    import time
    from datetime import UTC, datetime

    from ketenmonitor.streams.topics import prepare_topics

    for name, value in monitor_env.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    prepare_topics(settings, chain)
    log = write_log(simulated_cases[:300], chain, tmp_path / "events.jsonl")
    lines = log.read_text(encoding="utf-8").splitlines()
    earlier, later = lines[: len(lines) // 2], lines[len(lines) // 2 :]
    with PartnerPublisher(settings.kafka_bootstrap) as publisher:
        for line in earlier:
            event = json.loads(line)
            publisher.send(settings.partner_topic(event["organisation"]), event)
        publisher.flush()
        known_at = time.time()
        time.sleep(1.5)  # Kafka timestamps are milliseconds: the later ones are all after it
        for line in later:
            event = json.loads(line)
            publisher.send(settings.partner_topic(event["organisation"]), event)
    first_half = tmp_path / "earlier.jsonl"
    first_half.write_text("\n".join(earlier) + "\n", encoding="utf-8")
    then = f"sqlite:///{tmp_path / 'known-then.db'}"
    expected = f"sqlite:///{tmp_path / 'earlier.db'}"
    everything = f"sqlite:///{tmp_path / 'now.db'}"
    moment = datetime.fromtimestamp(known_at, UTC).isoformat()
    assert main(["replay", "--from-topics", "--known-at", moment, "--no-progress",
                 "--store-url", then]) == 0
    assert main(["replay", "--from-file", str(first_half), "--no-progress",
                 "--store-url", expected]) == 0
    assert main(["replay", "--from-topics", "--no-progress", "--store-url", everything]) == 0
    summaries = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [s["accepted"] for s in summaries] == [len(earlier), len(earlier), len(lines)]
    assert _rows(then) == _rows(expected) != _rows(everything)
    assert main(["replay", "--from-file", str(log), "--known-at", moment,
                 "--store-url", then]) == 2  # a file has no publication times
