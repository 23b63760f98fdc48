"""Writing many small changes in few transactions.

``GroupCommit``: each change waits for the commit that holds it, and every
change that arrives while one batch is being written goes into the next, so
a burst of N changes costs a few transactions, not N, and nobody is told
"stored" before it is.

``Debounced``: changes that may wait (last-seen times, the latest
telemetry) are stored together at most once per interval; a failed store
is retried one interval later.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

# Writes a batch in one transaction: one outcome per item, in order (a result,
# or the exception refusing that item alone). Raising fails the whole batch.
BatchWriter = Callable[[list[T]], Awaitable[list["R | Exception"]]]


class GroupCommit(Generic[T, R]):
    def __init__(
        self,
        write: BatchWriter[T, R],
        what: str,
        log: logging.Logger,
        *,
        max_batch: int | None = None,
    ) -> None:
        self._write = write
        self._max_batch = max_batch
        self._what = what
        self._log = log
        self._queued: list[tuple[T, asyncio.Future[R]]] = []
        self._writer: asyncio.Task[None] | None = None

    def submit(self, item: T) -> asyncio.Future[R]:
        """Queue ``item``; the future completes once its batch is committed."""
        done: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queued.append((item, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._run())
        return done

    async def _run(self) -> None:
        batch: list[tuple[T, asyncio.Future[R]]] = []
        try:
            while self._queued:
                cut = len(self._queued) if self._max_batch is None else self._max_batch
                batch, self._queued = self._queued[:cut], self._queued[cut:]
                await self._write_batch(batch)
        finally:
            # cancelled (the hub stops): nobody waits for a write that will not come
            for _, done in [*batch, *self._queued]:
                if not done.done():
                    done.cancel()
            self._queued.clear()

    async def _write_batch(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            await self._settle(batch)
        except Exception as exc:
            if len(batch) == 1:
                _fail(batch[0][1], exc)
                return
            # one bad item must not fail the others: each alone, in order
            self._log.warning(
                "group commit of %d %s failed (%s); one by one", len(batch), self._what, exc
            )
            for pair in batch:
                try:
                    await self._settle([pair])
                except Exception as alone:
                    _fail(pair[1], alone)

    async def _settle(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        outcomes = await self._write([item for item, _ in batch])
        for (_, done), outcome in zip(batch, outcomes, strict=True):
            if done.done():
                continue
            if isinstance(outcome, Exception):
                done.set_exception(outcome)
            else:
                done.set_result(outcome)


def _fail(done: asyncio.Future[R], exc: Exception) -> None:
    if not done.done():
        done.set_exception(exc)


class Debounced:
    """Calls ``flush`` once, ``delay_s`` after the first ``touch`` since the last call."""

    def __init__(
        self, flush: Callable[[], Awaitable[None]], delay_s: float, what: str, log: logging.Logger
    ) -> None:
        self._flush = flush
        self.delay_s = delay_s
        self._what = what
        self._log = log
        self._timer: asyncio.Task[None] | None = None

    def touch(self) -> None:
        """Something is waiting to be stored: store it within ``delay_s``."""
        if self._timer is None or self._timer.done():
            self._timer = asyncio.get_running_loop().create_task(self._later())

    async def _later(self) -> None:
        await asyncio.sleep(self.delay_s)
        self._timer = None  # what arrives from now on is taken by the next call
        try:
            await self._flush()
        except Exception:
            # the flush keeps what it could not store; it is tried again
            self._log.exception("storing %s failed; retrying", self._what)
            self.touch()

    async def close(self) -> None:
        """Stop the timer and store what waits now."""
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
            self._timer = None
        await self._flush()
