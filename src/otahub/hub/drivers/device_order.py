"""One device's messages in arrival order, when several MQTT clients speak for it.

The endpoint runs one session's handlers in order. A thin-edge device's
topics are written by more than one client, though (its registration by the
main device's mapper or a ``mosquitto_pub``, its twin and health by its own
agent), so the driver keeps their order per device: each message waits for
the device's earlier ones, and other devices never wait.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class DeviceOrder:
    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = {}

    @asynccontextmanager
    async def turn(self, device: str) -> AsyncIterator[None]:
        """Wait for the device's earlier messages (FIFO), then hold its turn.

        Enter it before the first ``await`` of a handler: handlers start in
        the order their messages arrived, so they queue in that order.
        """
        lock = self._locks.get(device)
        if lock is None:
            lock = self._locks[device] = asyncio.Lock()
        self._users[device] = self._users.get(device, 0) + 1
        try:
            async with lock:
                yield
        finally:
            left = self._users[device] - 1
            if left:
                self._users[device] = left
            else:  # nobody waits: forget the device, so the table stays small
                del self._users[device]
                del self._locks[device]
