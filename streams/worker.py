"""The stream worker: partner topics -> (case topic) -> case state, on aiokafka, batch by batch.

    asyncio.run(Worker(Settings(), load_chain()).run())     # `ketenmonitor worker` does this

One consumer in the group `app_id` reads the partner topics and the case topic; the range assignor
gives a worker the same partition numbers of every topic (they all have `partitions`), and
partition p of the changelogs holds the worker's durable state for partition p:

    ingest   partner message -> contract check, pseudonym -> case topic (keyed by pseudonym, in
             the case's partition by the placement rule, streams/placement.py) or dead-letter
             topic (original bytes, reason in headers); counts per partner partition in the
             `ingest-stats` table
    one hop  a message of a partner that keys by case (KETENMONITOR_ONE_HOP_PARTNERS, placement
             `case-key`) whose key is its event's case key and whose partition is the case's:
             applied in that partition directly, without the case topic
    cases    case event -> domain core -> `cases` table (pseudonym -> case state + withdrawn facts)

The parts, each in its own module and tested alone:
    OwnedTables      (streams/tables.py)    the owned partitions' tables; restore and release
    CommitPipeline   (streams/pipeline.py)  batches acknowledged, then committed, in batch order
    PartitionTotals  (streams/processing.py) totals per owned partition, as of acknowledged batches
    TotalsPublisher / TotalsReader (streams/totals_io.py) the totals topic; TotalsView what it holds
    MetricsServer    (streams/web.py)       /metrics and /healthz over a registry and a protocol
This module composes them: the consume loop and the rebalance listener.

Per batch (`getmany`): everything the batch produces (forwards, dead letters, one changelog record
per touched case and per partner partition) goes out in one produce call per topic-partition; the
batch's facts are folded into the partition totals once those records are acknowledged, and its
offsets committed after that (and after the case-fact store has the batch). Delivery is
at-least-once; replays are absorbed by the event-id check in the case state and the offset check
in the ingest counts. With `exactly_once` (KETENMONITOR_EXACTLY_ONCE) each batch is one Kafka
transaction instead: its records and its consumer offsets commit together or not at all, one batch
at a time, and the worker reads the topics it writes (case topic, changelogs, totals) with
isolation_level=read_committed (docs/operations.md, Delivery).

/metrics never reads the partitions this worker happens to own: owners publish their partitions'
totals to the compacted totals topic (at most every `totals_publish_seconds`), and every worker
reads all of it (streams/totals.py says why). Rebalances: `on_partitions_revoked` waits for every
batch in flight; Kafka calls every member's revoke before any member's assign.
`on_partitions_assigned` restores newly owned partitions from the changelogs and re-reads a kept
one only if its changelog grew behind this worker's back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import CommitFailedError, KafkaError, KafkaTimeoutError
from aiokafka.producer.transaction_manager import TransactionState
from ketenmonitor.streams.batch_sender import BatchSender
from ketenmonitor.streams.changelog import next_case_position, source_header
from ketenmonitor.streams.health import CommitWatch, Outage, StallWatch
from ketenmonitor.streams.metrics import ChainCollector, WorkerCollector, WorkerHealth
from ketenmonitor.streams.pipeline import CommitPipeline
from ketenmonitor.streams.placement import PlacementError, check_placement
from ketenmonitor.streams.processing import (
    CaseProcessor,
    CaseStep,
    Ingestor,
    PartitionTotals,
    Rejected,
)
from ketenmonitor.streams.retirement import (
    AGGREGATE_KEY,
    RETIRED_REASON,
    RetirementWriter,
    decode_totals_snapshot,
)
from ketenmonitor.streams.state_store import Checkpointer, open_checkpoints
from ketenmonitor.streams.store_sink import open_store_sink
from ketenmonitor.streams.tables import Changelogs, OwnedTables
from ketenmonitor.streams.topics import prepare_topics
from ketenmonitor.streams.totals import CASES_KEY, TotalsView, encode_case_totals, ingest_key
from ketenmonitor.streams.totals_io import TotalsPublisher, TotalsReader
from ketenmonitor.streams.web import CachedPart, MetricsServer
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import InfoMetricFamily

from ketenmonitor import __version__
from ketenmonitor import metric_names as names
from ketenmonitor.core_build import core_build
from ketenmonitor.domain.case import CaseEvent, closes_case
from ketenmonitor.domain.chain import Chain
from ketenmonitor.gc_tuning import tune_garbage_collector
from ketenmonitor.settings import Settings

log = logging.getLogger(__name__)

# A one-hop event: (pseudonym, the validated event, its partner topic, the partner message).
OneHop = tuple[bytes, CaseEvent, str, Any]

MAX_BATCHES_IN_FLIGHT = 3  # handed to the producer, offsets not yet committed
YIELD_EVERY = 5_000  # cases folded between yields to the event loop while rebuilding totals
RESTORE_FETCH_WAIT_MS = 10  # the restorer's fetch wait at a partition's end (see `run`)
PROBE_SECONDS = 5.0  # how often /healthz's broker check asks the broker
# The periodic publication spends at most about this share of the time encoding a partition's
# totals (`_totals_records`); revocations and shutdowns publish everything at once.
PUBLISH_COST_SHARE = 0.1
REPUBLISH_SECONDS = 60.0  # owned partitions are published at least this often (backlog ages move)

Offsets = dict[TopicPartition, int]


class Worker:
    def __init__(self, settings: Settings, chain: Chain) -> None:
        self.settings = settings
        self.chain = chain
        self.topic_of = {settings.partner_topic(p): p for p in chain.partner_ids}
        self.cases_topic = settings.cases_topic
        self.changelogs = Changelogs(
            settings.changelog_topic("cases"), settings.changelog_topic("ingest-stats")
        )
        self.totals_topic = settings.changelog_topic("totals")
        self.ingestor = Ingestor(
            chain, settings.pseudonym_secret(), settings.partitions, settings.case_placement
        )
        unknown = settings.one_hop_partner_ids - set(chain.partner_ids)
        if unknown:
            raise PlacementError(
                f"KETENMONITOR_ONE_HOP_PARTNERS names partners the chain does not have: "
                f"{', '.join(sorted(unknown))}; known: {', '.join(chain.partner_ids)}"
            )
        # Partner topics whose messages may be applied where they arrive (streams/placement.py).
        self.one_hop_topics = frozenset(
            settings.partner_topic(p) for p in settings.one_hop_partner_ids
        )
        self.placement_topic = settings.changelog_topic("placement")
        # Per owned case partition: the position every `cases` changelog record this worker
        # writes carries (CASE_POSITION_BASE + the owner's epoch, one more than the highest found
        # by its restore): a late write of an earlier owner loses against it at the next restore.
        self.case_position: dict[int, int] = {}
        self.processor = CaseProcessor(chain)
        checkpoints = open_checkpoints(settings)  # local state (KETENMONITOR_STATE_DIR) or None
        self.tables = OwnedTables(self.cases_topic, self.changelogs, chain, checkpoints)
        self.checkpointer = Checkpointer(
            self, checkpoints, settings.checkpoint_seconds, settings.checkpoint_catch_up_records
        )
        # Closed cases past the retention leave the state (streams/retirement.py).
        self.retirement = RetirementWriter(self, settings.closed_case_retention_days)
        self._late_in_batch: dict[int, int] = {}  # partition -> events counted for retired cases
        self.totals = PartitionTotals(chain)
        self.view = TotalsView()
        self.owned: set[TopicPartition] = set()
        self.exporting = False  # publishes totals: owned partitions restored, not being revoked
        self.committed: Offsets = {}
        # Where each changelog partition ended after this worker's last write or restore; only
        # compared for partitions kept across a rebalance (a restore sets it anew).
        self.changelog_end: dict[TopicPartition, int] = {}
        # Per owned case partition: where its changelog ends as far as acknowledged batches go,
        # set together with the totals they fold and the records noted for the next checkpoint
        # (`written` in _process): what a checkpoint takes without draining the batches in flight.
        self.acked_changelog_end: dict[int, int] = {}
        # Exactly-once: the offsets this worker committed in its transactions (what an offset
        # fetch must return before the partitions are handed over: _await_commits_visible).
        self.txn_committed: dict[TopicPartition, int] = {}
        # Per owned case partition: the changelog position its acknowledged totals reflect.
        self.position: dict[int, int] = {}
        self.acked_ingest: dict[TopicPartition, bytes] = {}  # partner partition -> acked counts
        self.dirty: set[TopicPartition] = set()  # owned partitions whose totals are unpublished
        self._catching_up = False  # the last batch fetched was full (Checkpointer.due)
        self._encode_after: dict[int, float] = {}  # case partition -> next paced encoding
        self.stalls = StallWatch(settings.processing_timeout_seconds)
        self.commits = CommitWatch()
        # Exactly-once: one transaction (one batch) at a time; a committed transaction ends with
        # a commit marker, one offset after the batch's last record in every partition it wrote.
        self.exactly_once = settings.exactly_once
        self._marker = 1 if self.exactly_once else 0
        self.pipeline: CommitPipeline[Offsets] = CommitPipeline(
            self._commit_transaction if self.exactly_once else self._commit,
            settings.processing_timeout_seconds,
            MAX_BATCHES_IN_FLIGHT,
            fold_after_commit=self.exactly_once,
        )
        self.lock = asyncio.Lock()  # one batch, restore, release or publication at a time
        self.ready = asyncio.Event()  # first assignment restored
        self._stop = asyncio.Event()
        self.sink = open_store_sink(settings, chain)
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        # Publishes totals; the batch producer unless that one is transactional (totals are a
        # view with positions, published outside the batches' transactions).
        self._totals_producer: AIOKafkaProducer | None = None
        self._restorer: AIOKafkaConsumer | None = None
        self._reader: TotalsReader | None = None
        self._to_restore: set[TopicPartition] | None = None  # a recovery not yet completed
        # Frozen (SIGSTOP, a VM pause) longer than this: the group may have moved the partitions
        # on; write and publish nothing until the next assignment says what this worker owns.
        self._freeze_limit = max(2.0, settings.session_timeout_seconds * 0.75)
        self._tick = time.monotonic()
        self._suspended = False
        self._assigned_generation: int | None = None  # group generation of the assignment
        # An assignment whose restore failed (broker away): retried from the consume loop.
        self._pending_assignment: set[TopicPartition] | None = None
        self._assigning = Outage("restoring assigned partitions")
        self.broker = Outage("reaching the broker")

    # -- lifecycle ------------------------------------------------------------------------------
    def chain_series(self) -> CachedPart:
        """The chain's series: a function of the totals view, whether this worker exports them,
        and the age reference (to the second: the oldest-case ages)."""
        registry = CollectorRegistry()
        registry.register(
            ChainCollector(
                self.chain,
                self.view,
                self.topic_of,
                ready=self._exports_chain_series,
                reference_time=self._age_reference,
            )
        )
        return CachedPart(
            registry,
            lambda: (self.view.version, self._exports_chain_series(), int(self._age_reference())),
        )

    def _age_reference(self) -> float:
        return self.settings.age_reference_timestamp(time.time())

    def registry(self) -> CollectorRegistry:
        """This worker's own series (collected on every read)."""
        registry = CollectorRegistry()
        registry.register(WorkerCollector(self.worker_health))
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)  # python_gc_collections_total: the threshold's effect
        registry.register(_BuildInfo())
        return registry

    async def run(self) -> None:
        settings = self.settings
        await asyncio.to_thread(prepare_topics, settings, self.chain)
        # The changelog's topic id (a local checkpoint's check) is asked for while the clients
        # start: it is needed at the first restore, after the group's first assignment.
        binding = asyncio.create_task(asyncio.to_thread(self.checkpointer.bind))
        security = settings.kafka_python_security()
        session_ms = int(settings.session_timeout_seconds * 1000)
        self._producer = self._new_producer(transactional=self.exactly_once)
        self._totals_producer = (
            self._new_producer(transactional=False) if self.exactly_once else self._producer
        )
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap,
            client_id=f"{settings.app_id}-worker",
            group_id=settings.app_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            partition_assignment_strategy=(RangePartitionAssignor,),
            session_timeout_ms=session_ms,
            heartbeat_interval_ms=max(1000, session_ms // 10),
            rebalance_timeout_ms=2 * session_ms,
            max_poll_interval_ms=max(300_000, 10 * session_ms),
            fetch_max_wait_ms=int(settings.batch_seconds * 1000),
            isolation_level=settings.isolation_level,
            **security,
        )
        # The restorer reads changelogs up to the end offsets it asked for, never waiting at an end:
        # a short fetch wait keeps its long-poll fetch of an empty partition from holding back the
        # offset requests queued behind it on the same connection (a restore of empty changelogs
        # took 0.5 s, aiokafka's default wait, in about half the starts).
        self._restorer = self._group_less_consumer("restore", RESTORE_FETCH_WAIT_MS)
        self._reader = TotalsReader(
            self._group_less_consumer("totals"), self.totals_topic, settings.partitions, self.view
        )
        web = MetricsServer(
            self.registry(), self, settings.metrics_host, settings.metrics_port,
            cached=self.chain_series(),
        )
        await web.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        await self._start_producer()
        if self._totals_producer is not self._producer:
            await self._totals_producer.start()
        await self._restorer.start()
        await check_placement(
            self._restorer, self._totals_producer, self.placement_topic, self.changelogs.cases,
            settings.case_placement, settings.partitions,
        )
        await self._reader.consumer.start()
        await self._consumer.start()
        await binding
        self._tick = time.monotonic()  # starting (topics, producer id) is not a frozen loop
        background = [
            asyncio.create_task(self._reader.run()),
            asyncio.create_task(self._publish_periodically()),
            asyncio.create_task(self._watch_the_clock()),
            asyncio.create_task(self._probe_the_broker()),
        ]
        topics = [*self.topic_of, self.cases_topic]
        self._consumer.subscribe(topics, listener=_Rebalance(self))
        log.info("worker subscribed to %s as group %s", topics, settings.app_id)
        try:
            await self._consume()
        finally:
            async with self.lock:
                await self.pipeline.drain()
                await self._publish()
                await self.checkpointer.now()
            for task in background:
                task.cancel()
            await self._consumer.stop()  # leaves the group: the others take over at once
            await self._reader.consumer.stop()
            await self._restorer.stop()
            if self.exactly_once:
                with contextlib.suppress(KafkaError, TimeoutError):
                    await self._settle_transaction()  # a failed batch's transaction: aborted
                await self._totals_producer.stop()
            await self._producer.stop()
            if self.sink is not None:
                self.sink.close()
            await web.stop()
            log.info("worker stopped")

    def _group_less_consumer(self, role: str, fetch_max_wait_ms: int = 500) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            client_id=f"{self.settings.app_id}-{role}",
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=8 * 1024 * 1024,
            fetch_max_wait_ms=fetch_max_wait_ms,
            isolation_level=self.settings.isolation_level,
            **self.settings.kafka_python_security(),
        )

    def _new_producer(self, transactional: bool) -> AIOKafkaProducer:
        settings = self.settings
        session_ms = int(settings.session_timeout_seconds * 1000)
        txn: dict[str, Any] = {}
        if transactional:
            # A transaction open longer than this is aborted by the broker, which also fences
            # its producer (epoch bump): no longer than a session timeout, so that a worker
            # frozen mid-batch, whose partitions the group moved on, cannot commit it on thawing.
            timeout = min(settings.processing_timeout_seconds, settings.session_timeout_seconds)
            txn = {
                "transactional_id": settings.transactional_id(),
                "transaction_timeout_ms": int(timeout * 1000),
            }
        return AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap,
            client_id=f"{settings.app_id}-worker",
            acks="all",
            linger_ms=5,
            max_batch_size=1024 * 1024,
            max_request_size=8 * 1024 * 1024,
            request_timeout_ms=max(120_000, 4 * session_ms),
            **txn,
            **settings.kafka_python_security(),
        )

    async def _start_producer(self) -> None:
        """Start the batch producer; a transactional one gets its producer id first, which ends
        (aborts) whatever transaction a previous process with the same transactional id left
        open and fences that process."""
        assert self._producer is not None
        await self._producer.start()
        if self.exactly_once:
            txn = self._producer._txn_manager  # aiokafka has no public call for this wait
            await asyncio.wait_for(
                txn.wait_for_pid(), max(60.0, 2 * self.settings.session_timeout_seconds)
            )
            log.info(
                "exactly-once: transactional id %s, producer id %s epoch %s",
                txn.transactional_id, txn.producer_id, txn.producer_epoch,
            )

    async def _settle_transaction(self) -> None:
        """Exactly-once, after a failed batch and before reading state back: the batch's
        transaction must be over (aborted, or committed after all) so that the committed offsets
        and the read_committed changelogs agree. A fenced producer (another process took this
        transactional id, or the broker timed the transaction out) is replaced: its successor's
        producer id request aborts the open transaction. Raises KafkaError to be called again."""
        producer = self._producer
        assert producer is not None
        txn = producer._txn_manager
        timeout = self.settings.processing_timeout_seconds
        try:
            if txn.state in (TransactionState.IN_TRANSACTION, TransactionState.ABORTABLE_ERROR):
                await asyncio.wait_for(producer.abort_transaction(), timeout)
            elif txn.state in (
                TransactionState.COMMITTING_TRANSACTION, TransactionState.ABORTING_TRANSACTION
            ):
                await asyncio.wait_for(asyncio.shield(txn.wait_for_transaction_end()), timeout)
        except TimeoutError:
            raise KafkaTimeoutError("the failed batch's transaction did not end in time") from None
        except KafkaError as exc:
            if not txn.is_fatal_error():
                raise
            log.warning("transaction failed for good (%r)", exc)
        if txn.is_fatal_error():
            log.error(
                "the transactional producer was fenced (%r): a process with the same "
                "transactional id (%s) started, or a transaction outlived its timeout; replacing "
                "the producer", txn._transaction_waiter.exception() if
                txn._transaction_waiter is not None and txn._transaction_waiter.done() else None,
                txn.transactional_id,
            )
            old = self._producer
            self._producer = self._new_producer(transactional=True)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(old.stop(), timeout)
            await self._start_producer()

    def stop(self) -> None:
        self._stop.set()

    async def _consume(self) -> None:
        assert self._consumer is not None
        max_records = self.settings.batch_size
        timeout_ms = int(self.settings.batch_seconds * 1000)
        outage = Outage("restore after a failed batch")
        fetching = Outage("consuming")
        while not self._stop.is_set():
            if self._pending_assignment is not None:
                await asyncio.sleep(self._assigning.backoff())
                await self.on_assigned(self._pending_assignment)
                continue
            try:
                records = await self._consumer.getmany(
                    timeout_ms=timeout_ms, max_records=max_records
                )
            except KafkaError as exc:  # e.g. the group coordinator's errors during an outage
                fetching.failed(exc)
                await asyncio.sleep(fetching.backoff())
                continue
            fetching.recovered()
            if not records and self.pipeline.failure is None:
                if self.retirement.retention is not None or self.checkpointer.store:
                    async with self.lock:  # an idle worker retires and checkpoints too
                        active = not self._was_frozen() and self.exporting
                        if active and await self.retirement.retire_due():
                            await self.checkpointer.due()
                continue
            async with self.lock:
                if self._was_frozen():
                    continue  # fetched records are read again after the next assignment
                if self.pipeline.failure is not None:
                    try:
                        await self._recover()  # the records fetched are read again after the seek
                    except KafkaError as exc:  # the broker is away: keep trying, log once
                        outage.failed(exc)
                        await asyncio.sleep(outage.backoff())
                    else:
                        outage.recovered()
                    continue
                owned = {tp: msgs for tp, msgs in records.items() if tp in self.owned and msgs}
                # A full batch: more input is waiting (a periodic checkpoint may wait, above).
                self._catching_up = sum(map(len, records.values())) >= max_records
                if owned:
                    await self._process(owned)

    async def _recover(self) -> None:
        """After a batch whose output was not written: nothing from it on is committed; start
        again from the committed offsets and the changelogs, as a restarted worker would. If the
        broker is away this raises KafkaError and is called again; it resumes where it stopped."""
        await self.pipeline.drain()
        assert self._consumer is not None
        if self.exactly_once:
            await self._settle_transaction()
        if self._to_restore is None:
            log.error(
                "batch failed (%r); restoring owned partitions and retrying", self.pipeline.failure
            )
            self._to_restore = set(self.owned)
            self._release(self._to_restore)
        owned = self._to_restore
        await self._restore(owned)
        self.owned = set(owned)
        await self._fetch_committed(owned)
        for tp in owned:
            if tp in self.committed:
                self._consumer.seek(tp, self.committed[tp])
            else:
                await self._consumer.seek_to_beginning(tp)
        self._to_restore = None
        self.pipeline.clear_failure()

    async def _probe_the_broker(self) -> None:
        """Asks the broker for the totals topic's end offsets every few seconds: an idle worker's
        consumers retry quietly and raise nothing, so without this a worker with nothing to do
        would look healthy through a broker outage."""
        assert self._reader is not None
        consumer, probe = self._reader.consumer, self._reader.tps[:1]
        while True:
            await asyncio.sleep(PROBE_SECONDS)
            try:
                await asyncio.wait_for(consumer.end_offsets(probe), PROBE_SECONDS * 2)
            except (KafkaError, TimeoutError) as exc:
                self.broker.failed(exc)
            else:
                self.broker.recovered()

    async def _watch_the_clock(self) -> None:
        while True:
            self._was_frozen()
            self._tick = time.monotonic()
            await asyncio.sleep(0.2)

    def _exports_chain_series(self) -> bool:
        """Read by the /metrics threads: the totals view is current. Not while the event loop
        stands still (frozen, or just resumed and not yet ticked) nor until the view has been read
        to the totals topic's end after that: a view as old as the pause, or one that catches up
        in a jump, would make every windowed rate over this worker's series wrong."""
        if self._reader is None or not self._reader.ready.is_set():
            return False
        return not self._stood_still()

    def _stood_still(self) -> bool:
        """The event loop has not ticked for longer than the freeze limit."""
        return time.monotonic() - self._tick > self._freeze_limit

    def _was_frozen(self) -> bool:
        """True once the event loop stood still past the freeze limit (until reassigned): a
        zombie must not write changelogs or publish totals for partitions now owned elsewhere."""
        if not self._stood_still():
            return self._suspended
        if self._reader is not None:
            self._reader.catch_up()  # no chain series until the view is current again
        if not self._suspended:
            log.warning(
                "the worker was frozen for %.1fs: writing and publishing nothing until the group "
                "assigns partitions again, and exporting no chain series until the totals view "
                "has caught up", time.monotonic() - self._tick,
            )
            self._suspended = True
            self.exporting = False
            self._request_rejoin()
        return self._suspended

    def _request_rejoin(self) -> None:
        """Ask the group for an assignment now. A loop stalled past the freeze limit on a loaded
        machine may still own its partitions: no rebalance would ever come, and a suspended
        worker would stay suspended (seen in the two-minute broker outage test on a machine at
        load 20). The rejoin ends the suspension either way: same partitions or new ones, each
        restored and re-read from the committed offsets (`_assign`)."""
        coordinator = self._group_coordinator()
        if coordinator is not None:
            coordinator.request_rejoin()

    # -- one batch ------------------------------------------------------------------------------
    async def _process(self, records: dict[TopicPartition, list[Any]]) -> None:
        assert self._producer is not None and self._consumer is not None
        if self.exactly_once:
            # One transaction at a time: the previous batch's is committed (or failed) first.
            await self.pipeline.drain()
            if self.pipeline.failure is not None:
                return  # read again after the recovery's seek
            try:
                await self._producer.begin_transaction()
            except Exception as exc:  # fenced or broken producer: the recovery replaces it
                self.pipeline.failure = exc
                return
        if not await self.retirement.retire_due():
            return  # failed: read again after the recovery's seek
        await self.checkpointer.due(self._catching_up)
        sender = BatchSender(self._producer)
        case_ends: dict[int, int] = {}

        def case_changelog_written(topic: str, partition: int, last_offset: int) -> None:
            self._changelog_written(topic, partition, last_offset)
            case_ends[partition] = max(case_ends.get(partition, 0), last_offset + 1)

        sender.on_delivered(self.changelogs.cases, case_changelog_written)
        sender.on_delivered(self.changelogs.ingest, self._changelog_written)
        ingest_counts: dict[TopicPartition, bytes] = {}
        steps: dict[int, list[CaseStep]] = {}
        store_states: dict[str, Any] = {}
        one_hop: dict[int, list[OneHop]] = {}  # partition -> (pseudonym, event, topic, message)
        changes: dict[int, dict[bytes, bytes]] = {}  # partition -> changelog records of the batch
        with self.stalls.busy("ingest"):
            for tp, messages in records.items():
                if tp.topic != self.cases_topic:
                    ingest_counts[tp] = self._ingest(tp, messages, sender, one_hop)
        with self.stalls.busy("cases"):
            case_messages = {
                tp.partition: messages
                for tp, messages in records.items()
                if tp.topic == self.cases_topic
            }
            here = {partition for partition, events in one_hop.items() if events}
            for partition in sorted(case_messages.keys() | here):
                steps[partition] = self._apply(
                    partition, case_messages.get(partition, ()), one_hop.get(partition, ()),
                    sender, store_states, changes,
                )
            try:
                futures = await sender.send()
            except KafkaError as exc:  # no metadata within the request timeout: broker away
                # The batch fails in its turn: batches before it commit, nothing from it on does,
                # and the worker restores and re-reads from the committed offsets.
                failed = asyncio.get_running_loop().create_future()
                failed.set_exception(exc)
                futures = [failed]
        late, self._late_in_batch = self._late_in_batch, {}
        offsets = {tp: messages[-1].offset + 1 for tp, messages in records.items()}
        if self.exactly_once:
            # Past the commit markers the fetch skipped after the batch's last record: committing
            # the last record + 1 would leave every case partition one (a marker) behind its end.
            for tp in offsets:
                try:
                    offsets[tp] = max(offsets[tp], await self._consumer.position(tp))
                except Exception:  # no longer assigned: the record's offset + 1
                    continue

        def written() -> None:  # in batch order, once every record of the batch is acknowledged
            for partition, batch_steps in steps.items():
                if partition in self.position:  # still owned
                    self.totals.fold(partition, batch_steps)
                    self.totals.of(partition).retired_case_events += late.get(partition, 0)
                    end = case_ends.get(partition, 0)
                    self.position[partition] = max(self.position[partition], end)
                    if partition in case_ends:
                        acked = self.acked_changelog_end
                        acked[partition] = max(acked.get(partition, 0), end + self._marker)
                    records = changes.get(partition)
                    if records:  # acknowledged: in the partition's next checkpoint
                        self.tables.note_written(partition, records)
                    self.dirty.add(TopicPartition(self.cases_topic, partition))
            for tp, counts in ingest_counts.items():
                if tp in self.acked_ingest:
                    self.acked_ingest[tp] = counts
                    self.dirty.add(tp)

        store = self._store_step(store_states) if self.sink is not None and store_states else None
        await self.pipeline.submit(futures, offsets, written, store)

    def _store_step(self, states: dict[str, Any]) -> Any:
        sink = self.sink
        assert sink is not None

        async def write() -> None:
            with self.stalls.busy("store"):
                await asyncio.to_thread(sink.write_states, states)

        return write

    async def _commit(self, offsets: Offsets) -> None:
        assert self._consumer is not None
        try:
            with self.stalls.busy("commit"):
                await self._consumer.commit(offsets)
        except CommitFailedError as exc:
            # The group moved on; the new owner replays from the last commit (idempotent).
            log.warning("commit failed after a rebalance: %s", exc)
            return
        self.committed.update(offsets)
        self.commits.committed()

    def _refuse_commit_if_frozen(self) -> None:
        """Exactly-once: a worker frozen mid-batch past the freeze limit (shorter than a session
        timeout) may have lost its partitions; its open transaction, thawed, must not commit.
        aiokafka's offset commit in a transaction carries no group generation (KIP-447), so the
        broker would accept it, and the batch's forwards would land a second time beside the new
        owner's (seen: 960 duplicate case events in a frozen-worker test). The failed batch's
        transaction is aborted and the worker restores after its next assignment."""
        if self._was_frozen():
            raise KafkaTimeoutError(
                "the worker was frozen during the batch: its transaction is not committed"
            )
        # Not frozen but thrown out all the same (heartbeats late on a loaded machine: the
        # coordinator answered "member id not recognized" and aiokafka reset the generation).
        # Seen in a local suite run at load 27: the stable worker, evicted, went on with a batch
        # of partitions the group had given to the other worker, which had restored them.
        generation = self._group_generation()
        if generation is not None and generation != self._assigned_generation:
            raise KafkaTimeoutError(
                f"the group generation changed during the batch ({self._assigned_generation} -> "
                f"{generation}): its transaction is not committed"
            )

    def _group_coordinator(self) -> Any:
        """aiokafka's group coordinator of the consumer (no public call for rejoining or for the
        generation); None before the consumer starts."""
        return getattr(self._consumer, "_coordinator", None)

    def _group_generation(self) -> int | None:
        """The consumer group generation aiokafka holds (-1 once the coordinator evicted this
        member); None without a group coordinator. aiokafka has no public call for it."""
        generation = getattr(self._group_coordinator(), "generation", None)
        return generation if isinstance(generation, int) else None

    async def _commit_transaction(self, offsets: Offsets) -> None:
        """Exactly-once: the batch's offsets into its transaction, then the commit."""
        assert self._producer is not None
        with self.stalls.busy("commit"):
            self._refuse_commit_if_frozen()
            await self._producer.send_offsets_to_transaction(offsets, self.settings.app_id)
            self._refuse_commit_if_frozen()
            await self._producer.commit_transaction()
        self.committed.update(offsets)
        self.txn_committed.update(offsets)
        self.commits.committed()

    def _ingest(
        self,
        tp: TopicPartition,
        messages: list[Any],
        sender: BatchSender,
        one_hop: dict[int, list[OneHop]],
    ) -> bytes:
        organisation = self.topic_of[tp.topic]
        stats = self.tables.ingest_stats(tp)
        route = self.ingestor.route
        cases_topic, dead_letter_topic = self.cases_topic, self.settings.dead_letter_topic
        now = time.time()  # one clock reading per partition batch for the clock-skew check
        partition = tp.partition
        # One hop only for a partner keying by case, into a case partition this worker holds
        # restored (the range assignor gives it the same partition numbers of every topic).
        here = (
            one_hop.setdefault(partition, [])
            if tp.topic in self.one_hop_topics and partition in self.tables.cases
            else None
        )
        for m in messages:
            raw = m.value or b""
            routed = route(raw, organisation, now, m.key)
            timestamp = m.timestamp / 1000.0
            if isinstance(routed, Rejected):
                log.warning(
                    "rejected event topic=%s partition=%s offset=%s reason=%s",
                    tp.topic,
                    tp.partition,
                    m.offset,
                    routed.reason,
                )
                headers = routed.dead_letter_headers(tp.topic, tp.partition, m.offset)
                sender.add(dead_letter_topic, 0, None, raw, headers)
                stats.count(m.offset, timestamp, routed.reason)
            else:
                # Applied or forwarded even when already counted (a replay): the case state drops
                # duplicates. One hop only where the key is the case key and the partition the
                # case's; a message keyed otherwise, or into another partition, is re-keyed.
                if here is not None and routed.keyed_by_case and routed.partition == partition:
                    here.append((routed.pseudonym.encode(), routed.event, tp.topic, m))
                else:
                    sender.add(
                        cases_topic, routed.partition, routed.pseudonym.encode(), routed.payload
                    )
                stats.count(m.offset, timestamp, None, routed.occurred_at)
        counts = stats.encode()
        sender.add(
            self.changelogs.ingest, tp.partition, tp.topic.encode(), counts,
            source_header(messages[-1].offset + 1),
        )
        return counts

    def _apply(
        self,
        partition: int,
        messages: Iterable[Any],
        one_hop: Iterable[OneHop],
        sender: BatchSender,
        store: dict[str, Any],
        changes: dict[int, dict[bytes, bytes]],
    ) -> list[CaseStep]:
        """Apply the case-topic records, then the one-hop events, of one case partition; the
        changelog records it sends go into `changes` too (noted once acknowledged)."""
        table = self.tables.cases[partition]
        apply = self.processor.apply
        keep_states = self.sink is not None
        changed: dict[bytes, bytes] = {}
        steps = []
        retired = self.tables.retired.get(partition)
        retiring = retired is not None and self.retirement.retention is not None
        now = time.monotonic()  # when the cases this batch closes were noted
        late = 0
        cases_topic = self.cases_topic
        for m in messages:
            key = m.key
            stored = table.get(key)
            if stored is None and retired is not None and key and retired.is_retired(key):
                late += retired.count_late(cases_topic, m.offset + 1)
                self._dead_letter_retired(TopicPartition(cases_topic, partition), m, key, sender)
                continue
            try:
                pseudonym = key.decode()
                step = apply(pseudonym, m.value, stored)
            except (ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:
                # Only workers write the case topic (ACLs); without ACLs anyone could. A record
                # that is not a case event is kept on the dead-letter topic, never fatal.
                tp = TopicPartition(self.cases_topic, partition)
                self._dead_letter_case_record(tp, m, exc, sender)
                continue
            table[key] = changed[key] = step.stored
            steps.append(step)
            if retiring and closes_case(step.applied.added):
                retired.note_closed(key, step.stored, now)  # type: ignore[union-attr]
            if keep_states:
                store[pseudonym] = step.state
        apply_event = self.processor.apply_event
        for key, event, topic, m in one_hop:  # routed by this worker's Ingestor: valid events
            stored = table.get(key)
            if stored is None and retired is not None and retired.is_retired(key):
                late += retired.count_late(topic, m.offset + 1)
                self._dead_letter_retired(TopicPartition(topic, partition), m, key, sender)
                continue
            step = apply_event(event, stored)
            table[key] = changed[key] = step.stored
            steps.append(step)
            if retiring and closes_case(step.applied.added):
                retired.note_closed(key, step.stored, now)  # type: ignore[union-attr]
            if keep_states:
                store[event.case_key] = step.state  # the pseudonym
        # One changelog record per case per batch: the last state is what a restore needs.
        header = source_header(self.case_position[partition])
        for key, stored in changed.items():
            sender.add(self.changelogs.cases, partition, key, stored, header)
        changes[partition] = changed
        if late:
            assert retired is not None
            self._late_in_batch[partition] = late
            aggregate = retired.aggregate_value()
            sender.add(self.changelogs.cases, partition, AGGREGATE_KEY, aggregate, header)
            changed[AGGREGATE_KEY] = aggregate  # sent after the cases' records: noted after them
        return steps

    def _dead_letter_retired(
        self, tp: TopicPartition, message: Any, pseudonym: bytes, sender: BatchSender
    ) -> None:
        """An event for a retired case: kept on the dead-letter topic, not applied; keyed by the
        case's pseudonym whichever topic it came from."""
        log.warning(
            "event for a retired case topic=%s partition=%s offset=%s: dead-lettered",
            tp.topic, tp.partition, message.offset,
        )
        headers = Rejected(
            RETIRED_REASON, "the case was closed and retired; its state is no longer held"
        ).dead_letter_headers(tp.topic, tp.partition, message.offset)
        sender.add(self.settings.dead_letter_topic, 0, pseudonym, message.value or b"", headers)

    def _dead_letter_case_record(
        self, tp: TopicPartition, message: Any, exc: Exception, sender: BatchSender
    ) -> None:
        log.error(
            "invalid case record topic=%s partition=%s offset=%s: %s",
            tp.topic, tp.partition, message.offset, type(exc).__name__,
        )
        headers = Rejected("invalid_case_record", type(exc).__name__).dead_letter_headers(
            tp.topic, tp.partition, message.offset
        )
        sender.add(self.settings.dead_letter_topic, 0, message.key, message.value or b"", headers)

    def _changelog_written(self, topic: str, partition: int, last_offset: int) -> None:
        tp = TopicPartition(topic, partition)
        end = last_offset + 1 + self._marker  # a read_committed end is past the commit marker
        self.changelog_end[tp] = max(self.changelog_end.get(tp, 0), end)

    # -- publishing totals ----------------------------------------------------------------------
    async def _publish_periodically(self) -> None:
        interval = self.settings.totals_publish_seconds
        last_full = time.monotonic()
        outage = Outage("publishing totals")
        while True:
            await asyncio.sleep(interval)
            if time.monotonic() - last_full > REPUBLISH_SECONDS:
                self.dirty |= self.owned
                last_full = time.monotonic()
            records: list[tuple[int, bytes, bytes]] = []
            try:
                async with self.lock:
                    records = self._totals_records(paced=True)
                await self._send_totals(records)
            except KafkaError as exc:
                outage.failed(exc)
                self.dirty |= self.owned  # published again once the broker answers
            else:
                outage.recovered()

    async def _publish(self) -> None:
        await self._send_totals(self._totals_records())

    def _totals_records(self, paced: bool = False) -> list[tuple[int, bytes, bytes]]:
        """The totals of the dirty owned partitions, encoded now (under the worker's lock).

        `paced` (the periodic publication): a case partition whose last encoding took c seconds
        is encoded again no sooner than c * (owned case partitions) / PUBLISH_COST_SHARE seconds
        after it began, and stays dirty until then: all of them together take at most about that
        share of the time. Encoding reads the backlog readings kept since the last one, but once
        an hour (domain/totals.py `BacklogReadings`) every open visit's entry hour, which with a
        million open cases takes a good part of a second per partition; unpaced, a worker under
        load spent 42% of its CPU on it."""
        if not self.exporting or self._was_frozen():
            return []
        reference = self.settings.age_reference_timestamp(time.time())
        records = []
        waiting = set()
        shares = max(1, sum(1 for tp in self.owned if tp.topic == self.cases_topic))
        for tp in sorted(self.dirty & self.owned):
            if tp.topic == self.cases_topic:
                partition = tp.partition
                started = time.monotonic()
                if paced and started < self._encode_after.get(partition, 0.0):
                    waiting.add(tp)
                    continue
                value = encode_case_totals(
                    self.totals.of(partition), self.position[partition], reference
                )
                cost = time.monotonic() - started
                self._encode_after[partition] = started + cost * shares / PUBLISH_COST_SHARE
                records.append((partition, CASES_KEY, value))
            else:
                records.append((tp.partition, ingest_key(tp.topic), self.acked_ingest[tp]))
        self.dirty.clear()
        self.dirty |= waiting
        return records

    async def _send_totals(self, records: list[tuple[int, bytes, bytes]]) -> None:
        if records:
            assert self._totals_producer is not None
            await TotalsPublisher(self._totals_producer, self.totals_topic).publish_many(records)

    # -- rebalances -----------------------------------------------------------------------------
    async def on_revoked(self) -> None:
        # The lock waits for the batch in progress, the drain for every batch in flight: records
        # acknowledged, offsets committed. What is released is decided at the assignment.
        async with self.lock:
            await self.pipeline.drain()
            if self.exactly_once and self.pipeline.failure is not None:
                try:  # a failed batch's transaction must not commit after the next owner reads
                    await self._settle_transaction()
                except KafkaError as exc:
                    log.warning("failed transaction not ended before the revocation: %r", exc)
            records = self._totals_records()
            self.exporting = False
            if self.exactly_once and self.pipeline.failure is None:
                await self._await_commits_visible()
            await self.checkpointer.now()  # a partition that comes back reads only the tail
        try:
            await self._send_totals(records)  # the last totals this worker holds, for the next one
        except KafkaError as exc:  # the next owner publishes them after its restore
            log.warning("last totals before the revocation not published: %r", exc)
        log.info("partitions revoked; batches in flight written and committed")

    async def _await_commits_visible(self) -> None:
        """Exactly-once, before giving partitions up: wait until the last committed transaction
        is readable as committed, its changelog records below the read_committed end and its
        offsets returned by an offset fetch. The commit call returns once the transaction
        coordinator decided; the markers that make its records and offsets readable are written
        after that. A next owner that restored before them read neither the records nor the
        offsets and did the batch again, and when the markers landed the case topic held its
        forwards twice (277 duplicate case events in a frozen-worker run, numbers exact). aiokafka
        cannot ask the next owner's offset fetch to wait for them (KIP-447's require_stable)."""
        assert self._consumer is not None and self._restorer is not None
        deadline = time.monotonic() + self.settings.session_timeout_seconds
        changelog_ends = {
            tp: end for tp, end in self.changelog_end.items()
            if any(self.changelogs.of(owned, self.cases_topic) == tp for owned in self.owned)
        }
        offsets = {tp: offset for tp, offset in self.txn_committed.items() if tp in self.owned}
        while True:
            try:
                ends = await self._restorer.end_offsets(list(changelog_ends))
                pending = [tp for tp, end in changelog_ends.items() if ends.get(tp, 0) < end]
                for tp, offset in offsets.items():
                    if await self._consumer.committed(tp) != offset:
                        pending.append(tp)
            except KafkaError as exc:
                log.warning("could not check that the last transaction is readable: %r", exc)
                return
            if not pending:
                return
            if time.monotonic() > deadline:
                log.warning(
                    "the last transaction is not readable as committed after %.0fs (%s); "
                    "handing the partitions over anyway",
                    self.settings.session_timeout_seconds, sorted(map(str, pending))[:3],
                )
                return
            await asyncio.sleep(0.05)

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        """Take the assignment; if the broker goes away during the restore, the consume loop
        retries it with backoff (aiokafka would only log a listener's error and go on fetching
        partitions this worker never restored)."""
        try:
            await self._assign(assigned)
        except KafkaError as exc:
            self._assigning.failed(exc)
            self._pending_assignment = set(assigned)
            self.exporting = False
        else:
            self._assigning.recovered()
            self._pending_assignment = None

    async def _assign(self, assigned: set[TopicPartition]) -> None:
        async with self.lock:
            await self.pipeline.drain()
            # After a failed attempt, records of the assigned partitions were fetched and
            # dropped: restore everything and seek back to the committed offsets.
            retry = self._pending_assignment is not None
            failed = self.pipeline.failure is not None or retry
            reseek = failed or self._suspended
            if failed:
                log.error(
                    "a batch failed (%r) or an earlier restore failed: restoring every assigned "
                    "partition", self.pipeline.failure,
                )
                if self.exactly_once:
                    await self._settle_transaction()
                self.pipeline.clear_failure()
                self._to_restore = None
                self._release(set(self.owned))
            elif self._suspended:
                # Every batch is written (drained, none failed): the tables equal their
                # changelogs. Kept partitions that nobody else wrote to are not read again (a
                # full restore per stall made a loaded machine stall again, rejoin again, ...).
                log.warning("resuming after the freeze: re-reading from the committed offsets")
            self._suspended = False
            self._tick = time.monotonic()
            self._assigned_generation = self._group_generation()
            released = self.owned - assigned
            self._release(released)
            stale = await self._stale_partitions(self.owned & assigned)
            if stale:
                log.warning("partitions %s changed elsewhere since this worker held them", stale)
                self._release({tp for tp in self.owned if tp.partition in stale})
            new = assigned - self.owned
            await self._restore(new)
            self.owned = set(assigned)
            self.exporting = True
            await self._fetch_committed(set(assigned) if reseek else new)
            if reseek:  # records fetched but not processed must be read again
                assert self._consumer is not None
                for tp in assigned:
                    if tp in self.committed:
                        self._consumer.seek(tp, self.committed[tp])
                    else:
                        await self._consumer.seek_to_beginning(tp)
            log.info(
                "owned partitions now %s (released %s, restored %s)",
                sorted(self.tables.case_partitions()),
                sorted({tp.partition for tp in released}),
                sorted({tp.partition for tp in new}),
            )
            self.ready.set()

    def _release(self, tps: Iterable[TopicPartition]) -> None:
        tps = set(tps)
        self.tables.release(tps)
        for tp in tps:
            self.owned.discard(tp)
            self.committed.pop(tp, None)
            self.txn_committed.pop(tp, None)
            self.dirty.discard(tp)
            if tp.topic == self.cases_topic:
                self.totals.forget(tp.partition)
                self.checkpointer.with_totals.discard(tp.partition)
                self.position.pop(tp.partition, None)
                self.acked_changelog_end.pop(tp.partition, None)
                self.case_position.pop(tp.partition, None)
            else:
                self.acked_ingest.pop(tp, None)

    async def _stale_partitions(self, kept: set[TopicPartition]) -> set[int]:
        """Partitions kept across a rebalance whose changelog another worker wrote to meanwhile."""
        assert self._restorer is not None
        changelogs = {self.changelogs.of(tp, self.cases_topic) for tp in kept}
        if not changelogs:
            return set()
        ends = await self._restorer.end_offsets(list(changelogs))
        return {tp.partition for tp, end in ends.items() if end != self.changelog_end.get(tp, 0)}

    async def _restore(self, tps: set[TopicPartition]) -> None:
        assert self._restorer is not None
        await self.checkpointer.wait()  # a checkpoint being written lands before one is read
        ends = await self.tables.restore(self._restorer, tps)
        self.changelog_end.update(ends)
        await self._write_repairs()
        for tp in tps:
            if tp.topic == self.cases_topic:
                partition = tp.partition
                if self._saved_totals(partition):
                    self.checkpointer.with_totals.add(partition)
                else:
                    self.checkpointer.with_totals.discard(partition)
                    await self._rebuild_totals(partition, self.tables.cases[partition].values())
                changelog = self.changelogs.of(tp, self.cases_topic)
                self.position[partition] = ends.get(changelog, 0)
                # After the repairs, acknowledged before this point: the end as written.
                self.acked_changelog_end[partition] = self.changelog_end.get(changelog, 0)
                self.case_position[partition] = next_case_position(
                    self.tables.highest_source.get(partition, -1)
                )
            else:
                self.acked_ingest[tp] = self.tables.ingest[tp].encode()
            self.dirty.add(tp)

    async def _write_repairs(self) -> None:
        """Append again the records a restore found followed by older ones (acknowledged before
        the restore counts as done: a KafkaError leaves them queued and fails the restore)."""
        repairs = self.tables.repairs
        if not repairs:
            return
        assert self._producer is not None
        if self.exactly_once:
            await self._producer.begin_transaction()
        sender = BatchSender(self._producer)
        sender.on_delivered(self.changelogs.cases, self._changelog_written)
        sender.on_delivered(self.changelogs.ingest, self._changelog_written)
        for tp, key, value, position in repairs:
            sender.add(tp.topic, tp.partition, key, value, source_header(position))
        try:
            futures = await sender.send()
            await asyncio.wait_for(
                asyncio.gather(*futures), self.settings.processing_timeout_seconds
            )
            if self.exactly_once:
                await asyncio.wait_for(
                    self._producer.commit_transaction(), self.settings.processing_timeout_seconds
                )
        except (KafkaError, TimeoutError) as exc:
            if self.exactly_once:
                with contextlib.suppress(KafkaError, TimeoutError):
                    await self._settle_transaction()
            if isinstance(exc, KafkaError):
                raise
            raise KafkaTimeoutError("changelog repairs not acknowledged in time") from None
        repairs.clear()

    def _saved_totals(self, partition: int) -> bool:
        """Take the partition's totals from its local checkpoint, when the restore found one with
        totals and nothing written after it (streams/state_store.py): exact without folding
        every stored case again."""
        raw = self.tables.totals_snapshots.pop(partition, None)
        if raw is None:
            return False
        totals = decode_totals_snapshot(self.chain, self.checkpointer.fingerprint, raw)
        if totals is None:
            log.info("the checkpoint's totals of partition %d are of another chain definition: "
                     "folded again", partition)
            return False
        self.totals.forget(partition)
        self.totals.by_partition[partition] = totals
        self.retirement.restored(partition)
        log.info("totals of partition %d taken from its local checkpoint", partition)
        return True

    async def _rebuild_totals(self, partition: int, values: Iterable[bytes]) -> None:
        values = list(values)
        self.totals.forget(partition)
        totals = self.totals.of(partition)
        retired = self.tables.retired.get(partition)
        if retired is not None:
            totals.add_totals(retired.aggregate)  # what the retired cases contributed
        self.retirement.restored(partition)
        for start in range(0, len(values), YIELD_EVERY):
            self.totals.add_stored(partition, values[start : start + YIELD_EVERY])
            await asyncio.sleep(0)  # heartbeats and /metrics keep going during a long rebuild

    async def _fetch_committed(self, tps: set[TopicPartition]) -> None:
        """The offsets to resume `tps` from. Exactly-once: never before the position the restored
        state reflects. A transaction's offsets become readable only once the broker has written
        its commit markers, which it does after the commit call returned to the previous owner;
        aiokafka's OffsetFetch (v3) cannot ask for stable offsets (KIP-447's require_stable), so
        the committed offset read here may still be the one before a transaction whose records
        the restore already saw. Those events would be applied a second time (the event-id check
        absorbs them, but `events_duplicate_total` counted thousands in a zombie test). In one
        transaction the state records and the offsets commit together, so the state's position
        is as committed as the offsets are."""
        assert self._consumer is not None
        for tp in tps:
            offset = await self._consumer.committed(tp)
            if self.exactly_once:
                restored = self.tables.restored_position(tp)
                if restored > (offset if offset is not None else -1):
                    log.info(
                        "%s: resuming at %d, the position of the restored state (the committed "
                        "offset read was %s)", tp, restored, offset,
                    )
                    offset = restored
            if offset is not None:
                self.committed[tp] = offset

    # -- what /metrics and /healthz read -------------------------------------------------------
    def worker_health(self) -> WorkerHealth:
        return WorkerHealth(
            len(self.tables.case_partitions()) if self.exporting else 0,
            self._lag_by_topic(),
            self.commits.last_commit_timestamp,
            self.stalls.busy_seconds(),
            self.health_report()["healthy"],
        )

    def health_report(self) -> dict[str, Any]:
        view_ready = self._reader is not None and self._reader.ready.is_set()
        problems = []
        if not self.ready.is_set():
            problems.append("no partitions assigned and restored yet")
        if not view_ready:
            problems.append("totals view not caught up")
        if self.pipeline.failure is not None:
            problems.append(f"a batch failed and is being redone: {self.pipeline.failure!r}")
        if self._pending_assignment is not None:
            problems.append("assigned partitions not restored yet (broker away?)")
        if self.broker.failing:
            problems.append("the broker does not answer")
        if self._reader is not None and self._reader.outage.failing:
            problems.append("the totals topic cannot be read (broker away?)")
        problems += [
            f"{stage} busy beyond the processing timeout" for stage in self.stalls.overdue()
        ]
        return {
            "healthy": not problems,
            "problems": problems,
            "ready": self.ready.is_set(),
            "totals_view_ready": view_ready,
            "owned_partitions": len(self.tables.case_partitions()),
        }

    def _lag_by_topic(self) -> dict[str, int]:
        lag: dict[str, int] = {}
        consumer = self._consumer
        if consumer is None:
            return lag
        for tp in list(self.owned):
            highwater = consumer.highwater(tp)
            if highwater is not None:
                lag[tp.topic] = lag.get(tp.topic, 0) + max(0, highwater - self.committed.get(tp, 0))
        return lag


class _BuildInfo:
    def __init__(self) -> None:
        # core: "interpreted" or "compiled" (mypyc), ketenmonitor/core_build.py
        self.labels = {"version": __version__, "core": core_build()}

    def collect(self) -> Any:
        info = InfoMetricFamily(
            names.BUILD_INFO,
            "The Ketenmonitor version this worker runs, and its domain core's build "
            "(interpreted, or compiled with mypyc).",
        )
        info.add_metric([], self.labels)
        yield info


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.worker.on_revoked()

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self.worker.on_assigned(set(assigned))


async def _report_stalls(worker: Worker) -> None:
    """One line when a stage passes the processing timeout, one when it is done again."""
    overdue: dict[str, float] = {}
    while True:
        await asyncio.sleep(1.0)
        busy = worker.stalls.busy_seconds()
        now_overdue = set(worker.stalls.overdue())
        for stage in sorted(now_overdue - overdue.keys()):
            log.error(
                "%s has been working on one batch for %.0fs (timeout %.0fs); logged again when "
                "it is done", stage, busy[stage], worker.stalls.timeout,
            )
            overdue[stage] = time.monotonic() - busy[stage]
        for stage in sorted(overdue.keys() - now_overdue):
            log.warning(
                "%s done with the batch that took more than %.0fs (about %.0fs)",
                stage, worker.stalls.timeout, time.monotonic() - overdue.pop(stage),
            )


def run_worker(settings: Settings, chain: Chain) -> None:
    """Run one worker until SIGTERM/SIGINT."""

    async def main() -> None:
        worker = Worker(settings, chain)
        tune_garbage_collector(settings.gc_young_threshold)
        watch = asyncio.create_task(_report_stalls(worker))
        try:
            await worker.run()
        finally:
            watch.cancel()

    asyncio.run(main())
