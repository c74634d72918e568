"""The stream worker: partner topics -> case topic -> case state, on aiokafka, batch by batch.

    asyncio.run(Worker(Settings(), load_chain()).run())     # `ketenmonitor worker` does this

One consumer in the group `app_id` reads the partner topics and the case topic; the range assignor
gives a worker the same partition numbers of every topic (they all have `partitions`), and
partition p of the two changelogs holds the worker's durable state for partition p:

    ingest   partner message -> contract check, pseudonym -> case topic (partitioned by pseudonym)
             or dead-letter topic (original bytes, reason in headers); counts per partner
             partition in the `ingest-stats` table
    cases    case event -> domain core -> `cases` table (pseudonym -> case state)

Per batch (`getmany`): everything the batch produces (forwards, dead letters, one changelog record
per touched case and per partner partition) goes out in one produce call per topic-partition; the
offsets are committed only after every one of those records is acknowledged. Delivery is therefore
at-least-once, and replays are absorbed by the event-id check in the case state and the offset
check in the ingest counts. What /metrics says is computed from the tables of the partitions the
worker owns, never from counters that die with it.

Rebalances: `on_partitions_revoked` waits for the batch in progress (its records acknowledged,
its offsets committed), so the next owner's restore reads everything this worker wrote; Kafka
calls every member's revoke before any member's assign. `on_partitions_assigned` reads the
changelog partitions of newly owned partitions from the beginning into memory and rebuilds their
totals; a partition kept across the rebalance is read again only if its changelog grew behind this
worker's back (another member owned it meanwhile). Faust's own agent/table runtime is not used
here: it moved every message through several asyncio tasks (~75% of the CPU per event, measured,
bench/RESULTS.md) and its memory-store recovery lost data once under repeated kill -9
(docs/operations.md); faust remains the per-event baseline in bench/.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import CommitFailedError, KafkaError

from ketenmonitor.domain.chain import Chain
from ketenmonitor.settings import Settings
from streams.batch_sender import BatchSender
from streams.changelog import read_changelogs
from streams.health import CommitWatch, StallWatch
from streams.ingest import IngestStats
from streams.metrics import OwnedState
from streams.processing import CaseProcessor, Ingestor, Rejected
from streams.store_sink import flush_store_sink, open_store_sink
from streams.topics import prepare_topics
from streams.web import MetricsServer

log = logging.getLogger(__name__)

MAX_BATCHES_IN_FLIGHT = 3  # handed to the producer, offsets not yet committed
YIELD_EVERY = 5_000  # cases folded between yields to the event loop while rebuilding totals


@dataclass
class Tables:
    """The worker's in-memory state, by partition; each table mirrors a changelog topic."""

    cases: dict[int, dict[bytes, bytes]] = field(default_factory=dict)  # pseudonym -> state
    ingest: dict[str, IngestStats] = field(default_factory=dict)  # "topic:partition" -> counts


