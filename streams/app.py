"""The Faust application: two agents, two changelogged tables, one /metrics page.

    app = create_app(Settings(), load_chain())
    run_worker(app)            # blocks; `ketenmonitor worker` does this

ingest agent   partner topics (one per partner) -> validate, pseudonymise -> case topic (keyed and
               partitioned by pseudonym) or dead-letter topic (original bytes, reason in headers).
               Counts per source partition live in the `ingest-stats` table.
cases agent    case topic -> domain core -> `cases` table (pseudonym -> case state).

Both agents keep concurrency 1 (tables must see events in order). Delivery is at-least-once:
faust flushes the producer (changelogs, forwards) before it commits offsets; replays after a crash
are absorbed by the event-id check in the case state and the offset check in the ingest counts.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import faust
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from ketenmonitor.domain.chain import Chain
from ketenmonitor.settings import Settings
from streams.ingest import IngestStats
from streams.metrics import ChainCollector, OwnedState
from streams.processing import CaseProcessor, Ingestor, Rejected, case_states_by_partition
from streams.store_sink import attach_store

log = logging.getLogger(__name__)


def create_app(settings: Settings, chain: Chain) -> faust.App:
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        store=settings.store,
        datadir=str(settings.data_dir),
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        producer_acks=-1,
        web_enabled=True,
        web_bind=settings.metrics_host,
        web_host=settings.metrics_host,
        web_port=settings.metrics_port,
        web_in_thread=False,
        stream_buffer_maxsize=4096,
        stream_processing_timeout=settings.processing_timeout_seconds,
    )
    topic_of = {settings.partner_topic(p): p for p in chain.partner_ids}
    partner_topics = app.topic(
        *topic_of, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )
    cases_topic = app.topic(
        settings.cases_topic,
        partitions=settings.partitions,
        key_serializer="raw",
        value_serializer="raw",
        internal=True,
    )
    dead_letter_topic = app.topic(
        settings.dead_letter_topic, key_serializer="raw", value_serializer="raw", internal=True,
        partitions=1,
    )
    ingest_table = app.Table(
        "ingest-stats", partitions=settings.partitions, key_type=bytes, value_type=bytes
    )
    case_table = app.Table(
        "cases", partitions=settings.partitions, key_type=bytes, value_type=bytes
    )
    ingestor = Ingestor(chain, settings.pseudonym_secret(), settings.partitions)
    processor = CaseProcessor(chain)
    sink = attach_store(app, settings, chain)  # case-fact store; None unless configured

    @app.agent(partner_topics, concurrency=1)
    async def ingest(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            message = event.message
            organisation = topic_of[message.topic]
            routed = ingestor.route(event.value or b"", organisation)
            if isinstance(routed, Rejected):
                log.warning(
                    "rejected event topic=%s partition=%s offset=%s reason=%s",
                    message.topic, message.partition, message.offset, routed.reason,
                )
                await dead_letter_topic.send(
                    value=event.value or b"",
                    headers={
                        "reason": routed.reason.encode(),
                        "detail": routed.detail.encode(),
                        "source": f"{message.topic}/{message.partition}/{message.offset}".encode(),
                    },
                )
                reason: str | None = routed.reason
            else:
                await cases_topic.send(
                    key=routed.pseudonym.encode(), value=routed.payload, partition=routed.partition
                )
                reason = None
            key = f"{message.topic}:{message.partition}".encode()
            raw = ingest_table.get(key)
            stats = IngestStats.decode(raw) if raw else IngestStats()
            if stats.count(message.offset, message.timestamp, reason):
                ingest_table[key] = stats.encode()

    @app.agent(cases_topic, concurrency=1)
    async def cases(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            key = event.key
            raw_state, state = processor.process_with_state(
                event.message.partition, key.decode(), event.value, case_table.get(key)
            )
            case_table[key] = raw_state
            if sink is not None:
                sink.add(key.decode(), state)

    @case_table.on_recover
    async def rebuild_totals() -> None:
        owned = _owned_partitions(app, settings.cases_topic)
        started = time.monotonic()
        processor.rebuild(
            owned, case_states_by_partition(case_table.data.items(), settings.partitions)
        )
        log.info(
            "rebuilt case totals for partitions %s in %.2fs", sorted(owned),
            time.monotonic() - started,
        )

    def owned_state() -> OwnedState:
        owned = _owned_partitions(app, settings.cases_topic)
        ingest_stats: list[tuple[str, IngestStats]] = []
        assigned = app.assignor.assigned_actives()
        for tp in assigned:
            organisation = topic_of.get(tp.topic)
            if organisation is None:
                continue
            raw = ingest_table.data.get(f"{tp.topic}:{tp.partition}".encode())
            if raw:
                ingest_stats.append((organisation, IngestStats.decode(raw)))
        return OwnedState(processor.owned_totals(owned), ingest_stats, len(owned))

    registry = CollectorRegistry()
    registry.register(
        ChainCollector(chain, owned_state, lambda: settings.age_reference_timestamp(time.time()))
    )

    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        return web.bytes(generate_latest(registry), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"ok": True, "rebalancing": app.rebalancing})

    return app


def _owned_partitions(app: faust.App, topic: str) -> set[int]:
    return {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == topic}


def run_worker(app: faust.App, loglevel: str = "warning") -> None:
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    worker.execute_from_commandline()
