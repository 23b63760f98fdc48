"""What the driver keeps per device in ``Device.dialect_state``.

Layout (all optional)::

    {"shared": {...},            # shared attributes (fw_title, fw_size, ...)
     "client": {...},            # client attributes the device posted
     "telemetry": {...},         # latest OTA telemetry (fw_state, target_fw_*, ...)
     "checksum_algorithm": "MD5",
     "mqtt_basic": {"clientId": ..., "userName": ..., "password": ...}}

Edits are read-modify-write of one JSON document, so they are serialised
per device.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from otahub.hub.services.devices import DeviceService

SHARED = "shared"
CLIENT = "client"
TELEMETRY = "telemetry"
CHECKSUM_ALGORITHM = "checksum_algorithm"
MQTT_BASIC = "mqtt_basic"


class DeviceStates:
    def __init__(self, devices: DeviceService) -> None:
        self.devices = devices
        self._locks: dict[str, asyncio.Lock] = {}

    async def get(self, name: str) -> dict[str, Any]:
        return dict((await self.devices.get(name)).dialect_state)

    @contextlib.asynccontextmanager
    async def edit(self, name: str) -> AsyncIterator[dict[str, Any]]:
        """Yield the device's state; what the block leaves in it is stored."""
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            state = await self.get(name)
            yield state
            await self.devices.set_dialect_state(name, state)

    def forget(self, name: str) -> None:
        self._locks.pop(name, None)


def section(state: dict[str, Any], name: str) -> dict[str, Any]:
    """The sub-object ``name`` of a state, created when missing or malformed."""
    value = state.get(name)
    if not isinstance(value, dict):
        value = {}
        state[name] = value
    return value
