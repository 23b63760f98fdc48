"""In-process event bus: every update transition, device and package change.

Two ways to listen:

* ``subscribe(handler, *types)``: an async callback awaited in publish order,
  right after the change is committed. Dialect drivers use this to push an
  update to a device as soon as it is created or canceled.
* ``listen(*types)``: a bounded queue for live views (SSE, dashboards). A slow
  listener loses its oldest events rather than slowing the hub down.

A failing handler is logged and never breaks other handlers; its error goes
back to the publisher, which decides what it means (a driver that cannot start
an update fails that update at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from otahub.hub.services.views import (
    DeviceView,
    GroupView,
    PackageView,
    TransitionView,
    UpdateView,
)

log = logging.getLogger("otahub.hub.events")


@dataclass(frozen=True, slots=True)
class UpdateCreated:
    update: UpdateView


@dataclass(frozen=True, slots=True)
class UpdateTransitioned:
    """A state change, or a progress report within the same state."""

    update: UpdateView
    transition: TransitionView

    @property
    def canceled(self) -> bool:
        return self.transition.to_state == "canceled"


@dataclass(frozen=True, slots=True)
class DeviceCreated:
    device: DeviceView


@dataclass(frozen=True, slots=True)
class DeviceReported:
    """A device said what it runs, or came online or went offline."""

    device: DeviceView


@dataclass(frozen=True, slots=True)
class DeviceDeleted:
    device: DeviceView


@dataclass(frozen=True, slots=True)
class DeviceCredentialsChanged:
    """A thin-edge or legacy device's password was set, changed or removed."""

    device: DeviceView


@dataclass(frozen=True, slots=True)
class PackageCreated:
    package: PackageView


@dataclass(frozen=True, slots=True)
class PackageDeleted:
    package: PackageView


@dataclass(frozen=True, slots=True)
class GroupCreated:
    group: GroupView


@dataclass(frozen=True, slots=True)
class GroupDeleted:
    group: GroupView


Event = (
    UpdateCreated
    | UpdateTransitioned
    | DeviceCreated
    | DeviceReported
    | DeviceDeleted
    | DeviceCredentialsChanged
    | PackageCreated
    | PackageDeleted
    | GroupCreated
    | GroupDeleted
)
Handler = Callable[[Event], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class HandlerFailure:
    """A subscriber that raised while handling an event."""

    handler: Handler
    error: Exception

    def describe(self) -> str:
        return f"{type(self.error).__name__}: {self.error}"


class EventBus:
    def __init__(self) -> None:
        self._handlers: list[tuple[Handler, tuple[type, ...]]] = []
        self._queues: list[tuple[asyncio.Queue[Event], tuple[type, ...]]] = []

    def subscribe(self, handler: Handler, *types: type) -> Callable[[], None]:
        """Call ``handler`` for each event of ``types`` (all when none); returns an unsubscribe."""
        entry = (handler, types)
        self._handlers.append(entry)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._handlers.remove(entry)

        return unsubscribe

    @contextlib.asynccontextmanager
    async def listen(
        self, *types: type, maxsize: int = 1000
    ) -> AsyncIterator[asyncio.Queue[Event]]:
        queue: asyncio.Queue[Event] = asyncio.Queue(maxsize)
        entry = (queue, types)
        self._queues.append(entry)
        try:
            yield queue
        finally:
            with contextlib.suppress(ValueError):
                self._queues.remove(entry)

    async def publish(self, event: Event) -> list[HandlerFailure]:
        """Hand ``event`` to every subscriber; returns the failures of those that raised."""
        failures: list[HandlerFailure] = []
        for handler, types in list(self._handlers):
            if types and not isinstance(event, types):
                continue
            try:
                await handler(event)
            except Exception as exc:
                log.exception("event handler %r failed on %s", handler, type(event).__name__)
                failures.append(HandlerFailure(handler, exc))
        for queue, types in list(self._queues):
            if types and not isinstance(event, types):
                continue
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait(event)
        return failures
