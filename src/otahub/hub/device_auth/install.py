"""Wiring the device authentication and topic rules into the hub's endpoint."""

from __future__ import annotations

import logging
from collections.abc import Callable

from otahub.hub.core import HubCore
from otahub.hub.device_auth.acl import AnonymousAcl
from otahub.hub.device_auth.authenticator import DevicePasswordAuthenticator, device_identity
from otahub.hub.device_auth.certificate_check import CertificateCheck
from otahub.hub.device_auth.directory import DeviceDirectory
from otahub.hub.services.devices import GATEWAY_DIALECT, PASSWORD_DIALECTS
from otahub.hub.services.errors import NotFound
from otahub.hub.services.events import DeviceCreated, DeviceCredentialsChanged, DeviceDeleted, Event
from otahub.hub.services.views import DeviceView
from otahub.mqtt import Acl, ConnectInfo, Endpoint, ReasonCode

log = logging.getLogger("otahub.hub.device_auth")


async def install_device_auth(
    core: HubCore, mqtt: Endpoint, certificates: CertificateCheck | None = None
) -> Callable[[], None]:
    """Before the drivers' own authenticators: a device name as user name is ours;
    with ``certificates``, a TLS client certificate names its device.

    Returns a function that stops following the registry.
    """
    directory = DeviceDirectory()

    async def on_event(event: Event) -> None:
        await directory.on_event(event)
        if isinstance(event, DeviceCreated):
            await record_owner(core, directory, event.device)
        if isinstance(event, DeviceCredentialsChanged) or (
            isinstance(event, DeviceDeleted) and event.device.dialect in PASSWORD_DIALECTS
        ):
            # any dialect's credentials may change (a new ThingsBoard token, EnOS secret)
            end_sessions_of(mqtt, event.device.name, event.device.dialect)

    unsubscribe = core.bus.subscribe(
        on_event, DeviceCreated, DeviceCredentialsChanged, DeviceDeleted
    )
    await directory.load(core.devices)
    mqtt.add_authenticator(DevicePasswordAuthenticator(core.devices, directory))
    if certificates is not None:
        # thin-edge and legacy identities come from here, whatever the login
        for dialect in PASSWORD_DIALECTS:
            certificates.dialects[dialect] = lambda device: device_identity(device, directory)
    mqtt.set_certificate_check(certificates)

    def anonymous_acl(info: ConnectInfo, trusted: bool) -> Acl:
        return AnonymousAcl(directory, trusted)

    mqtt.set_anonymous_policy(anonymous_acl)
    return unsubscribe


async def record_owner(core: HubCore, directory: DeviceDirectory, device: DeviceView) -> None:
    """A new device whose topics a gateway used first is that gateway's child."""
    gateway = directory.owner(device.name)
    if gateway is None or device.owner == gateway:
        return
    if device.dialect != GATEWAY_DIALECT or device.has_password or device.has_certificate:
        directory.release(device.name)  # added by hand as another kind of device
        return
    try:
        await core.devices.set_owner(device.name, gateway)
    except NotFound:
        return  # deleted meanwhile
    log.info("device %s belongs to gateway %s", device.name, gateway)


def end_sessions_of(mqtt: Endpoint, device: str, dialect: str) -> None:
    """Close the connections logged in as ``device``: its old credentials no longer hold."""
    for client in list(mqtt.clients()):
        identity = client.identity
        if identity.anonymous or identity.name != device or identity.dialect != dialect:
            continue
        log.info(
            "closing %r of %s device %s: credentials changed",
            client.client_id,
            dialect,
            device,
        )
        client.disconnect(ReasonCode.NOT_AUTHORIZED, "credentials changed")
