"""CommitPipeline (streams/pipeline.py) alone, with futures and a commit function of the test."""

from __future__ import annotations

import asyncio

import pytest
from ketenmonitor.streams.pipeline import CommitPipeline


class Commits:
    def __init__(self) -> None:
        self.done: list[str] = []

    async def __call__(self, offsets: str) -> None:
        self.done.append(offsets)


def run(coro):
    return asyncio.run(coro)


def test_batches_commit_in_order_even_when_a_later_batch_is_acknowledged_first() -> None:
    async def scenario() -> list[str]:
        commits = Commits()
        pipeline: CommitPipeline[str] = CommitPipeline(commits, timeout=5)
        loop = asyncio.get_running_loop()
        first, second = loop.create_future(), loop.create_future()
        written: list[str] = []
        await pipeline.submit([first], "batch-1", lambda: written.append("1"))
        await pipeline.submit([second], "batch-2", lambda: written.append("2"))
        second.set_result(None)
        await asyncio.sleep(0.01)
        assert commits.done == [] and written == []  # batch 2 waits for batch 1
        first.set_result(None)
        await pipeline.drain()
        assert written == ["1", "2"]
        return commits.done

    assert run(scenario()) == ["batch-1", "batch-2"]


def test_a_failed_batch_stops_every_later_commit_and_fold() -> None:
    async def scenario() -> tuple[list[str], list[str], BaseException | None]:
        commits = Commits()
        pipeline: CommitPipeline[str] = CommitPipeline(commits, timeout=5)
        loop = asyncio.get_running_loop()
        ok, bad, later = (loop.create_future() for _ in range(3))
        written: list[str] = []
        for fut, name in ((ok, "1"), (bad, "2"), (later, "3")):
            await pipeline.submit([fut], f"batch-{name}", lambda n=name: written.append(n))
        ok.set_result(None)
        bad.set_exception(RuntimeError("broker said no"))
        later.set_result(None)
        await pipeline.drain()
        return commits.done, written, pipeline.failure

    done, written, failure = run(scenario())
    assert done == ["batch-1"] and written == ["1"]
    assert isinstance(failure, RuntimeError)


def test_a_batch_not_acknowledged_within_the_timeout_fails() -> None:
    async def scenario() -> tuple[list[str], BaseException | None]:
        commits = Commits()
        pipeline: CommitPipeline[str] = CommitPipeline(commits, timeout=0.05)
        never = asyncio.get_running_loop().create_future()
        await pipeline.submit([never], "batch-1")
        await pipeline.drain()
        return commits.done, pipeline.clear_failure()

    done, failure = run(scenario())
    assert done == [] and isinstance(failure, TimeoutError)


def test_the_store_step_is_retried_and_the_commit_waits_for_it() -> None:
    async def scenario() -> tuple[list[str], int]:
        commits = Commits()
        pipeline: CommitPipeline[str] = CommitPipeline(commits, timeout=5, retry_seconds=0.01)
        attempts = 0

        async def store() -> None:
            nonlocal attempts
            attempts += 1
            if attempts < 3:
                assert commits.done == []  # nothing committed while the store fails
                raise OSError("database away")

        await pipeline.submit([], "batch-1", after_written=store)
        await pipeline.drain()
        assert pipeline.failure is None
        return commits.done, attempts

    assert run(scenario()) == (["batch-1"], 3)


def test_submit_waits_while_too_many_batches_are_in_flight() -> None:
    async def scenario() -> None:
        pipeline: CommitPipeline[str] = CommitPipeline(Commits(), timeout=5, max_in_flight=2)
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in range(3)]
        await pipeline.submit([futures[0]], "1")
        await pipeline.submit([futures[1]], "2")
        third = asyncio.create_task(pipeline.submit([futures[2]], "3"))
        await asyncio.sleep(0.01)
        assert not third.done() and pipeline.in_flight == 3
        futures[0].set_result(None)
        await asyncio.wait_for(third, 1)
        for f in futures[1:]:
            f.set_result(None)
        await pipeline.drain()
        assert pipeline.committed_batches == 3

    run(scenario())


@pytest.mark.parametrize("max_in_flight", [1, 3])
def test_every_submitted_batch_is_committed_exactly_once(max_in_flight: int) -> None:
    async def scenario() -> list[str]:
        commits = Commits()
        pipeline: CommitPipeline[str] = CommitPipeline(commits, 5, max_in_flight)
        for n in range(20):
            fut = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().call_later(0.001 * (20 - n), fut.set_result, None)
            await pipeline.submit([fut], str(n))
        await pipeline.drain()
        return commits.done

    assert run(scenario()) == [str(n) for n in range(20)]


def test_fold_after_commit_folds_only_committed_batches() -> None:
    """Exactly-once mode: a batch whose transaction does not commit is never folded."""

    async def scenario() -> tuple[list[str], list[str]]:
        order: list[str] = []

        async def commit(offsets: str) -> None:
            order.append(f"commit {offsets}")
            if offsets == "batch-2":
                raise RuntimeError("transaction aborted")

        pipeline: CommitPipeline[str] = CommitPipeline(commit, timeout=5, fold_after_commit=True)
        loop = asyncio.get_running_loop()
        first, second = loop.create_future(), loop.create_future()
        first.set_result(None)
        second.set_result(None)
        await pipeline.submit([first], "batch-1", lambda: order.append("fold 1"))
        await pipeline.submit([second], "batch-2", lambda: order.append("fold 2"))
        await pipeline.drain()
        return order, [repr(pipeline.failure)]

    order, failure = run(scenario())
    assert order == ["commit batch-1", "fold 1", "commit batch-2"]
    assert failure == ["RuntimeError('transaction aborted')"]
