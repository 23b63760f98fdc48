"""Device authentication on the hub's endpoint: changed credentials end the sessions
they opened, and only those."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from otahub.hub.core import HubCore
from otahub.hub.device_auth.install import install_device_auth
from otahub.hub.services.devices import DeviceSpec
from otahub.mqtt import MQTTServer, ReasonCode, ServerConfig
from otahub.mqtt.packets import Disconnect, Pingreq, Pingresp
from tests.mqtt.rawclient import RawClient


@pytest.fixture
async def endpoint(core: HubCore) -> AsyncIterator[tuple[MQTTServer, int]]:
    server = MQTTServer(ServerConfig(connect_timeout=2.0))
    stop = await install_device_auth(core, server)
    port = await server.listen("127.0.0.1", 0)
    try:
        yield server, port
    finally:
        stop()
        await server.close()


async def test_a_password_change_closes_the_devices_sessions_only(
    core: HubCore, endpoint: tuple[MQTTServer, int]
) -> None:
    _, port = endpoint
    await core.devices.create(DeviceSpec("child01", "thin-edge", password="first pw 01"))
    await core.devices.create(DeviceSpec("child02", "tedge-legacy", password="other pw 02"))
    child01 = await RawClient.open(port, 5)
    assert (
        await child01.connect("c1", username="child01", password=b"first pw 01")
    ).reason_code == 0
    child02 = await RawClient.open(port, 4)
    assert (
        await child02.connect("c2", username="child02", password=b"other pw 02")
    ).reason_code == 0

    await core.devices.set_password("child01", "second pw 01")

    sent = await child01.closed()
    assert len(sent) == 1 and isinstance(sent[0], Disconnect)
    assert sent[0].reason_code == ReasonCode.NOT_AUTHORIZED
    assert sent[0].properties.reason_string == "credentials changed"
    await child02.send(Pingreq())
    assert isinstance(await child02.recv(), Pingresp)

    again = await RawClient.open(port, 5)
    refused = await again.connect("c1", username="child01", password=b"first pw 01")
    assert refused.reason_code == ReasonCode.BAD_USER_NAME_OR_PASSWORD
    again.close()
    renewed = await RawClient.open(port, 5)
    accepted = await renewed.connect("c1", username="child01", password=b"second pw 01")
    assert accepted.reason_code == 0
    renewed.close()
    child02.close()
