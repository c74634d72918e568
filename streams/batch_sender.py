"""Send many records per produce call through the Faust app's own Kafka producer.

    sender = BatchSender(app)
    sender.add("ketenmonitor.cases", partition, key, value)
    await sender.send()      # hands one batch per topic-partition to the producer

Faust's per-message send path (send_soon -> buffer -> one awaited send per record) costs more than
the work it carries. This builds aiokafka batches instead. Delivery stays at-least-once: the records
go through the same producer that faust flushes before every offset commit, so an offset is never
committed before the records produced for it are acknowledged.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import faust


class BatchSender:
    def __init__(self, app: faust.App) -> None:
        self._app = app
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

    async def send(self) -> list[asyncio.Future[Any]]:
        """Hand everything added so far to the producer; returns the delivery futures."""
        producer = self._app.producer._ensure_producer()  # the aiokafka producer faust flushes
        futures = []
        pending, self._pending = self._pending, defaultdict(list)
        for (topic, partition), records in pending.items():
            batch = producer.create_batch()
            for key, value, headers in records:
                if batch.append(key=key, value=value, timestamp=None, headers=headers or []) is None:
                    futures.append(await self._send(producer, batch, topic, partition))
                    batch = producer.create_batch()
                    if batch.append(key=key, value=value, timestamp=None, headers=headers or []) is None:
                        raise ValueError(f"record too large for one batch on {topic}")
            if batch.record_count():
                futures.append(await self._send(producer, batch, topic, partition))
        return futures

    async def _send(self, producer: Any, batch: Any, topic: str, partition: int) -> Any:
        count = batch.record_count()
        future = await producer.send_batch(batch, topic, partition=partition)
        callback = self._on_delivered.get(topic)
        if callback is not None:

            def delivered(done: asyncio.Future[Any]) -> None:
                if not done.cancelled() and done.exception() is None:
                    callback(topic, partition, done.result().offset + count - 1)

            future.add_done_callback(delivered)
        return future
