"""Point reads of many callers served by one query each round.

A connect wave asks for hundreds of devices (and their active updates) at
once, each read a session, a statement, a trip to the database's thread
and a result of its own, and each waiting caller holding all of that while
it queues. Batched, the keys asked for while one query runs are read
together by the next (``WHERE key IN (...)``); a waiting caller holds a
future.

A read is never older than its call: a key asked for while a batch runs
waits for the next one, which starts after the call, so it sees every
commit made before the call, as a query of its own would.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

log = logging.getLogger("otahub.hub.services")

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

#: Keys per query: within every database's limit on bound parameters.
MAX_BATCH = 500

Fetch = Callable[[Sequence[K]], Awaitable[dict[K, V]]]


class ReadBatch(Generic[K, V]):
    """``get(key)``: what ``fetch`` found for ``key`` (None: nothing), read in batches."""

    def __init__(self, fetch: Fetch[K, V], max_batch: int = MAX_BATCH) -> None:
        self._fetch = fetch
        self.max_batch = max_batch
        # key -> the futures of its callers waiting for the next batch
        self._waiting: dict[K, list[asyncio.Future[V | None]]] = {}
        self._reader: asyncio.Task[None] | None = None
        self.batches = 0  # queries run (tests and curiosity)

    async def get(self, key: K) -> V | None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[V | None] = loop.create_future()
        self._waiting.setdefault(key, []).append(future)
        if self._reader is None:
            self._reader = loop.create_task(self._read())
        return await future

    async def _read(self) -> None:
        batch: dict[K, list[asyncio.Future[V | None]]] = {}
        try:
            while self._waiting:
                keys = list(self._waiting)[: self.max_batch]
                batch = {key: self._waiting.pop(key) for key in keys}
                self.batches += 1
                try:
                    found = await self._fetch(keys)
                except Exception as exc:
                    for futures in batch.values():
                        for future in futures:
                            if not future.done():
                                future.set_exception(exc)
                    batch = {}
                    continue
                for key, futures in batch.items():
                    value = found.get(key)
                    for future in futures:
                        if not future.done():  # its caller may have been cancelled
                            future.set_result(value)
                batch = {}
        except asyncio.CancelledError:
            # shutting down: nobody is left waiting for a read that will not come
            for futures in [*batch.values(), *self._waiting.values()]:
                for future in futures:
                    future.cancel()
            self._waiting.clear()
            raise
        finally:
            self._reader = None
