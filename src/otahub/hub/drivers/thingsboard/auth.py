"""CONNECT authentication and the per-session topic rules of ThingsBoard devices.

Credentials are tried in ThingsBoard's order (``credential_lookups``): the
access token (the ``tb_token`` column) and basic MQTT credentials (kept in
the device's dialect state and indexed in memory here).

The hub's endpoint serves every dialect, so a CONNECT that is clearly not a
ThingsBoard one passes to the next authenticator instead of being refused:
no user name at all (thin-edge devices connect anonymously with only a
client id) and EnOS's signed client ids (``…|securemode=…|``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from otahub.hub.services.devices import DeviceService
from otahub.mqtt import ConnectInfo, Identity, Refusal
from otahub.protocols.thingsboard import (
    DEVICE_TOPIC_PREFIXES,
    BasicMqttCredentials,
    CredentialKind,
    PackageType,
    ThingsBoardError,
    accept_subscription,
    connect_refusal,
    credential_lookups,
    suback_refusal_code,
)

log = logging.getLogger("otahub.hub.thingsboard")

DIALECT = "thingsboard"
#: Seconds a remembered token is trusted before the registry is asked again.
TOKEN_TTL_S = 60.0
# Topic prefixes a ThingsBoard session may publish to; the driver claims them.


@dataclass(eq=False)
class RidState:
    """What one ``{rid}`` of one session resolved to (upstream caches it too)."""

    package_id: int
    size: int
    path: Any  # Path of the blob, or None when the blob is not a local file
    update_id: int | None
    chunk_size: int | None = None
    sha256: str = ""  # the blob's, to check it is unchanged before each chunk


@dataclass(eq=False)
class Link:
    """Per-connection state, carried as ``Identity.data``."""

    device: str
    rids: dict[tuple[PackageType, str], RidState] = field(default_factory=dict)


class DeviceAcl:
    """ThingsBoard's rules: exact-string subscriptions, device topics only."""

    def can_publish(self, topic: str) -> bool:
        return topic.startswith(DEVICE_TOPIC_PREFIXES)

    def can_subscribe(self, topic_filter: str) -> bool | int:
        # ThingsBoard accepts exact strings only; MQTT 5 refusals say "filter invalid"
        return accept_subscription(topic_filter) is not None or suback_refusal_code(mqtt5=True)


ACL = DeviceAcl()


