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

import weakref

import faust
from faust import streams as faust_streams
from faust.types import TP
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from ketenmonitor.domain.chain import Chain
from ketenmonitor.settings import Settings
from streams.batch_sender import BatchSender
from streams.health import CommitWatch, StallWatch
from streams.ingest import IngestCounts, IngestStats
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
        stream_buffer_maxsize=max(4096, 2 * settings.batch_size),
        producer_linger=0.01,
        broker_session_timeout=settings.session_timeout_seconds,
        broker_heartbeat_interval=settings.session_timeout_seconds / 10,
        broker_rebalance_timeout=settings.session_timeout_seconds * 2,
        stream_processing_timeout=settings.processing_timeout_seconds,
        **_broker_credentials(settings),
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
    # Declared so that faust creates it; records are produced through BatchSender.
    app.topic(
        settings.dead_letter_topic, key_serializer="raw", value_serializer="raw", internal=True,
        partitions=1,
    )
    ingest_table = app.Table(
        "ingest-stats", partitions=settings.partitions, key_type=bytes, value_type=bytes
    )
    case_table = app.Table(
        "cases", partitions=settings.partitions, key_type=bytes, value_type=bytes
    )
    ingest_changelog = ingest_table.changelog_topic.get_topic_name()
    case_changelog = case_table.changelog_topic.get_topic_name()
    ingestor = Ingestor(chain, settings.pseudonym_secret(), settings.partitions)
    processor = CaseProcessor(chain)
    sink = attach_store(app, settings, chain)  # case-fact store; None unless configured

    stalls = StallWatch(settings.processing_timeout_seconds)

    @app.timer(1.0)
    async def report_stalls() -> None:
        for agent in stalls.overdue():
            log.error(
                "agent %s has been working on one batch for %.0fs (timeout %.0fs)",
                agent, stalls.busy_seconds()[agent], stalls.timeout,
            )

    def changelog_persisted(table: Any) -> Any:
        # A persistent store (RocksDB) records how far the changelog is reflected in it, so that a
        # restart replays only the rest; faust does this in its own send path, which we bypass.
        def record(topic: str, partition: int, offset: int) -> None:
            table.data.set_persisted_offset(TP(topic, partition), offset)

        return record

    @app.agent(partner_topics, concurrency=1)
    async def ingest(stream: faust.StreamT[bytes]) -> None:
        # Per batch: forwards and dead letters in one produce call per topic-partition, and one
        # ingest-stats changelog record per source partition.
        sender = BatchSender(app)
        sender.on_delivered(ingest_changelog, changelog_persisted(ingest_table))
        counts = IngestCounts(ingest_table)
        async for events in stream.take_events(settings.batch_size, within=settings.batch_seconds):
            with stalls.busy("ingest"):
                for event in events:
                    _make_current(event)
                    m = event.message
                    raw = event.value or b""
                    routed = ingestor.route(raw, topic_of[m.topic])
                    if isinstance(routed, Rejected):
                        log.warning(
                            "rejected event topic=%s partition=%s offset=%s reason=%s",
                            m.topic, m.partition, m.offset, routed.reason,
                        )
                        headers = routed.dead_letter_headers(m.topic, m.partition, m.offset)
                        sender.add(settings.dead_letter_topic, 0, None, raw, headers)
                    else:
                        key = routed.pseudonym.encode()
                        sender.add(settings.cases_topic, routed.partition, key, routed.payload)
                    if isinstance(routed, Rejected):
                        counts.count(m.topic, m.partition, m.offset, m.timestamp, routed.reason)
                    else:
                        counts.count(
                            m.topic, m.partition, m.offset, m.timestamp, None, routed.occurred_at
                        )
                for partition, key, value in counts.changelog():
                    sender.add(ingest_changelog, partition, key, value)
                await sender.send()

    @app.agent(cases_topic, concurrency=1)
    async def cases(stream: faust.StreamT[bytes]) -> None:
        sender = BatchSender(app)
        sender.on_delivered(case_changelog, changelog_persisted(case_table))
        async for events in stream.take_events(settings.batch_size, within=settings.batch_seconds):
            with stalls.busy("cases"):
                changed: dict[bytes, tuple[int, bytes]] = {}
                for event in events:
                    _make_current(event)
                    key, partition = event.key, event.message.partition
                    raw_state, state = processor.process_with_state(
                        partition, key.decode(), event.value, case_table.data.get(key)
                    )
                    case_table.data[key] = raw_state
                    changed[key] = (partition, raw_state)
                    if sink is not None:
                        sink.add(key.decode(), state)
                # One changelog record per case per batch: the last state is what recovery needs.
                for key, (partition, raw_state) in changed.items():
                    sender.add(case_changelog, partition, key, raw_state)
                await sender.send()

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
        return OwnedState(
            processor.owned_totals(owned),
            ingest_stats,
            len(owned),
            lag_by_topic(),
            commits.last_commit_timestamp,
            stalls.busy_seconds(),
        )

    commits = CommitWatch()
    app.sensors.add(commits)

    def lag_by_topic() -> dict[str, int]:
        lag: dict[str, int] = {}
        consumer = app.consumer
        for tp in app.assignor.assigned_actives():
            if tp.topic not in topic_of and tp.topic != settings.cases_topic:
                continue
            highwater = consumer.highwater(tp)
            committed = consumer._committed_offset.get(tp)  # faust keeps no public accessor
            if highwater is not None:
                lag[tp.topic] = lag.get(tp.topic, 0) + max(0, highwater - (committed or 0))
        return lag

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


def _make_current(event: faust.EventT) -> None:
    """Make `event` faust's current event: persistent stores pick the partition of a table write
    from it (faust sets it only for the last event of a take_events batch)."""
    faust_streams._current_event.set(weakref.ref(event))


def _broker_credentials(settings: Settings) -> dict[str, Any]:
    """The workers' SASL login against a secure broker (docs/security.md); none for PLAINTEXT."""
    if not settings.kafka_sasl:
        return {}
    credentials = faust.SASLCredentials(
        username=settings.kafka_username,
        password=settings.kafka_password_value(),
        mechanism=settings.kafka_sasl_mechanism,
        ssl_context=settings.kafka_ssl_context(),  # SASL_SSL; None keeps SASL_PLAINTEXT
    )
    return {"broker_credentials": credentials}


def _owned_partitions(app: faust.App, topic: str) -> set[int]:
    return {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == topic}


def run_worker(app: faust.App, loglevel: str = "warning") -> None:
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    worker.execute_from_commandline()
