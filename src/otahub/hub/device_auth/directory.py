"""Which devices exist, which log in with credentials (a password or a client
certificate) and which gateway owns which child, kept in memory.

ACLs are consulted for every PUBLISH and must answer at once: they read this
index, which follows the registry through the event bus.
"""

from __future__ import annotations

import logging

from otahub.hub.services.devices import DeviceService
from otahub.hub.services.events import (
    DeviceCreated,
    DeviceCredentialsChanged,
    DeviceDeleted,
    Event,
)
from otahub.hub.services.views import DeviceView

log = logging.getLogger("otahub.hub.device_auth")

#: Claims a gateway may hold on ids that are no device yet; each is a registration
#: in flight, so this bounds what one gateway can make the hub remember.
MAX_PENDING_CLAIMS = 1000


class DeviceDirectory:
    def __init__(self, max_pending_claims: int = MAX_PENDING_CLAIMS) -> None:
        self.max_pending_claims = max_pending_claims
        self._dialects: dict[str, str] = {}
        self._with_credentials: set[str] = set()
        # child -> its gateway: stored, or claimed by the gateway's first use of
        # the child's topics (written to the registry once the child exists)
        self._owners: dict[str, str] = {}
        # gateway -> the ids it claimed that are no device yet
        self._pending: dict[str, set[str]] = {}

    async def load(self, devices: DeviceService) -> None:
        for device in await devices.list():
            self._put(device)

    def _put(self, device: DeviceView) -> None:
        self._dialects[device.name] = device.dialect
        self._settled(device.name)
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
                self._pending.pop(event.device.name, None)
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
        pending = self._pending.setdefault(gateway, set())
        if len(pending) >= self.max_pending_claims:
            log.warning(
                "gateway %r holds %d claims on ids that are no device yet; refusing %r",
                gateway,
                len(pending),
                child,
            )
            return False
        self._owners[child] = gateway
        pending.add(child)
        return True

    def release(self, child: str) -> None:
        """Forget a claim that did not make ``child`` a gateway's child."""
        self._settled(child)
        self._owners.pop(child, None)

    def _settled(self, child: str) -> None:
        """``child`` became a device (or its claim was dropped): no longer pending."""
        gateway = self._owners.get(child)
        if gateway is not None:
            self._pending.get(gateway, set()).discard(child)
