"""Which devices exist, which log in with credentials (a password or a client
certificate) and which gateway owns which child, kept in memory.

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
        self._with_credentials: set[str] = set()
        # child -> its gateway: stored, or claimed by the gateway's first use of
        # the child's topics (written to the registry once the child exists)
        self._owners: dict[str, str] = {}

    async def load(self, devices: DeviceService) -> None:
        for device in await devices.list():
            self._put(device)

    def _put(self, device: DeviceView) -> None:
        self._dialects[device.name] = device.dialect
        if device.has_password or device.has_certificate:
            self._with_credentials.add(device.name)
        else:
            self._with_credentials.discard(device.name)
        if device.owner is not None:
            self._owners[device.name] = device.owner

    async def on_event(self, event: Event) -> None:
        if isinstance(event, DeviceCreated | DeviceCredentialsChanged):
            self._put(event.device)
        elif isinstance(event, DeviceDeleted):
            self._dialects.pop(event.device.name, None)
            self._with_credentials.discard(event.device.name)
            self._owners.pop(event.device.name, None)
            if event.device.gateway:
                for child in [c for c, g in self._owners.items() if g == event.device.name]:
                    del self._owners[child]

    def exists(self, name: str) -> bool:
        return name in self._dialects

    def has_credentials(self, name: str) -> bool:
        return name in self._with_credentials

    def owner(self, name: str) -> str | None:
        """The gateway ``name`` belongs to (stored or claimed), if any."""
        return self._owners.get(name)

    def claim(self, child: str, gateway: str) -> bool:
        """Whether ``gateway`` may act for ``child``: it is the child's gateway
        already, or ``child`` is no device yet and nobody claimed it (then it
        is ``gateway``'s from now on)."""
        owner = self._owners.get(child)
        if owner is not None:
            return owner == gateway
        if child in self._dialects:
            return False  # registered without a gateway: by itself, an admin or a local connector
        self._owners[child] = gateway
        return True

    def release(self, child: str) -> None:
        """Forget a claim that did not make ``child`` a gateway's child."""
        self._owners.pop(child, None)
