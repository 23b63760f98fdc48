"""Moving updates along from the driver: transitions and download progress."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from otahub.hub.core import HubCore
from otahub.hub.services.errors import Conflict, NotFound
from otahub.hub.services.views import UpdateView
from otahub.protocols.states import UpdateState

log = logging.getLogger("otahub.hub.thingsboard")

SOURCE = "driver:thingsboard"


async def advance(
    core: HubCore,
    update_id: int,
    state: UpdateState,
    *,
    progress: int | None = None,
    reason: str | None = None,
    code: str | None = None,
) -> UpdateView | None:
    """Move an update forward; a report behind its state (or after its end) is ignored."""
    try:
        return await core.updates.transition(
            update_id, state, progress=progress, reason=reason, code=code, source=SOURCE
        )
    except Conflict as exc:
        log.debug("update %d: %s", update_id, exc)
    except NotFound:
        pass
    return None


class DriverStates:
    """Merging edits of ``Update.driver_state`` (one transaction each)."""

    def __init__(self, core: HubCore, saw: Callable[[UpdateView], None]) -> None:
        self.core = core
        self._saw = saw

    async def merge(
        self, update_id: int, values: dict[str, Any], *, claimed_by: str | None = None
    ) -> None:
        """``claimed_by``: only while that hub holds the update's claim, else ClaimLost."""
        with contextlib.suppress(NotFound):
            self._saw(
                await self.core.updates.merge_driver_state(update_id, values, claimed_by=claimed_by)
            )

    async def merge_many(
        self, values: dict[int, dict[str, Any]], *, claimed_by: str
    ) -> builtins.list[UpdateView]:
        """``merge`` for many updates in one transaction: those written (the others'
        claim was lost, or they were deleted)."""
        written = await self.core.updates.set_driver_states(
            values, claimed_by=claimed_by, merge=True
        )
        for view in written:
            self._saw(view)
        return written


class DownloadProgress:
    """Byte progress from chunk requests, written at most once per 10 % step
    and, after the first (the move to ``downloading``), at most once per
    ``interval_s`` per update.

    Chunk replies never wait for the database: the writes run behind them,
    one at a time per update, coalesced to the latest percentage. Progress is
    no state change (it has no audit row), so a percentage that waits and is
    then overtaken by the device's next state is simply not written.
    """

    STEP = 10
    INTERVAL_S = 1.0

    def __init__(self, core: HubCore, interval_s: float = INTERVAL_S) -> None:
        self.core = core
        self.interval_s = interval_s
        self._last: dict[int, int] = {}
        self._pending: dict[int, int] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}

    def note(self, update_id: int, end: int, size: int) -> None:
        percent = 100 if size <= 0 else min(100, end * 100 // size)
        last = self._last.get(update_id)
        if last is not None and percent < last + self.STEP and not (percent == 100 > last):
            return
        self._last[update_id] = percent
        self._pending[update_id] = percent
        if update_id not in self._tasks:
            self._tasks[update_id] = asyncio.create_task(self._write(update_id))

    async def _write(self, update_id: int) -> None:
        try:
            while update_id in self._pending:
                percent = self._pending.pop(update_id)
                view = await advance(
                    self.core, update_id, UpdateState.DOWNLOADING, progress=percent
                )
                if view is None or view.state != UpdateState.DOWNLOADING:
                    self._pending.pop(update_id, None)
                elif update_id in self._pending or percent < 100:
                    # what arrives meanwhile is written once, with the latest percentage
                    await asyncio.sleep(self.interval_s)
        except Exception:
            log.exception("recording download progress of update %d failed", update_id)
        finally:
            self._tasks.pop(update_id, None)

    def forget(self, update_id: int) -> None:
        self._last.pop(update_id, None)

    async def stop(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()
        self._tasks.clear()
