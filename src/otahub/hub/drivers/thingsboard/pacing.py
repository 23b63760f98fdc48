"""The paced queue between QUEUED and INITIATED.

ThingsBoard releases assignment notifications through a queue at
``pack-size`` devices per ``pack-interval`` (100 per 60 s by default). Here
the rate is ``--notify-rate`` devices per second, released in packs of about
a tenth of a second's worth, so a lone assignment goes out at once. A
release that raises is handed to ``failed`` (the update cannot start).
With ``release_many`` a pack is released at once (its errors by update id;
if it raises as a whole, the pack is released one by one).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable

from otahub.hub.supervision import Supervisor

log = logging.getLogger("otahub.hub.thingsboard")


class Pacer:
    def __init__(
        self,
        rate: float,
        release: Callable[[int], Awaitable[None]],
        failed: Callable[[int, str], Awaitable[object]],
        release_many: Callable[[list[int]], Awaitable[dict[int, Exception]]] | None = None,
    ) -> None:
        if rate <= 0:
            raise ValueError("the notification rate must be positive")
        self.pack = max(1, math.ceil(rate / 10))
        self.interval = self.pack / rate
        self._release = release
        self._failed = failed
        self._release_many = release_many
        self._queue: asyncio.Queue[int] = asyncio.Queue()
        self._queued: set[int] = set()
        self._task: asyncio.Task[None] | None = None

    def put(self, update_id: int) -> None:
        if update_id not in self._queued:
            self._queued.add(update_id)
            self._queue.put_nowait(update_id)

    def start(self, parts: Supervisor) -> None:
        self._task = parts.start("thingsboard notifications", self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            pack = [await self._queue.get()]
            while len(pack) < self.pack and not self._queue.empty():
                pack.append(self._queue.get_nowait())
            began = time.monotonic()
            self._queued.difference_update(pack)
            for update_id, result in (await self._released(pack)).items():
                if isinstance(result, Exception):
                    log.error("notifying update %d failed: %r", update_id, result)
                    try:
                        await self._failed(update_id, f"{type(result).__name__}: {result}")
                    except Exception:
                        log.exception("update %d: cannot record that it failed", update_id)
            await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - began)))

    async def _released(self, pack: list[int]) -> dict[int, object]:
        """Release ``pack``: what each release gave, an exception if it raised."""
        if self._release_many is not None:
            try:
                return dict(await self._release_many(pack))
            except Exception:
                log.exception("releasing %d notifications at once failed; one by one", len(pack))
        results = await asyncio.gather(
            *(self._release(update_id) for update_id in pack), return_exceptions=True
        )
        return dict(zip(pack, results, strict=True))
