"""Group commit and debounced stores, against a writer that records its batches."""

from __future__ import annotations

import asyncio
import logging

import pytest

from otahub.hub.store.batching import Debounced, GroupCommit

log = logging.getLogger("test")


class Writer:
    """Doubles numbers; refuses 13 alone and fails any batch that holds 99."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    async def __call__(self, batch: list[int]) -> list[int | Exception]:
        self.batches.append(list(batch))
        await asyncio.sleep(0.01)  # a transaction takes a while: others queue meanwhile
        if 99 in batch:
            raise RuntimeError("the transaction failed")
        return [ValueError("13 refused") if n == 13 else n * 2 for n in batch]


async def test_a_burst_is_a_few_batches_and_each_caller_gets_its_outcome() -> None:
    writer = Writer()
    commit: GroupCommit[int, int] = GroupCommit(writer, "numbers", log)
    results = await asyncio.gather(*(commit.submit(n) for n in range(14, 90)))
    assert results == [n * 2 for n in range(14, 90)]
    assert len(writer.batches) == 1  # all arrived before the first write began
    more = [commit.submit(n) for n in (1, 2)]
    await asyncio.sleep(0)
    later = [commit.submit(n) for n in (3, 4)]  # while the first is written: the next batch
    assert await asyncio.gather(*more, *later) == [2, 4, 6, 8]
    assert writer.batches[1:] == [[1, 2], [3, 4]]


async def test_an_item_refused_alone_fails_only_its_caller() -> None:
    writer = Writer()
    commit: GroupCommit[int, int] = GroupCommit(writer, "numbers", log)
    futures = [commit.submit(n) for n in (12, 13, 14)]
    done = await asyncio.gather(*futures, return_exceptions=True)
    assert done[0] == 24 and done[2] == 28
    assert isinstance(done[1], ValueError)
    assert writer.batches == [[12, 13, 14]]


async def test_a_failed_batch_is_retried_one_by_one(caplog: pytest.LogCaptureFixture) -> None:
    writer = Writer()
    commit: GroupCommit[int, int] = GroupCommit(writer, "numbers", log)
    futures = [commit.submit(n) for n in (1, 99, 2)]
    done = await asyncio.gather(*futures, return_exceptions=True)
    assert done[0] == 2 and done[2] == 4
    assert isinstance(done[1], RuntimeError)
    assert writer.batches == [[1, 99, 2], [1], [99], [2]]
    assert "group commit of 3 numbers failed" in caplog.text


async def test_a_caller_that_gives_up_does_not_stop_the_batch() -> None:
    writer = Writer()
    commit: GroupCommit[int, int] = GroupCommit(writer, "numbers", log)
    first = commit.submit(1)
    second = commit.submit(2)
    first.cancel()
    assert await second == 4
    assert writer.batches == [[1, 2]]


async def test_debounced_stores_once_per_interval_and_retries_a_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[float] = []
    failures = [True]

    async def flush() -> None:
        calls.append(asyncio.get_running_loop().time())
        if failures:
            failures.pop()
            raise OSError("disk full")

    later = Debounced(flush, 0.05, "numbers", log)
    start = asyncio.get_running_loop().time()
    for _ in range(50):
        later.touch()
    await asyncio.sleep(0.2)
    assert len(calls) == 2  # one for all fifty touches, then the retry
    assert calls[0] - start >= 0.05 and calls[1] - calls[0] >= 0.05
    assert "storing numbers failed; retrying" in caplog.text
    later.touch()
    await later.close()  # stores at once, and the timer is gone
    assert len(calls) == 3
    await asyncio.sleep(0.1)
    assert len(calls) == 3


async def test_batches_are_cut_at_the_size_given() -> None:
    writer = Writer()
    commit: GroupCommit[int, int] = GroupCommit(writer, "numbers", log, max_batch=4)
    assert await asyncio.gather(*(commit.submit(n) for n in range(10))) == [
        n * 2 for n in range(10)
    ]
    assert writer.batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


async def test_callers_waiting_when_the_writer_is_cancelled_are_cancelled_too() -> None:
    writer = Writer()
    commit: GroupCommit[int, int] = GroupCommit(writer, "numbers", log, max_batch=1)
    futures = [commit.submit(n) for n in range(3)]
    await asyncio.sleep(0)  # the first write has begun
    assert commit._writer is not None
    commit._writer.cancel()  # the hub stops
    await asyncio.sleep(0.05)
    assert all(f.cancelled() for f in futures)
