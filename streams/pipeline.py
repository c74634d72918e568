"""Batches handed to the producer, acknowledged and committed strictly in batch order.

    pipeline = CommitPipeline(commit=consumer_commit, timeout=10.0, max_in_flight=3)
    await pipeline.submit(futures, offsets, on_written=fold_totals, after_written=flush_store)
    await pipeline.drain()            # every batch submitted so far is committed or failed
    pipeline.failure                  # the first batch that was not written, or None

A batch's offsets are committed only after its records AND those of every earlier batch are
acknowledged, and after `after_written` (the case-fact store) has finished: a committed offset
never belongs to an event whose output is not durable. `on_written` runs once the records are
acknowledged, in batch order: what the worker exports is never ahead of what a restore would find.
A batch not acknowledged within `timeout`, or whose produce failed, sets `failure`; the batches
after it are then neither folded nor committed, and the owner restores from the changelogs and the
committed offsets (streams/worker.py). `after_written` is retried until it succeeds: a slow or
absent store holds the pipeline (and through `max_in_flight` the consumer) instead of failing it.

`fold_after_commit=True` (exactly-once mode: `commit` sends the offsets to the batch's transaction
and commits it) runs `on_written` after the commit instead of before: records acknowledged inside
a transaction are not yet durable, and an aborted batch must not reach the exported totals.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

Offsets = TypeVar("Offsets")


class CommitPipeline(Generic[Offsets]):
    def __init__(
        self,
        commit: Callable[[Offsets], Awaitable[None]],
        timeout: float,
        max_in_flight: int = 3,
        retry_seconds: float = 1.0,
        fold_after_commit: bool = False,
    ) -> None:
        self._commit = commit
        self.fold_after_commit = fold_after_commit
        self.timeout = timeout
        self.max_in_flight = max_in_flight
        self.retry_seconds = retry_seconds
        self._in_flight: collections.deque[asyncio.Task[None]] = collections.deque()
        self.failure: BaseException | None = None
        self.committed_batches = 0

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    async def submit(
        self,
        futures: Sequence[Awaitable[Any]],
        offsets: Offsets,
        on_written: Callable[[], None] | None = None,
        after_written: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Queue one batch; returns once fewer than `max_in_flight` batches are outstanding."""
        previous = self._in_flight[-1] if self._in_flight else None
        task = asyncio.create_task(
            self._write_then_commit(futures, offsets, previous, on_written, after_written)
        )
        self._in_flight.append(task)
        task.add_done_callback(self._in_flight.remove)
        while len(self._in_flight) > self.max_in_flight:
            await asyncio.wait([self._in_flight[0]])

    async def drain(self) -> None:
        """Wait until every batch submitted so far is committed (or failed)."""
        while self._in_flight:
            await asyncio.wait(list(self._in_flight))

    def clear_failure(self) -> BaseException | None:
        failure, self.failure = self.failure, None
        return failure

    async def _write_then_commit(
        self,
        futures: Sequence[Awaitable[Any]],
        offsets: Offsets,
        previous: asyncio.Task[None] | None,
        on_written: Callable[[], None] | None,
        after_written: Callable[[], Awaitable[None]] | None,
    ) -> None:
        if previous is not None:
            await asyncio.wait([previous])  # acknowledgements and commits stay in batch order
        if self.failure is not None:
            for future in futures:  # their errors are the failure's; not reported again
                asyncio.ensure_future(future).add_done_callback(_retrieve)
            return
        try:
            if futures:
                await asyncio.wait_for(asyncio.gather(*futures), self.timeout)
        except Exception as exc:  # a produce error or the timeout: nothing from here on commits
            self.failure = exc
            for future in futures:
                asyncio.ensure_future(future).add_done_callback(_retrieve)
            return
        if on_written is not None and not self.fold_after_commit:
            on_written()
        if after_written is not None:
            await self._until_done(after_written)
        try:
            await asyncio.wait_for(self._commit(offsets), self.timeout)
        except Exception as exc:
            self.failure = exc
            return
        if on_written is not None and self.fold_after_commit:
            on_written()
        self.committed_batches += 1

    async def _until_done(self, step: Callable[[], Awaitable[None]]) -> None:
        failing = False
        while True:
            try:
                await step()
            except Exception as exc:
                if not failing:  # one line per change of state, not per attempt
                    log.error(
                        "holding the commits: %s (retrying every %.0fs)", exc, self.retry_seconds
                    )
                    failing = True
                await asyncio.sleep(self.retry_seconds)
                continue
            if failing:
                log.warning("resumed: the step that held the commits succeeded")
            return


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
