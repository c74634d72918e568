"""Send many records per produce call through an aiokafka producer.

    sender = BatchSender(producer)
    sender.add("ketenmonitor.cases", partition, key, value)
    futures = await sender.send()      # one batch per topic-partition; await them before committing

A per-record `send` costs more than the work it carries; this builds one aiokafka batch per
topic-partition instead. `on_delivered` tells the caller the offset of the last record of each
acknowledged batch (the worker tracks the end of its changelogs with it).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaProducer


class BatchSender:
    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer
        self._on_delivered: dict[str, Callable[[str, int, int], None]] = {}
        self._pending: dict[tuple[str, int], list[tuple[bytes | None, bytes | None, Any]]] = (
            defaultdict(list)
        )

    def on_delivered(self, topic: str, callback: Callable[[str, int, int], None]) -> None:
        """Call callback(topic, partition, last_offset) when a batch to `topic` is acknowledged."""
        self._on_delivered[topic] = callback

    def add(
        self,
        topic: str,
        partition: int,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        self._pending[(topic, partition)].append((key, value, headers))

    def clear(self) -> None:
        self._pending.clear()

    async def send(self) -> list[asyncio.Future[Any]]:
        """Hand everything added so far to the producer; returns the delivery futures."""
        producer = self._producer
        futures = []
        pending, self._pending = self._pending, defaultdict(list)
        for (topic, partition), records in pending.items():
            batch = producer.create_batch()
            for key, value, headers in records:
                append = batch.append
                if append(key=key, value=value, timestamp=None, headers=headers or []) is None:
                    if batch.record_count():
                        futures.append(await self._send(batch, topic, partition))
                        batch = producer.create_batch()
                    if batch.append(key=key, value=value, timestamp=None, headers=headers or []):
                        continue
                    # Larger than a whole batch (a near-limit dead letter): sent on its own, up
                    # to the producer's max_request_size and the topic's max.message.bytes.
                    futures.append(await self._send_one(topic, partition, key, value, headers))
            if batch.record_count():
                futures.append(await self._send(batch, topic, partition))
        return futures

    async def _send_one(
        self,
        topic: str,
        partition: int,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]] | None,
    ) -> Any:
        future = await self._producer.send(
            topic, value=value, key=key, partition=partition, headers=headers or []
        )
        callback = self._on_delivered.get(topic)
        if callback is not None:

            def delivered(done: asyncio.Future[Any]) -> None:
                if not done.cancelled() and done.exception() is None:
                    callback(topic, partition, done.result().offset)

            future.add_done_callback(delivered)
        return future

    async def _send(self, batch: Any, topic: str, partition: int) -> Any:
        count = batch.record_count()
        future = await self._producer.send_batch(batch, topic, partition=partition)
        callback = self._on_delivered.get(topic)
        if callback is not None:

            def delivered(done: asyncio.Future[Any]) -> None:
                if not done.cancelled() and done.exception() is None:
                    callback(topic, partition, done.result().offset + count - 1)

            future.add_done_callback(delivered)
        return future
