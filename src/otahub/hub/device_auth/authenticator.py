"""CONNECT with user name = device name and password, for thin-edge and legacy devices."""

from __future__ import annotations

from otahub.hub.device_auth.acl import device_acl
from otahub.hub.device_auth.directory import DeviceDirectory
from otahub.hub.device_auth.passwords import verify_password_async
from otahub.hub.services.devices import PASSWORD_DIALECTS, DeviceService
from otahub.hub.services.errors import NotFound
from otahub.hub.services.views import DeviceView
from otahub.mqtt import ConnectInfo, Identity, ReasonCode, Refusal


class DevicePasswordAuthenticator:
    """Claims CONNECTs whose user name is a thin-edge or tedge-legacy device's name;
    passes every other one to the next authenticator (ThingsBoard, EnOS)."""

    def __init__(self, devices: DeviceService, directory: DeviceDirectory) -> None:
        self.devices = devices
        self.directory = directory

    async def __call__(self, info: ConnectInfo) -> Identity | Refusal | None:
        if not info.username:
            return None
        try:
            device = await self.devices.get(info.username)
        except NotFound:
            return None
        if device.dialect not in PASSWORD_DIALECTS or device.password_hash is None:
            # a device without credentials connects anonymously; the user name may
            # still be another dialect's (a ThingsBoard token), so the next one decides
            return None
        if info.password is None or not await verify_password_async(
            device.password_hash, info.password
        ):
            return Refusal(
                ReasonCode.BAD_USER_NAME_OR_PASSWORD,
                f"wrong password for {device.dialect} device {device.name!r}",
            )
        return device_identity(device, self.directory)


def device_identity(device: DeviceView, directory: DeviceDirectory) -> Identity:
    """A logged-in thin-edge or tedge-legacy device, however it logged in (password
    or client certificate): its own topics, a gateway's also its children's."""
    return Identity(name=device.name, dialect=device.dialect, acl=device_acl(device, directory))