class Worker:
    def __init__(self, settings: Settings, chain: Chain) -> None:
        self.settings = settings
        self.chain = chain
        self.topic_of = {settings.partner_topic(p): p for p in chain.partner_ids}
        self.cases_topic = settings.cases_topic
        self.case_changelog = settings.changelog_topic("cases")
        self.ingest_changelog = settings.changelog_topic("ingest-stats")
        self.ingestor = Ingestor(chain, settings.pseudonym_secret(), settings.partitions)
        self.processor = CaseProcessor(chain)
        self.tables = Tables()
        self.owned: set[TopicPartition] = set()
        # /metrics shows the owned partitions, but none between a revocation and the next
        # assignment, so that no partition is ever exported by two workers at once.
        self.exporting = False
        self.committed: dict[TopicPartition, int] = {}
        # Where each changelog partition ended after this worker's last write or restore; only
        # compared for partitions kept across a rebalance (a restore sets it anew).
        self.changelog_end: dict[TopicPartition, int] = {}
        self.stalls = StallWatch(settings.processing_timeout_seconds)
        self.commits = CommitWatch()
        self.lock = asyncio.Lock()  # one batch, restore or release at a time
        self._in_flight: collections.deque[asyncio.Task[None]] = collections.deque()
        self._failure: BaseException | None = None  # a batch whose output was not written
        self.ready = asyncio.Event()  # first assignment restored
        self._stop = asyncio.Event()
        self.sink = open_store_sink(settings, chain)
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._restorer: AIOKafkaConsumer | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    async def run(self) -> None:
        settings = self.settings
        await asyncio.to_thread(prepare_topics, settings, self.chain)
        security = settings.kafka_python_security()
        session_ms = int(settings.session_timeout_seconds * 1000)
        self._producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap,
            client_id=f"{settings.app_id}-worker",
            acks="all",
            linger_ms=5,
            max_batch_size=1024 * 1024,
            request_timeout_ms=max(120_000, 4 * session_ms),
            **security,
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
            **security,
        )
        self._restorer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap,
            client_id=f"{settings.app_id}-restore",
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=8 * 1024 * 1024,
            **security,
        )
        web = MetricsServer(self, settings.metrics_host, settings.metrics_port)
        await web.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        await self._producer.start()
        await self._restorer.start()
        await self._consumer.start()
        topics = [*self.topic_of, self.cases_topic]
        self._consumer.subscribe(topics, listener=_Rebalance(self))
        log.info("worker subscribed to %s as group %s", topics, settings.app_id)
        try:
            await self._consume()
        finally:
            async with self.lock:
                await self._drain()
                flush_store_sink(self.sink)
            await self._consumer.stop()  # leaves the group: the others take over at once
            await self._restorer.stop()
            await self._producer.stop()
            await web.stop()
            log.info("worker stopped")

    def stop(self) -> None:
        self._stop.set()

    async def _consume(self) -> None:
        assert self._consumer is not None
        max_records = self.settings.batch_size
        timeout_ms = int(self.settings.batch_seconds * 1000)
        while not self._stop.is_set():
            records = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
            if not records and self._failure is None:
                continue
            async with self.lock:
                if self._failure is not None:
                    await self._recover()  # the records fetched are read again after the seek
                    continue
                owned = {tp: msgs for tp, msgs in records.items() if tp in self.owned and msgs}
                if owned:
                    await self._process(owned)

    async def _recover(self) -> None:
        """After a batch whose output was not written: nothing from it on is committed; start
        again from the committed offsets and the changelogs, as a restarted worker would."""
        log.error("batch failed (%r); restoring owned partitions and retrying", self._failure)
        await self._drain()
        self._failure = None
        await self._reload_all()

    async def _drain(self) -> None:
        """Wait until every batch handed to the producer is written and committed (or failed)."""
        while self._in_flight:
            await asyncio.wait(list(self._in_flight))

    # -- one batch ------------------------------------------------------------------------------
    async def _process(self, records: dict[TopicPartition, list]) -> None:
        assert self._consumer is not None and self._producer is not None
        sender = BatchSender(self._producer)
        sender.on_delivered(self.case_changelog, self._changelog_written)
        sender.on_delivered(self.ingest_changelog, self._changelog_written)
        with self.stalls.busy("ingest"):
            for tp, messages in records.items():
                if tp.topic != self.cases_topic:
                    self._ingest(tp, messages, sender)
        with self.stalls.busy("cases"):
            for tp, messages in records.items():
                if tp.topic == self.cases_topic:
                    self._apply(tp, messages, sender)
            futures = await sender.send()
        # The next batch is processed while this one is written: its offsets are committed by a
        # task once its records (and those of every earlier batch) are acknowledged.
        offsets = {tp: messages[-1].offset + 1 for tp, messages in records.items()}
        previous = self._in_flight[-1] if self._in_flight else None
        task = asyncio.create_task(self._commit_when_written(futures, offsets, previous))
        self._in_flight.append(task)
        task.add_done_callback(self._in_flight.remove)
        if len(self._in_flight) > MAX_BATCHES_IN_FLIGHT:
            await asyncio.wait([self._in_flight[0]])

    async def _commit_when_written(
        self,
        futures: list[asyncio.Future],
        offsets: dict[TopicPartition, int],
        previous: asyncio.Task[None] | None,
    ) -> None:
        """Commit `offsets` once the batch's records are acknowledged, after the batch before it.
        A batch not written and committed within the processing timeout, or whose produce failed,
        sets `_failure`; so do the batches after it, which the restore then redoes."""
        if previous is not None:
            await asyncio.wait([previous])  # commits stay in batch order
        if self._failure is not None:
            return
        try:
            with self.stalls.busy("commit"):
                await asyncio.wait_for(
                    self._write_and_commit(futures, offsets),
                    self.settings.processing_timeout_seconds,
                )
        except (KafkaError, TimeoutError) as exc:
            self._failure = exc

    async def _write_and_commit(
        self, futures: list[asyncio.Future], offsets: dict[TopicPartition, int]
    ) -> None:
        assert self._consumer is not None
        if futures:
            await asyncio.gather(*futures)
        flush_store_sink(self.sink)
        try:
            await self._consumer.commit(offsets)
        except CommitFailedError as exc:
            # The group moved on; the new owner replays from the last commit (idempotent).
            log.warning("commit failed after a rebalance: %s", exc)
            return
        self.committed.update(offsets)
        self.commits.committed()

    def _ingest(self, tp: TopicPartition, messages: list, sender: BatchSender) -> None:
        organisation = self.topic_of[tp.topic]
        key = f"{tp.topic}:{tp.partition}"
        stats = self.tables.ingest.get(key)
        if stats is None:
            stats = self.tables.ingest[key] = IngestStats()
        route = self.ingestor.route
        cases_topic, dead_letter_topic = self.cases_topic, self.settings.dead_letter_topic
        now = time.time()  # one clock reading per partition batch for the clock-skew check
        for m in messages:
            raw = m.value or b""
            routed = route(raw, organisation, now)
            timestamp = m.timestamp / 1000.0
            if isinstance(routed, Rejected):
                log.warning(
                    "rejected event topic=%s partition=%s offset=%s reason=%s",
                    tp.topic, tp.partition, m.offset, routed.reason,
                )
                headers = routed.dead_letter_headers(tp.topic, tp.partition, m.offset)
                sender.add(dead_letter_topic, 0, None, raw, headers)
                stats.count(m.offset, timestamp, routed.reason)
            else:
                # Forwarded even when already counted (a replay): the case state drops duplicates.
                sender.add(cases_topic, routed.partition, routed.pseudonym.encode(), routed.payload)
                stats.count(m.offset, timestamp, None, routed.occurred_at)
        sender.add(self.ingest_changelog, tp.partition, key.encode(), stats.encode())

    def _apply(self, tp: TopicPartition, messages: list, sender: BatchSender) -> None:
        partition = tp.partition
        table = self.tables.cases[partition]
        process = self.processor.process_with_state
        sink = self.sink
        changed: dict[bytes, bytes] = {}
        for m in messages:
            key = m.key
            pseudonym = key.decode()
            raw_state, state = process(partition, pseudonym, m.value, table.get(key))
            table[key] = changed[key] = raw_state
            if sink is not None:
                sink.add(pseudonym, state)
        # One changelog record per case per batch: the last state is what a restore needs.
        for key, raw_state in changed.items():
            sender.add(self.case_changelog, partition, key, raw_state)

    def _changelog_written(self, topic: str, partition: int, last_offset: int) -> None:
        tp = TopicPartition(topic, partition)
        self.changelog_end[tp] = max(self.changelog_end.get(tp, 0), last_offset + 1)

    # -- rebalances -----------------------------------------------------------------------------
    async def on_revoked(self) -> None:
        # The lock waits for the batch in progress, the drain for every batch in flight: records
        # acknowledged, offsets committed. What is released is decided at the assignment.
        async with self.lock:
            await self._drain()
            self.exporting = False
            log.info("partitions revoked; batches in flight written and committed")

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        async with self.lock:
            await self._drain()
            if self._failure is not None:
                log.error("a batch failed (%r): restoring every assigned partition", self._failure)
                self._failure = None
                self._release(set(self.owned))
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
            await self._fetch_committed(new)
            log.info(
                "owned partitions now %s (released %s, restored %s)",
                sorted(self._case_partitions()), sorted({tp.partition for tp in released}),
                sorted({tp.partition for tp in new}),
            )
            self.ready.set()

    def _release(self, tps: Iterable[TopicPartition]) -> None:
        for tp in tps:
            self.owned.discard(tp)
            self.committed.pop(tp, None)
            if tp.topic == self.cases_topic:
                self.tables.cases.pop(tp.partition, None)
                self.processor.forget(tp.partition)
            else:
                self.tables.ingest.pop(f"{tp.topic}:{tp.partition}", None)

    async def _stale_partitions(self, kept: set[TopicPartition]) -> set[int]:
        """Partitions kept across a rebalance whose changelog another worker wrote to meanwhile."""
        assert self._restorer is not None
        changelogs = {
            TopicPartition(self._changelog_of(tp), tp.partition) for tp in kept
        }
        if not changelogs:
            return set()
        ends = await self._restorer.end_offsets(list(changelogs))
        return {tp.partition for tp, end in ends.items() if end != self.changelog_end.get(tp, 0)}

    def _changelog_of(self, tp: TopicPartition) -> str:
        return self.case_changelog if tp.topic == self.cases_topic else self.ingest_changelog

    async def _restore(self, tps: set[TopicPartition]) -> None:
        """Read the changelog partitions behind `tps` from the beginning into the tables."""
        assert self._restorer is not None
        if not tps:
            return
        started = time.monotonic()
        case_partitions = {tp.partition for tp in tps if tp.topic == self.cases_topic}
        ingest_keys = {f"{tp.topic}:{tp.partition}" for tp in tps if tp.topic != self.cases_topic}
        changelogs = {TopicPartition(self.case_changelog, p) for p in case_partitions} | {
            TopicPartition(self.ingest_changelog, tp.partition)
            for tp in tps if tp.topic != self.cases_topic
        }
        tables, ends = await read_changelogs(self._restorer, changelogs)
        cases = {p: tables[TopicPartition(self.case_changelog, p)] for p in case_partitions}
        for tp, table in tables.items():
            if tp.topic == self.ingest_changelog:
                for key, value in table.items():
                    name = key.decode()
                    if name in ingest_keys:
                        self.tables.ingest[name] = IngestStats.decode(value)
        for tp in changelogs:
            self.changelog_end[tp] = ends.get(tp, 0)
        for partition, table in cases.items():
            self.tables.cases[partition] = table
            await self._rebuild_totals(partition, table.values())
        log.info(
            "restored %d cases and %d partner partitions for %s in %.2fs",
            sum(len(t) for t in cases.values()), len(ingest_keys),
            sorted({tp.partition for tp in tps}), time.monotonic() - started,
        )

    async def _rebuild_totals(self, partition: int, states: Iterable[bytes]) -> None:
        states = list(states)
        self.processor.forget(partition)
        for start in range(0, len(states), YIELD_EVERY):
            self.processor.add_states(partition, states[start : start + YIELD_EVERY])
            await asyncio.sleep(0)  # heartbeats and /metrics keep going during a long rebuild

    async def _fetch_committed(self, tps: set[TopicPartition]) -> None:
        assert self._consumer is not None
        for tp in tps:
            offset = await self._consumer.committed(tp)
            if offset is not None:
                self.committed[tp] = offset

    async def _reload_all(self) -> None:
        """After a failed batch: state and positions as a fresh worker would find them."""
        assert self._consumer is not None
        owned = set(self.owned)
        self._release(owned)
        await self._restore(owned)
        self.owned = owned
        await self._fetch_committed(owned)
        for tp in owned:
            if tp in self.committed:
                self._consumer.seek(tp, self.committed[tp])
            else:
                await self._consumer.seek_to_beginning(tp)

    # -- what /metrics reads -------------------------------------------------------------------
    def _case_partitions(self) -> set[int]:
        return {tp.partition for tp in self.owned if tp.topic == self.cases_topic}

    def owned_state(self) -> OwnedState:
        exported = self.owned if self.exporting else set()
        ingest = [
            (self.topic_of[tp.topic], stats)
            for tp in exported
            if tp.topic in self.topic_of
            and (stats := self.tables.ingest.get(f"{tp.topic}:{tp.partition}")) is not None
        ]
        owned = {tp.partition for tp in exported if tp.topic == self.cases_topic}
        return OwnedState(
            self.processor.owned_totals(owned),
            ingest,
            len(owned),
            self._lag_by_topic(),
            self.commits.last_commit_timestamp,
            self.stalls.busy_seconds(),
        )

    def _lag_by_topic(self) -> dict[str, int]:
        lag: dict[str, int] = {}
        consumer = self._consumer
        if consumer is None:
            return lag
        for tp in self.owned:
            highwater = consumer.highwater(tp)
            if highwater is not None:
                lag[tp.topic] = lag.get(tp.topic, 0) + max(0, highwater - self.committed.get(tp, 0))
        return lag


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.worker.on_revoked()

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self.worker.on_assigned(set(assigned))


async def _report_stalls(worker: Worker) -> None:
    while True:
        await asyncio.sleep(1.0)
        for stage in worker.stalls.overdue():
            log.error(
                "%s has been working on one batch for %.0fs (timeout %.0fs)",
                stage, worker.stalls.busy_seconds()[stage], worker.stalls.timeout,
            )


def run_worker(settings: Settings, chain: Chain) -> None:
    """Run one worker until SIGTERM/SIGINT."""

    async def main() -> None:
        worker = Worker(settings, chain)
        watch = asyncio.create_task(_report_stalls(worker))
        try:
            await worker.run()
        finally:
            watch.cancel()

    asyncio.run(main())
