"""Signed EnOS logins on the hub's MQTT endpoint, and what a logged-in device may use."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from otahub.hub.services.devices import DeviceService
from otahub.mqtt.hooks import ConnectInfo, Identity, Refusal
from otahub.mqtt.reason_codes import ReasonCode
from otahub.protocols import enos

log = logging.getLogger("otahub.hub.enos")

DIALECT = "enos"


@dataclass(frozen=True, slots=True)
class EnosPeer:
    """Who an accepted EnOS connection speaks for (``Identity.data``)."""

    device: str
    product_key: str
    device_key: str

    @property
    def keys(self) -> frozenset[tuple[str, str]]:
        return frozenset({(self.product_key, self.device_key)})


def is_enos_login(client_id: str) -> bool:
    """EnOS-shaped client ids carry ``|securemode=…|``; anything else is another dialect's."""
    _, sep, rest = client_id.partition("|")
    return bool(sep) and "securemode=" in rest.lower()


@dataclass(frozen=True, slots=True)
class EnosAcl:
    """OTA topics of any keys may be published (the driver answers foreign ones with
    1009, as EnOS does); subscriptions are limited to the device's own topics."""

    product_key: str
    device_key: str

    def can_publish(self, topic: str) -> bool:
        return enos.parse_ota_topic(topic) is not None

    def can_subscribe(self, topic_filter: str) -> bool:
        parts = topic_filter.split("/")
        if parts[:2] == ["", "sys"]:
            return parts[2:4] == [self.product_key, self.device_key] and len(parts) > 4
        if parts[:3] == ["", "ext", "session"]:
            return parts[3:5] == [self.product_key, self.device_key] and len(parts) > 5
        return False


class EnosAuthenticator:
    """Claims EnOS-shaped CONNECTs only; the rest goes to the next authenticator."""

    def __init__(self, devices: DeviceService) -> None:
        self.devices = devices

    async def __call__(self, info: ConnectInfo) -> Identity | Refusal | None:
        if not is_enos_login(info.client_id):
            return None
        try:
            login = enos.parse_login(info.client_id, info.username, info.password)
        except enos.EnosError as exc:
            return _refuse(f"malformed EnOS login: {exc}")
        if login.secure_mode is not enos.SecureMode.STATIC:
            # Modes 3 and 4 sign with a product secret, which the hub does not keep.
            return Refusal(
                ReasonCode.NOT_AUTHORIZED,
                f"EnOS securemode={int(login.secure_mode)} needs a product secret; "
                "only securemode=2 (device secret) is supported",
            )
        device = await self.devices.by_enos_keys(login.product_key, login.device_key)
        if device is None or device.enos_device_secret is None:
            return _refuse(
                f"no EnOS device with productKey {login.product_key!r} "
                f"and deviceKey {login.device_key!r}"
            )
        if not login.verify(device.enos_device_secret):
            return _refuse(
                f"wrong sign for EnOS device {device.name!r} "
                f"(signmethod {login.sign_method.value}, timestamp {login.timestamp!r})"
            )
        peer = EnosPeer(device.name, login.product_key, login.device_key)
        return Identity(
            name=device.name,
            dialect=DIALECT,
            acl=EnosAcl(login.product_key, login.device_key),
            data=peer,
        )


def _refuse(message: str) -> Refusal:
    # The endpoint logs every refusal with this message; CONNACK 4 for 3.1.1.
    return Refusal(ReasonCode.BAD_USER_NAME_OR_PASSWORD, message)
