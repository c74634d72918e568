"""Kafka I/O of the totals topic: owners publish their partitions, every worker reads them all.

    reader = TotalsReader(consumer, topic, partitions, view)
    task = asyncio.create_task(reader.run())      # reader.ready is set once caught up
    publisher = TotalsPublisher(producer, topic)
    await publisher.publish(p, CASES_KEY, value)  # or publish_many([...])

The reader is a group-less consumer of every partition of the topic, read from the beginning (the
topic is compacted: one record per key and partition survives). It is ready once it has read up to
the end offsets the topic had when it started: before that it holds older totals than other
workers, and the worker exports no chain series rather than lower ones. The same after the worker
stood still (`catch_up`: a frozen process, a stalled event loop). Broker outages are retried
with backoff and logged once per change of state.
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from ketenmonitor.streams.health import Outage
from ketenmonitor.streams.totals import TotalsView

log = logging.getLogger(__name__)

FETCH_RECORDS = 10_000


class TotalsReader:
    def __init__(
        self, consumer: AIOKafkaConsumer, topic: str, partitions: int, view: TotalsView
    ) -> None:
        self.consumer = consumer
        self.topic = topic
        self.tps = [TopicPartition(topic, p) for p in range(partitions)]
        self.view = view
        self.ready = asyncio.Event()
        self.last_read = 0.0  # wall clock of the last successful fetch
        self.outage = Outage(f"reading the totals topic {topic}")
        self._catching_up = False  # set by catch_up(): new end offsets to reach

    def catch_up(self) -> None:
        """Not ready until the topic is read to the end offsets it has now (after the worker
        stood still: its view is as old as the pause, and the records it missed would arrive
        in one jump, which a windowed rate over its series would count in too short a time)."""
        self.ready.clear()
        self._catching_up = True

    async def run(self) -> None:
        consumer = self.consumer
        target: dict[TopicPartition, int] | None = None  # end offsets to reach before ready
        while True:
            try:
                if target is None or self._catching_up:
                    if target is None:
                        consumer.assign(self.tps)
                        await consumer.seek_to_beginning(*self.tps)
                    ends = await consumer.end_offsets(self.tps)
                    target = {tp: end for tp, end in ends.items() if end > 0}
                    self._catching_up = False  # after the call: a failed one is asked again
                batch = await consumer.getmany(timeout_ms=200, max_records=FETCH_RECORDS)
                for tp, messages in batch.items():
                    apply = self.view.apply
                    for m in messages:
                        apply(tp.partition, m.key, m.value)
                if not self.ready.is_set():
                    for tp in list(target):
                        if await consumer.position(tp) >= target[tp]:
                            del target[tp]
                    if not target:
                        self.ready.set()
                        log.info("totals view caught up with %s", self.topic)
                self.last_read = time.time()
                self.outage.recovered()
            except KafkaError as exc:
                self.outage.failed(exc)
                await asyncio.sleep(self.outage.backoff())


class TotalsPublisher:
    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self.producer = producer
        self.topic = topic

    async def publish_many(self, records: list[tuple[int, bytes, bytes]]) -> None:
        """Send (partition, key, value) records and wait for their acknowledgement."""
        futures = [
            await self.producer.send(self.topic, value=value, key=key, partition=partition)
            for partition, key, value in records
        ]
        if futures:
            await asyncio.gather(*futures)
