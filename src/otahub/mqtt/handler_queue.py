"""One session's driver code, run one call after another.

Interception handlers and in-process subscribers see a session's messages in
the order the session sent them: while one of its calls is still awaiting,
the next waits in this queue, whereas other sessions' calls run meanwhile.
A call that finishes without awaiting runs at once, as it always did.

The queue is bounded: when it holds ``Limits.max_queued_handlers`` calls, the
endpoint stops reading from the session's socket until half of them are done
(TCP then holds the client back), so a device flooding a slow driver grows
nothing but its own wait.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from otahub.mqtt.server import MQTTServer
    from otahub.mqtt.session import Session

log = logging.getLogger("otahub.mqtt")

# driver code to run: None when it is done, an awaitable when it goes on
Call = Callable[[], "Awaitable[None] | None"]


class HandlerQueue:
    __slots__ = ("_calls", "_paused", "_server", "_session", "_task", "busy")

    def __init__(self, server: MQTTServer, session: Session | None) -> None:
        """``session`` None: calls of the hub's own (retained messages replayed)."""
        self._server = server
        self._session = session
        # made when a call first has to wait: most sessions never need one, and an
        # empty deque is some 600 bytes per idle connection
        self._calls: deque[Call] | None = None
        self._task: asyncio.Task[None] | None = None
        self._paused = False
        # whether a call of this session is still running (later ones wait);
        # an attribute, read for every PUBLISH a driver claims
        self.busy = False

    def __len__(self) -> int:
        calls = self._calls
        return 0 if calls is None else len(calls)

    def run(self, call: Call) -> None:
        """Run ``call`` now if nothing of this session runs, else after what does."""
        if self.busy:
            calls = self._calls
            if calls is None:
                calls = self._calls = deque()
            calls.append(call)
            limit = self._server.config.limits.max_queued_handlers
            if len(calls) >= limit and not self._paused and self._session is not None:
                conn = self._session.connection
                if conn is not None:
                    self._paused = True
                    conn.pause_reading()
            return
        try:
            result = call()
        except Exception:
            log.exception("driver code for %s failed", self._owner())
            return
        if result is not None and inspect.isawaitable(result):
            self.started(result)

    def started(self, pending: Awaitable[None]) -> None:
        """A call made while nothing ran (``busy`` was False) goes on: later calls wait."""
        self.busy = True
        task = self._task = self._server.start_task(self._drain(pending))
        task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        # a task cancelled before it ever ran never reached the ``finally`` below
        if self._task is task:
            self._task = None
            self.busy = False

    async def idle(self) -> None:
        """Return once no call is running or waiting."""
        while True:
            task = self._task
            if task is None:
                return
            await asyncio.wait((task,))

    async def _drain(self, first: Awaitable[None]) -> None:
        try:
            await self._finish(first)
            while calls := self._calls:
                call = calls.popleft()
                if self._paused and len(calls) <= self._resume_at():
                    self._resume()
                try:
                    result = call()
                except Exception:
                    log.exception("driver code for %s failed", self._owner())
                    continue
                if result is not None and inspect.isawaitable(result):
                    await self._finish(result)
        finally:
            self._task = None
            self.busy = False
            if not self._calls:
                self._calls = None
            if self._paused:
                self._resume()

    async def _finish(self, pending: Awaitable[None]) -> None:
        try:
            await pending
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("driver code for %s failed", self._owner())

    def _owner(self) -> str:
        return "the hub" if self._session is None else repr(self._session.client_id)

    def _resume_at(self) -> int:
        return self._server.config.limits.max_queued_handlers // 2

    def _resume(self) -> None:
        self._paused = False
        conn = None if self._session is None else self._session.connection
        if conn is not None:
            conn.resume_reading()
