"""Stopping a running hub in order, within a bound.

The order matters: work still in flight for devices (a mass disconnect
writes every device's ``online`` flag) needs the database, so the database
closes last. Closing it first left such tasks waiting for a connection
whose worker thread had ended, and the process never exited.

1. Stop taking work: the HTTP server stops accepting, the MQTT endpoint
   closes its listeners and connections.
2. Drain the device tasks (disconnect hooks and the like) for half the
   bound, then cancel what still runs and give the cancellations time to
   roll back their database work.
3. Stop the drivers and the transport, then the HTTP server.
4. Stop the core: the timeout sweeper, then the database.
5. Cancel whatever task of the hub is left.

Each step waits at most for what is left of the bound; whatever it cuts
short gets a log line, and the hub goes on stopping.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterable
from typing import Any, Protocol

from otahub.hub.core import HubCore
from otahub.hub.drivers.base import Driver
from otahub.hub.settings import DEFAULT_SHUTDOWN_TIMEOUT_S
from otahub.hub.transport import MessageTransport
from otahub.mqtt import MQTTServer

log = logging.getLogger("otahub.hub")

# Shares of the bound for draining device tasks, and for their cancellation.
_DRAIN_SHARE = 0.5
_CANCEL_SHARE = 0.2


class HttpServer(Protocol):
    should_exit: bool


class Shutdown:
    def __init__(
        self, timeout_s: float = DEFAULT_SHUTDOWN_TIMEOUT_S, *, outside: set[asyncio.Task[Any]]
    ) -> None:
        """``outside``: the tasks that ran before the hub started (the caller's), left alone."""
        if timeout_s <= 0:
            raise ValueError("the shutdown timeout must be positive")
        self.timeout_s = timeout_s
        self._outside = outside
        self.cut_short: list[str] = []
        self._deadline = 0.0

    async def run(
        self,
        core: HubCore,
        mqtt: MQTTServer,
        transport: MessageTransport,
        drivers: list[Driver],
        http: HttpServer | None,
        http_task: asyncio.Task[None] | None,
    ) -> None:
        loop = asyncio.get_running_loop()
        self._deadline = loop.time() + self.timeout_s
        core.parts.stopping()
        log.info("otahub stopping (within %g s)", self.timeout_s)

        if http is not None:
            http.should_exit = True
        drain_s = self.timeout_s * _DRAIN_SHARE
        cancelled = await mqtt.close(drain_timeout=drain_s)
        if cancelled:
            self._cut(
                f"{len(cancelled)} device task(s) still running after {drain_s:g} s were cancelled"
            )
            await self._wait(cancelled, "cancelled device tasks", self.timeout_s * _CANCEL_SHARE)

        # the reports devices were told are stored, applied while the drivers still run
        await self._bounded("applying the ingest journal", core.ingest.close())
        for driver in reversed(drivers):
            await self._bounded(f"stopping the {driver.dialect} driver", driver.stop())
        await self._bounded("closing the message transport", transport.close())
        if http_task is not None:
            await self._wait([http_task], "the HTTP server")

        await self._bounded("closing the database", core.close())

        rest = [t for t in asyncio.all_tasks() if t not in self._outside and not t.done()]
        for task in rest:
            task.cancel()
        if rest:
            await self._wait(rest, "remaining tasks")
        log.info("otahub stopped")

    def _left(self) -> float:
        return max(0.0, self._deadline - asyncio.get_running_loop().time())

    def _cut(self, what: str) -> None:
        self.cut_short.append(what)
        log.warning("shutdown cut short: %s", what)

    async def _bounded(self, what: str, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` for what is left of the bound; cancel it past that."""
        task = asyncio.get_running_loop().create_task(work, name=what)
        done, _ = await asyncio.wait({task}, timeout=self._left())
        if not done:
            task.cancel()
            self._cut(f"{what} took longer than the shutdown allows")
            await asyncio.wait({task}, timeout=self._left())
            return
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("%s failed", what, exc_info=(type(error), error, error.__traceback__))

    async def _wait(
        self, tasks: Iterable[asyncio.Task[Any]], what: str, limit: float | None = None
    ) -> bool:
        """Wait for ``tasks`` to end (at most ``limit`` s); False, logged, if some did not."""
        left = self._left() if limit is None else min(limit, self._left())
        pending = {t for t in tasks if not t.done()}
        if pending:
            _, pending = await asyncio.wait(pending, timeout=left)
        for task in pending:
            task.cancel()
        if pending:
            names = sorted({t.get_name() for t in pending})
            self._cut(
                f"{what}: {len(pending)} did not end in time ("
                + ", ".join(names[:5])
                + (", ..." if len(names) > 5 else "")
                + ")"
            )
        return not pending