class BasicCredentialIndex:
    """Basic MQTT credentials by client id, (client id, user name) and user name."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[str | None, str | None], tuple[str, BasicMqttCredentials]] = {}
        self._of_device: dict[str, tuple[str | None, str | None]] = {}

    def put(self, device: str, creds: BasicMqttCredentials | None) -> None:
        old = self._of_device.pop(device, None)
        if old is not None:
            self._by_key.pop(old, None)
        if creds is None:
            return
        key = (creds.client_id, creds.user_name)
        self._by_key[key] = (device, creds)
        self._of_device[device] = key

    def find(
        self, client_id: str | None, user_name: str | None
    ) -> tuple[str, BasicMqttCredentials] | None:
        return self._by_key.get((client_id, user_name))

    def owner(self, client_id: str | None, user_name: str | None) -> str | None:
        found = self._by_key.get((client_id, user_name))
        return None if found is None else found[0]


class TokenIndex:
    """ThingsBoard access tokens -> device names, kept in memory.

    Loaded when the driver starts and kept up to date from the registry's
    events (created, credentials changed, deleted), so a CONNECT costs no
    query. A token not found here is looked up in the registry (a device
    registered through another hub instance) and remembered. A token changed
    or a device removed through another hub instance sends this hub no
    event, so an entry is trusted for ``ttl_s`` only and then checked against
    the registry again: a revoked token stops working everywhere within it.
    """

    def __init__(self, devices: DeviceService, ttl_s: float = TOKEN_TTL_S) -> None:
        self.devices = devices
        self.ttl_s = ttl_s
        self._device_of: dict[str, tuple[str, float]] = {}
        self._token_of: dict[str, str] = {}
        # bumped by every put: a registry read that raced with one is not kept
        self._puts = 0

    def put(self, device: str, token: str | None) -> None:
        self._puts += 1
        old = self._token_of.pop(device, None)
        if old is not None and self._device_of.get(old, ("", 0.0))[0] == device:
            del self._device_of[old]
        if token is not None:
            self._device_of[token] = (device, time.monotonic())
            self._token_of[device] = token

    async def find(self, token: str) -> str | None:
        known = self._device_of.get(token)
        if known is not None and time.monotonic() - known[1] < self.ttl_s:
            return known[0]
        puts = self._puts
        view = await self.devices.by_token(token)
        current = puts == self._puts  # no credentials event came in meanwhile
        if view is None or view.dialect != DIALECT:
            if known is not None and current:
                self.put(known[0], None)
            return None
        if current:
            self.put(view.name, token)
        return view.name


def session_identity(device: str) -> Identity:
    """A logged-in ThingsBoard device (by credentials or by client certificate)."""
    # routed=False: ``v1/devices/me/...`` is per connection, only the driver sends there
    return Identity(name=device, dialect=DIALECT, acl=ACL, data=Link(device), routed=False)


def _looks_like_enos(info: ConnectInfo) -> bool:
    return "|" in info.client_id and "securemode=" in info.client_id


class Authenticator:
    def __init__(self, tokens: TokenIndex, basic: BasicCredentialIndex) -> None:
        self.tokens = tokens
        self.basic = basic

    def _identity(self, device: str) -> Identity:
        return session_identity(device)

    async def __call__(self, info: ConnectInfo) -> Identity | Refusal | None:
        user = info.username or None
        password = None if info.password is None else info.password.decode("utf-8", "replace")
        for lookup in credential_lookups(info.client_id, user):
            if lookup.kind is CredentialKind.PROVISION:
                log.warning("refused provisioning CONNECT from %s: not supported", info.peer)
                return Refusal(0x87, "device provisioning is not supported")
            if lookup.kind is CredentialKind.CLIENT_ID:
                found = self.basic.find(lookup.client_id, None)
                if found is not None:
                    return self._identity(found[0])
                # A bare client id is how thin-edge devices connect: not ours to refuse.
                return None
            if lookup.kind is CredentialKind.CLIENT_ID_AND_USER_NAME:
                found = self.basic.find(lookup.client_id, lookup.user_name)
                if found is not None:
                    device, creds = found
                    if not creds.accepts_password(password):
                        log.warning(
                            "refused CONNECT of %s from %s: wrong password", device, info.peer
                        )
                        return Refusal(0x86, "bad user name or password")
                    return self._identity(device)
                continue
            assert user is not None
            by_token = await self.tokens.find(user)
            if by_token is not None:
                return self._identity(by_token)
            found = self.basic.find(None, user)
            if found is not None:
                device, creds = found
                if creds.accepts_password(password):
                    return self._identity(device)
                log.warning("refused CONNECT of %s from %s: wrong password", device, info.peer)
                return Refusal(0x86, "bad user name or password")
        if not user or _looks_like_enos(info):
            return None
        refusal = connect_refusal(client_id=info.client_id, user_name=user, password=info.password)
        log.warning(
            "refused CONNECT from %s: no ThingsBoard device has these credentials", info.peer
        )
        return Refusal(refusal.v5, "unknown access token or credentials")


def parse_stored_basic(value: object) -> BasicMqttCredentials | None:
    """The basic credentials kept in a dialect state, or None when absent or broken."""
    if not isinstance(value, dict):
        return None
    try:
        return BasicMqttCredentials(
            client_id=value.get("clientId") or None,
            user_name=value.get("userName") or None,
            password=value.get("password") or None,
        )
    except ThingsBoardError:
        return None
