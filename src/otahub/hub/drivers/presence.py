"""Which devices are online, counted from every live sign a driver can attribute.

A device may have several signs of life at once: two MQTT sessions with the
same ThingsBoard token, or a thin-edge child's session and its agent's
health status. The device is online while any of them lives, so one ending
never hides another. Each change writes the registry's ``online`` and
``last_seen`` from the count *at the time of writing*, one write at a time
per device, so the last write always says how things are now, whatever order
the connect and disconnect callbacks ran in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Hashable
from typing import Generic, TypeVar

from otahub.hub.services.devices import DeviceService
from otahub.hub.services.errors import NotFound

log = logging.getLogger("otahub.hub.drivers")

# what a driver counts as a sign of life: a session, or a status it reads
Sign = TypeVar("Sign", bound=Hashable)


class _Writes:
    """A device's write lock and how many writes hold or wait for it."""

    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


class Presence(Generic[Sign]):
    def __init__(self, devices: DeviceService, dialect: str) -> None:
        self.devices = devices
        self.dialect = dialect
        # Kept small: there is an entry per connected device. Device -> its live
        # signs in the order they appeared (nearly always one: a tuple, not a dict)
        self._signs: dict[str, tuple[Sign, ...]] = {}
        # device -> its writes' lock, dropped when no write holds or waits for it,
        # so an idle device has none
        self._locks: dict[str, _Writes] = {}
        # a sign that stands for devices (a session waiting for its own commands,
        # or a gateway's children's) -> those devices
        self._devices_of: dict[Sign, str | set[str]] = {}

    def signs(self, device: str) -> list[Sign]:
        """The device's live signs, oldest first."""
        return list(self._signs.get(device, ()))

    def is_online(self, device: str) -> bool:
        return bool(self._signs.get(device))

    async def reset(self) -> None:
        """At start nothing is live yet: a crash may have left devices marked online."""
        for device in await self.devices.list(dialect=self.dialect):
            if device.online and not self.is_online(device.name):
                await self.write(device.name)

    async def add(self, device: str, sign: Sign) -> None:
        signs = self._signs.get(device, ())
        if sign in signs:
            return
        self._signs[device] = (*signs, sign)
        await self.write(device)

    async def remove(self, device: str, sign: Sign) -> None:
        signs = self._signs.get(device)
        if signs is None or sign not in signs:
            return
        left = tuple(s for s in signs if s != sign)
        if left:
            self._signs[device] = left
        else:
            del self._signs[device]
        await self.write(device)

    async def add_for(self, device: str, sign: Sign) -> None:
        """Like :meth:`add`, remembering the device under ``sign`` for :meth:`ended`."""
        known = self._devices_of.get(sign)
        if known is None:
            self._devices_of[sign] = device
        elif isinstance(known, str):
            if known != device:
                self._devices_of[sign] = {known, device}
        else:
            known.add(device)
        await self.add(device, sign)

    def ended(self, sign: Sign) -> Awaitable[None] | None:
        """``sign`` (a session) ended: every device added for it loses it."""
        devices = self._devices_of.pop(sign, None)
        if not devices:
            return None
        return self._remove_from({devices} if isinstance(devices, str) else devices, sign)

    async def _remove_from(self, devices: set[str], sign: Sign) -> None:
        for device in devices:
            await self.remove(device, sign)

    def forget(self, device: str) -> None:
        """The device was deleted."""
        self._signs.pop(device, None)
        self._locks.pop(device, None)

    async def write(self, device: str) -> None:
        """Write the device's state now (e.g. once it is registered)."""
        writes = self._locks.get(device)
        if writes is None:
            writes = self._locks[device] = _Writes()
        writes.users += 1
        try:
            async with writes.lock:
                with contextlib.suppress(NotFound):  # not (or no longer) registered
                    await self.devices.report(device, online=self.is_online(device))
        finally:
            writes.users -= 1
            if not writes.users and self._locks.get(device) is writes:
                del self._locks[device]
