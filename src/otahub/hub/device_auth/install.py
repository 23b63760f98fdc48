"""Wiring the device authentication and topic rules into the hub's endpoint."""

from __future__ import annotations

from collections.abc import Callable

from otahub.hub.core import HubCore
from otahub.hub.device_auth.acl import AnonymousAcl
from otahub.hub.device_auth.authenticator import DevicePasswordAuthenticator
from otahub.hub.device_auth.directory import DeviceDirectory
from otahub.hub.services.events import DeviceCreated, DeviceDeleted
from otahub.mqtt.hooks import Acl, ConnectInfo
from otahub.mqtt.server import MQTTServer


async def install_device_auth(core: HubCore, mqtt: MQTTServer) -> Callable[[], None]:
    """Before the drivers' own authenticators: a device name as user name is ours.

    Returns a function that stops following the registry.
    """
    directory = DeviceDirectory()
    unsubscribe = core.bus.subscribe(directory.on_event, DeviceCreated, DeviceDeleted)
    await directory.load(core.devices)
    mqtt.add_authenticator(DevicePasswordAuthenticator(core.devices))

    def anonymous_acl(info: ConnectInfo, trusted: bool) -> Acl:
        return AnonymousAcl(directory, trusted)

    mqtt.set_anonymous_policy(anonymous_acl)
    return unsubscribe
