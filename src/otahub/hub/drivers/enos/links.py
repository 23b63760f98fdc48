"""One record per connected EnOS device, with an ordered work queue.

The endpoint runs an async interception handler as a task per PUBLISH, so two
messages of one device could otherwise be handled interleaved (a fast
``progress 100`` and ``inform`` pair must not be applied in the wrong order).
Every piece of work for a device - its messages, its pushes, its online state -
goes through that device's queue and is done by one worker, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from otahub.hub.drivers.enos.auth import EnosPeer
from otahub.mqtt.packets import Publish
from otahub.mqtt.session import Session

log = logging.getLogger("otahub.hub.enos")

#: Messages waiting per device before new ones are dropped (a flooding device
#: must not grow the hub's memory without bound).
QUEUE_LIMIT = 256


class PushCheck:
    """Work item: see whether the device has an upgrade to be pushed now."""


class Online:
    """Work item: record that the device connected."""


WorkItem = Publish | PushCheck | Online
Worker = Callable[["Link", WorkItem], Awaitable[None]]


@dataclass(eq=False)
class Link:
    """What the driver keeps for one connection of one EnOS device."""

    session: Session
    peer: EnosPeer
    # set once the device informed its version on this connection, or after the grace period
    ready: bool = False
    # updates whose upgrade went out on this connection (pushed at most once per connection)
    pushed: set[int] = field(default_factory=set)
    queue: asyncio.Queue[WorkItem | None] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None
    grace: asyncio.Task[None] | None = None

    @property
    def device(self) -> str:
        return self.peer.device

    def submit(self, item: WorkItem) -> bool:
        if self.queue.qsize() >= QUEUE_LIMIT:
            log.warning(
                "EnOS device %r: %d messages waiting, dropped %s",
                self.device,
                QUEUE_LIMIT,
                item.topic if isinstance(item, Publish) else type(item).__name__,
            )
            return False
        self.queue.put_nowait(item)
        return True


class LinkTable:
    """Live links by session and by device; runs one worker per link."""

    def __init__(self, work: Worker) -> None:
        self._work = work
        self._by_session: dict[Session, Link] = {}
        self._by_device: dict[str, Link] = {}

    def for_session(self, session: Session) -> Link | None:
        return self._by_session.get(session)

    def for_device(self, device: str) -> Link | None:
        return self._by_device.get(device)

    def open(self, session: Session, peer: EnosPeer) -> tuple[Link, Link | None]:
        """Start a link; returns it and another live link of the same device, if any."""
        if session in self._by_session:  # the same client id connected again
            self.close(session)
        link = Link(session, peer)
        link.task = asyncio.get_running_loop().create_task(
            self._run(link), name=f"enos:{peer.device}"
        )
        self._by_session[session] = link
        previous = self._by_device.get(peer.device)
        self._by_device[peer.device] = link
        return link, previous

    def close(self, session: Session) -> Link | None:
        """Stop taking work for a session; queued work is still done."""
        link = self._by_session.pop(session, None)
        if link is None:
            return None
        if self._by_device.get(link.device) is link:
            del self._by_device[link.device]
        if link.grace is not None:
            link.grace.cancel()
        link.queue.put_nowait(None)  # the worker ends after the queued work
        return link

    def is_current(self, link: Link) -> bool:
        return self._by_device.get(link.device) is link

    async def _run(self, link: Link) -> None:
        while True:
            item = await link.queue.get()
            if item is None:
                return
            try:
                await self._work(link, item)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("EnOS device %r: handling %r failed", link.device, item)

    async def stop(self) -> None:
        tasks = []
        for link in list(self._by_session.values()):
            for task in (link.grace, link.task):
                if task is not None:
                    task.cancel()
                    tasks.append(task)
        self._by_session.clear()
        self._by_device.clear()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
