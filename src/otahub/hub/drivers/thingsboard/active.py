"""The active update of each device and kind, as the driver last saw it.

Telemetry, attribute requests and first chunk requests all ask which
update a device runs; asking the database each time was a read transaction
per message. Every change of a ThingsBoard update in this hub is announced
on the bus (created, transitioned) or made by the driver itself (driver
state), and each refreshes the entry, so an entry is right until another
hub instance changes the update; entries older than ``TTL_S`` without such
news are read again. A stale entry cannot move an update wrongly: the
transition itself checks the stored state.
"""

from __future__ import annotations

import time

from otahub.hub.services.updates import UpdateService
from otahub.hub.services.views import UpdateView
from otahub.protocols.states import TERMINAL_STATES, UpdateState

TTL_S = 30.0


class ActiveUpdates:
    def __init__(self, updates: UpdateService, ttl_s: float = TTL_S) -> None:
        self.updates = updates
        self.ttl_s = ttl_s
        # (device, kind) -> (its active update or None, when known)
        self._known: dict[tuple[str, str], tuple[UpdateView | None, float]] = {}
        # bumped by every change seen, so a read that raced with one is not kept
        self._changes: dict[tuple[str, str], int] = {}

    async def get(self, device: str, kind: str) -> UpdateView | None:
        key = (device, kind)
        known = self._known.get(key)
        if known is not None and time.monotonic() - known[1] < self.ttl_s:
            return known[0]
        before = self._changes.get(key, 0)
        view = await self.updates.active_for(device, kind)
        if self._changes.get(key, 0) == before:
            self._known[key] = (view, time.monotonic())
        return view

    def saw(self, view: UpdateView) -> None:
        """An update changed (its view after the change)."""
        key = (view.device, view.kind)
        self._changes[key] = self._changes.get(key, 0) + 1
        known = self._known.get(key)
        current = None if known is None else known[0]
        if UpdateState(view.state) in TERMINAL_STATES:
            if current is None or current.id == view.id:
                self._known[key] = (None, time.monotonic())
            return
        if current is not None and current.id == view.id and current.updated_at > view.updated_at:
            return  # an older announcement that arrived late
        self._known[key] = (view, time.monotonic())

    def forget(self, device: str) -> None:
        for key in [k for k in self._known if k[0] == device]:
            del self._known[key]
            self._changes.pop(key, None)
