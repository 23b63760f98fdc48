"""The hub's long-running parts, watched: the first one to die stops the hub.

A part is a task that should run as long as the hub does (the HTTP server,
the data dir watch, the timeout sweeper, ...). One that raises, is cancelled
by someone else, or returns while the hub runs has died; the supervisor logs
one line naming it and why, and the hub shuts down and exits non-zero, so a
service manager restarts it instead of leaving a hub that half works.

One-shot parts (``forever=False``) may return; only an error kills the hub.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

log = logging.getLogger("otahub.hub")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PartFailure:
    name: str
    why: str  # "raised OSError: ...", "was cancelled", "ended"
    error: BaseException | None = None


class HubPartFailed(Exception):
    """The hub stopped because one of its parts died."""

    def __init__(self, failure: PartFailure) -> None:
        super().__init__(f"{failure.name} {failure.why}")
        self.failure = failure


class Supervisor:
    def __init__(self) -> None:
        self.failure: PartFailure | None = None
        self._failed = asyncio.Event()
        self._stopping = False
        self._parts: dict[asyncio.Task[Any], tuple[str, bool]] = {}

    def start(
        self, name: str, coro: Coroutine[Any, Any, T], *, forever: bool = True
    ) -> asyncio.Task[T]:
        """Run ``coro`` as the part ``name``; ``forever``: returning counts as dying."""
        return self.adopt(name, asyncio.get_running_loop().create_task(coro, name=name), forever)

    def adopt(self, name: str, task: asyncio.Task[T], forever: bool = True) -> asyncio.Task[T]:
        """Watch a running ``task`` as the part ``name`` from now on."""
        self._parts[task] = (name, forever)
        task.add_done_callback(self._ended)
        return task

    def stopping(self) -> None:
        """The hub shuts down: parts that end from now on were told to."""
        self._stopping = True

    @property
    def is_stopping(self) -> bool:
        return self._stopping

    async def wait(self, stop: asyncio.Event) -> None:
        """Until ``stop`` is set or a part dies."""
        waiters = {
            asyncio.ensure_future(stop.wait()),
            asyncio.ensure_future(self._failed.wait()),
        }
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    def check(self) -> None:
        """Raise :class:`HubPartFailed` if a part died."""
        if self.failure is not None:
            raise HubPartFailed(self.failure)

    def _ended(self, task: asyncio.Task[Any]) -> None:
        name, forever = self._parts.pop(task)
        if self._stopping:
            return
        error: BaseException | None = None
        if task.cancelled():
            why = "was cancelled"
        elif (error := task.exception()) is not None:
            why = f"raised {type(error).__name__}: {error}"
        elif forever:
            why = "ended"
        else:
            return
        self.died(name, why, error)

    def died(self, name: str, why: str, error: BaseException | None = None) -> None:
        """Record that the part ``name`` died (the first death is what the hub reports)."""
        if self.failure is not None or self._stopping:
            return
        self.failure = PartFailure(name, why, error)
        log.error(
            "hub part %r %s; stopping the hub",
            name,
            why,
            # what the environment did (OSError) needs no traceback; a bug does
            exc_info=None
            if error is None or isinstance(error, OSError)
            else (type(error), error, error.__traceback__),
        )
        self._failed.set()
