"""Which devices exist and which log in with a password, kept in memory.

ACLs are consulted for every PUBLISH and must answer at once: they read this
index, which follows the registry through the event bus.
"""

from __future__ import annotations

from otahub.hub.services.devices import DeviceService
from otahub.hub.services.events import (
    DeviceCreated,
    DeviceCredentialsChanged,
    DeviceDeleted,
    Event,
)
from otahub.hub.services.views import DeviceView


class DeviceDirectory:
    def __init__(self) -> None:
        self._dialects: dict[str, str] = {}
        self._with_password: set[str] = set()

    async def load(self, devices: DeviceService) -> None:
        for device in await devices.list():
            self._put(device)

    def _put(self, device: DeviceView) -> None:
        self._dialects[device.name] = device.dialect
        if device.has_password:
            self._with_password.add(device.name)
        else:
            self._with_password.discard(device.name)

    async def on_event(self, event: Event) -> None:
        if isinstance(event, DeviceCreated | DeviceCredentialsChanged):
            self._put(event.device)
        elif isinstance(event, DeviceDeleted):
            self._dialects.pop(event.device.name, None)
            self._with_password.discard(event.device.name)

    def exists(self, name: str) -> bool:
        return name in self._dialects

    def has_password(self, name: str) -> bool:
        return name in self._with_password
