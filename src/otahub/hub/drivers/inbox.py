"""Handle a driver's MQTT messages one at a time, in the order they arrived.

The hub's endpoint runs each asynchronous subscriber callback as its own task,
so an ``executing`` and the ``successful`` right behind it could otherwise be
handled concurrently and out of order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from otahub.hub.supervision import Supervisor

log = logging.getLogger("otahub.hub.drivers")

Handle = Callable[[str, bytes, bool], Awaitable[None]]


class Inbox:
    def __init__(self, name: str, handle: Handle) -> None:
        self.name = name
        self._handle = handle
        self._queue: asyncio.Queue[tuple[str, bytes, bool]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def put(self, topic: str, payload: bytes, retained: bool) -> None:
        """A transport handler: never blocks, never raises."""
        self._queue.put_nowait((topic, bytes(payload), retained))

    def start(self, parts: Supervisor) -> None:
        self._task = parts.start(f"{self.name} inbox", self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            topic, payload, retained = await self._queue.get()
            try:
                await self._handle(topic, payload, retained)
            except Exception:
                # A bug, not bad input (drivers log and drop that themselves):
                # keep serving the other devices.
                log.exception("%s: handling a message on %s failed", self.name, topic)
