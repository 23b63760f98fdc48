"""Signed EnOS logins on the hub's MQTT endpoint, and what a logged-in device may use."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from otahub.hub.services.devices import DeviceService
from otahub.hub.services.views import DeviceView
from otahub.hub.settings import DEFAULT_ENOS_LOGIN_WINDOW
from otahub.mqtt import ConnectInfo, Identity, ReasonCode, Refusal
from otahub.protocols import enos

log = logging.getLogger("otahub.hub.enos")

DIALECT = "enos"
#: ``Device.dialect_state`` key: the timestamp of the last login accepted within the window.
LAST_LOGIN = "last_login_timestamp"


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


def keys_identity(device: str, product_key: str, device_key: str) -> Identity:
    """A logged-in EnOS device (by signed login or by client certificate)."""
    return Identity(
        name=device,
        dialect=DIALECT,
        acl=EnosAcl(product_key, device_key),
        data=EnosPeer(device, product_key, device_key),
        routed=False,  # its topics are per connection: only the driver sends there
    )


def session_identity(device: DeviceView) -> Identity | None:
    if device.enos_product_key is None or device.enos_device_key is None:
        return None
    return keys_identity(device.name, device.enos_product_key, device.enos_device_key)


class EnosAuthenticator:
    """Claims EnOS-shaped CONNECTs only; the rest goes to the next authenticator.

    A login whose timestamp lies more than ``login_window`` seconds from the
    hub's clock is refused: the sign covers the timestamp, so a captured
    login replays only within the window. One exception keeps real devices
    connected: the Python SDK stamps its login once per process and its
    reconnects reuse that stamp, so a correctly signed login that repeats
    the timestamp of the device's last login accepted within the window is
    accepted at any age (it is what that device sends now); no other is. A window
    of 0 turns the check off, as the EnOS reference has it.
    """

    def __init__(
        self,
        devices: DeviceService,
        login_window: float = DEFAULT_ENOS_LOGIN_WINDOW,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.devices = devices
        self.login_window = login_window
        self.clock = clock

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
        stale = self._staleness(login)
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
        last = device.dialect_state.get(LAST_LOGIN)
        if stale is not None:
            if login.timestamp != last:
                return _refuse(stale)
            log.info(
                "EnOS device %r logs in again with the timestamp of its last login "
                "(%s, now outside the window): accepted",
                device.name,
                login.timestamp,
            )
        elif login.timestamp != last and self.login_window > 0:
            await self.devices.set_dialect_state(
                device.name, {**device.dialect_state, LAST_LOGIN: login.timestamp}
            )
        return keys_identity(device.name, login.product_key, login.device_key)

    def _staleness(self, login: enos.Login) -> str | None:
        """Why the login's timestamp is outside the window; None when it is inside (or off)."""
        if self.login_window <= 0:
            return None
        skew = enos.timestamp_skew(login.timestamp, self.clock())
        if skew is None:
            return (
                f"EnOS login of deviceKey {login.device_key!r} has no timestamp in "
                f"milliseconds ({login.timestamp!r}); logins must be fresh within "
                f"{self.login_window:.0f} s"
            )
        if abs(skew) <= self.login_window:
            return None
        return (
            f"stale EnOS login of deviceKey {login.device_key!r}: timestamp "
            f"{login.timestamp} is {_duration(abs(skew))} "
            f"{'ahead of' if skew > 0 else 'behind'} the hub's clock "
            f"(window {self.login_window:.0f} s)"
        )


def _duration(seconds: float) -> str:
    for unit, size in (("years", 365.25 * 86400), ("days", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def _refuse(message: str) -> Refusal:
    # The endpoint logs every refusal with this message; CONNACK 4 for 3.1.1.
    return Refusal(ReasonCode.BAD_USER_NAME_OR_PASSWORD, message)
