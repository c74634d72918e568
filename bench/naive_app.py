"""The baseline: the work of streams/worker.py, one event at a time (as the first version did).

    python -m bench.naive_app        # settings from KETENMONITOR_* like `ketenmonitor worker`

Same validation and pseudonymisation (Ingestor.route), same core (CaseProcessor), same /metrics
(ChainCollector), but every event goes through Faust's per-message path: `async for event in
stream.events()`, `table[key] = value` (one changelog record per event) and `await topic.send()`
per event. The benchmark runs it beside the batched worker to show what batching buys.
Its case topic is `<prefix>.naive-cases`, so it can read the same partner topics as the real worker;
the benchmark gives it its own app id (consumer group and changelog topics). Faust wants a data
directory even for memory:// tables: a temporary one, removed when the process exits.
"""

from __future__ import annotations

import atexit
import logging
import shutil
import tempfile
import time
from typing import Any

import faust
from ketenmonitor.streams.ingest import IngestStats
from ketenmonitor.streams.metrics import ChainCollector
from ketenmonitor.streams.processing import CaseProcessor, Ingestor, PartitionTotals, Rejected
from ketenmonitor.streams.totals import LocalTotals
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from ketenmonitor.domain.chain import Chain, load_chain
from ketenmonitor.infra.worker_process import WorkerProcess
from ketenmonitor.kafka_io import ensure_topics
from ketenmonitor.settings import Settings


def naive_cases_topic(settings: Settings) -> str:
    return f"{settings.topic_prefix}.naive-cases"


def create_naive_app(settings: Settings, chain: Chain, datadir: str) -> faust.App:
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="memory://",
        datadir=datadir,
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        producer_acks=-1,
        web_enabled=True,
        web_bind=settings.metrics_host,
        web_port=settings.metrics_port,
        web_in_thread=False,
    )
    topic_of = {settings.partner_topic(p): p for p in chain.partner_ids}
    partner_topics = app.topic(*topic_of, key_serializer="raw", value_serializer="raw")
    cases_topic = app.topic(
        naive_cases_topic(settings), partitions=settings.partitions, key_serializer="raw",
        value_serializer="raw", internal=True,
    )
    dead_letters = app.topic(
        settings.dead_letter_topic, key_serializer="raw", value_serializer="raw", partitions=1,
    )
    ingest_table = app.Table(
        "ingest-stats", partitions=settings.partitions, key_type=bytes, value_type=bytes
    )
    case_table = app.Table(
        "cases", partitions=settings.partitions, key_type=bytes, value_type=bytes
    )
    ingestor = Ingestor(chain, settings.pseudonym_secret(), settings.partitions)
    processor = CaseProcessor(chain)
    totals = PartitionTotals(chain)

    @app.agent(partner_topics, concurrency=1)
    async def ingest(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            message = event.message
            routed = ingestor.route(event.value or b"", topic_of[message.topic])
            reason = None
            if isinstance(routed, Rejected):
                reason = routed.reason
                await dead_letters.send(value=event.value)
            else:
                await cases_topic.send(
                    key=routed.pseudonym.encode(), value=routed.payload,
                    partition=routed.partition,
                )
            key = f"{message.topic}:{message.partition}".encode()
            raw = ingest_table.get(key)
            stats = IngestStats.decode(raw) if raw else IngestStats()
            stats.count(message.offset, message.timestamp, reason)
            ingest_table[key] = stats.encode()

    @app.agent(cases_topic, concurrency=1)
    async def cases(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            key = event.key
            step = processor.apply(key.decode(), event.value, case_table.get(key))
            totals.fold(event.message.partition, (step,))
            case_table[key] = step.stored

    # One baseline process owns every partition: its local totals are the chain's.
    def case_totals() -> list[Any]:
        assigned = app.assignor.assigned_actives()
        owned = {tp.partition for tp in assigned if tp.topic == cases_topic.get_topic_name()}
        return [t for p, t in totals.by_partition.items() if p in owned]

    def ingest_stats() -> list[tuple[str, IngestStats]]:
        stats = []
        for tp in app.assignor.assigned_actives():
            raw = ingest_table.get(f"{tp.topic}:{tp.partition}".encode())
            if tp.topic in topic_of and raw:
                stats.append((tp.topic, IngestStats.decode(raw)))
        return stats

    reference = lambda: settings.age_reference_timestamp(time.time())  # noqa: E731
    registry = CollectorRegistry()
    registry.register(
        ChainCollector(
            chain, LocalTotals(case_totals, ingest_stats, reference), topic_of,
            reference_time=reference,
        )
    )

    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        return web.bytes(generate_latest(registry), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    return app


class NaiveWorkerProcess(WorkerProcess):
    """`python -m bench.naive_app` as a child process, read like a real worker."""

    def start(self) -> NaiveWorkerProcess:
        import subprocess
        import sys

        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self._log = out if self.log_path else None
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.naive_app"], env=self.env, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
        return self


def main() -> None:
    settings = Settings()
    chain = load_chain(settings.chain_file)
    logging.basicConfig(level="WARNING")
    ensure_topics(
        settings.kafka_bootstrap,
        [settings.partner_topic(p) for p in chain.partner_ids] + [naive_cases_topic(settings)],
        settings.partitions,
    )
    ensure_topics(settings.kafka_bootstrap, [settings.dead_letter_topic], 1)
    datadir = tempfile.mkdtemp(prefix="ketenmonitor-naive-")
    atexit.register(shutil.rmtree, datadir, True)
    app = create_naive_app(settings, chain, datadir)
    faust.Worker(app, loglevel="warning", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
