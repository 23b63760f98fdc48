"""One record per connected EnOS device.

Work for a device - its messages and its pushes - runs in line with its
session's messages (``Client.run_in_order``): the endpoint
runs one session's driver code one call after another, so a fast
``progress 100`` and ``inform`` pair is applied in the order it came.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial

from otahub.hub.drivers.enos.auth import EnosPeer
from otahub.mqtt import Client

log = logging.getLogger("otahub.hub.enos")


class PushCheck:
    """Work item: see whether the device has an upgrade to be pushed now."""


WorkItem = PushCheck
Worker = Callable[["Link", WorkItem], Awaitable[None]]


@dataclass(eq=False)
class Link:
    """What the driver keeps for one connection of one EnOS device."""

    session: Client
    peer: EnosPeer
    work: Worker
    # set once the device informed its version on this connection, or after the grace period
    ready: bool = False
    # updates whose upgrade went out on this connection (pushed at most once per connection)
    pushed: set[int] = field(default_factory=set)
    grace: asyncio.Task[None] | None = None
    online: asyncio.Task[None] | None = None  # recording that it connected

    @property
    def device(self) -> str:
        return self.peer.device

    def submit(self, item: WorkItem) -> None:
        """Do ``item`` after what the device sent so far."""
        self.session.run_in_order(partial(self.work, self, item))


class LinkTable:
    """Live links by session and by device."""

    def __init__(self, work: Worker) -> None:
        self._work = work
        self._by_session: dict[Client, Link] = {}
        self._by_device: dict[str, Link] = {}

    def for_session(self, session: Client) -> Link | None:
        return self._by_session.get(session)

    def for_device(self, device: str) -> Link | None:
        return self._by_device.get(device)

    def open(self, session: Client, peer: EnosPeer) -> tuple[Link, Link | None]:
        """Start a link; returns it and another live link of the same device, if any."""
        if session in self._by_session:  # the same client id connected again
            self.close(session)
        link = Link(session, peer, self._work)
        self._by_session[session] = link
        previous = self._by_device.get(peer.device)
        self._by_device[peer.device] = link
        return link, previous

    def close(self, session: Client) -> Link | None:
        """Stop taking work for a session; work already submitted is still done."""
        link = self._by_session.pop(session, None)
        if link is None:
            return None
        if self._by_device.get(link.device) is link:
            del self._by_device[link.device]
        if link.grace is not None:
            link.grace.cancel()
        return link

    def close_link(self, link: Link) -> bool:
        """Close ``link`` if it is still its session's; whether it was."""
        if self._by_session.get(link.session) is not link:
            return False
        self.close(link.session)
        return True

    def is_current(self, link: Link) -> bool:
        return self._by_device.get(link.device) is link

    async def stop(self) -> None:
        tasks = []
        for link in list(self._by_session.values()):
            if link.grace is not None:
                link.grace.cancel()
                tasks.append(link.grace)
        self._by_session.clear()
        self._by_device.clear()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
