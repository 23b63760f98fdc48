"""thin-edge gateways: the children a gateway registers belong to it, it acts for them,
and nobody else may register devices or use a gateway's children."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable

import httpx
import pytest

from otahub.mqtt.packets import Puback, Publish
from otahub.mqtt.reason_codes import ReasonCode
from tests.mqtt.rawclient import RawClient
from tests.security.conftest import OUTSIDE, SecureHub
from tests.security.test_thin_edge_devices import cli, cli_add, puback_of

FIRMWARE = b"firmware for a gateway's child\n" * 200
REGISTRATION = b'{"@type":"child-device","@parent":"device/gw1//"}'


@pytest.fixture
def gw_hub(secure_hub: Callable[..., SecureHub]) -> SecureHub:
    hub = secure_hub("--anonymous-from", "127.0.0.1/32", "--allow-anonymous")
    hub.add_device("gw1", "thin-edge", password="gw1-pw", gateway=True)
    hub.add_device("gw2", "thin-edge", password="gw2-pw", gateway=True)
    hub.add_device("plain1", "thin-edge", password="plain1-pw")
    return hub


async def refused(raw: RawClient) -> bool:
    ack = await puback_of(raw)
    return ack.reason_code == ReasonCode.NOT_AUTHORIZED


async def register(hub: SecureHub, gateway: str, child: str) -> RawClient:
    """A gateway connection that registers ``child`` and waits for its commands."""
    raw, accepted = await hub.client(
        f"{gateway}-conn", 5, username=gateway, password=f"{gateway}-pw"
    )
    assert accepted == 0
    await raw.publish(f"te/device/{child}//", REGISTRATION, qos=1, retain=True)
    assert (await puback_of(raw)).reason_code == 0
    await raw.publish(f"te/device/{child}///cmd/firmware_update", b"{}", qos=1, retain=True)
    assert (await puback_of(raw)).reason_code == 0
    suback = await raw.subscribe(f"te/device/{child}///cmd/firmware_update/+", qos=1)
    assert suback.reason_codes == [1]
    hub.wait_log(rf"registered thin-edge device {child}\b")
    hub.wait_log(rf"device {child} belongs to gateway {gateway}\b")
    return raw


async def command_of(raw: RawClient) -> Publish:
    while True:
        packet = await raw.recv(timeout=20)
        if isinstance(packet, Publish) and packet.payload:
            if packet.qos:
                await raw.send(Puback(packet.packet_id or 0))
            return packet


def with_status(command: Publish, status: str) -> bytes:
    return json.dumps({**json.loads(command.payload), "status": status}).encode()


async def test_gateway_registers_a_child_and_updates_it_end_to_end(gw_hub: SecureHub) -> None:
    gw = await register(gw_hub, "gw1", "child01")
    device = gw_hub.api.get("/devices/child01").json()
    assert device["owner"] == "gw1" and device["gateway"] is False
    assert gw_hub.api.get("/devices/gw1").json()["gateway"] is True
    shown = await asyncio.to_thread(cli, gw_hub, "device", "show", "child01")
    assert "owner:       gw1" in shown.stdout

    gw_hub.upload("fw", "2.0", FIRMWARE)
    update_id = gw_hub.start_update("child01", "fw", "2.0")
    command = await command_of(gw)
    fields = json.loads(command.payload)
    assert fields["status"] == "init"
    assert command.topic.startswith("te/device/child01///cmd/firmware_update/")

    # the gateway answers for its child: executing, the download, the twin, successful
    await gw.publish(command.topic, with_status(command, "executing"), qos=1, retain=True)
    assert (await puback_of(gw)).reason_code == 0
    async with httpx.AsyncClient(timeout=30) as http:
        image = await http.get(fields["tedgeUrl"])
    assert image.status_code == 200
    assert hashlib.sha256(image.content).hexdigest() == fields["sha256"]
    twin = b'{"name":"fw","version":"2.0"}'
    await gw.publish("te/device/child01///twin/firmware", twin, qos=1, retain=True)
    assert (await puback_of(gw)).reason_code == 0
    await gw.publish(command.topic, with_status(command, "successful"), qos=1, retain=True)
    assert (await puback_of(gw)).reason_code == 0

    done = gw_hub.wait_update(update_id, lambda u: u["state"] == "succeeded")
    assert done["state"] == "succeeded"
    assert [t["source"] for t in done["transitions"]][-2:] == [
        "thin-edge:executing",
        "thin-edge:successful",
    ]
    assert gw_hub.api.get("/devices/child01").json()["firmware"]["version"] == "2.0"
    gw.close()


async def test_ownership_survives_a_restart_and_a_gateways_removal(
    secure_hub: Callable[..., SecureHub],
) -> None:
    hub = secure_hub()
    hub.add_device("gw1", "thin-edge", password="gw1-pw", gateway=True)
    gw = await register(hub, "gw1", "child07")
    gw.close()
    hub.process.stop()
    hub.process.start()
    assert hub.api.get("/devices/child07").json()["owner"] == "gw1"
    # the stored owner still rules: another gateway is refused, its own one is not
    hub.add_device("gw2", "thin-edge", password="gw2-pw", gateway=True)
    other, _ = await hub.client("gw2-conn", 5, username="gw2", password="gw2-pw")
    await other.publish("te/device/child07///twin/firmware", b'{"version":"6.6.6"}', qos=1)
    assert await refused(other)
    own, _ = await hub.client("gw1-conn", 5, username="gw1", password="gw1-pw")
    await own.publish("te/device/child07///twin/firmware", b'{"version":"1.0"}', qos=1)
    assert (await puback_of(own)).reason_code == 0
    own.close()
    # a removed gateway's children belong to nobody
    assert hub.api.delete("/devices/gw1").status_code == 204
    assert hub.api.get("/devices/child07").json()["owner"] is None
    other.close()


@pytest.mark.parametrize("version", [4, 5])
async def test_another_authenticated_device_registering_a_child_is_refused(
    gw_hub: SecureHub, version: int
) -> None:
    plain, accepted = await gw_hub.client("plain", version, username="plain1", password="plain1-pw")
    assert accepted == 0
    await plain.publish("te/device/child03//", REGISTRATION, qos=1, retain=True)
    ack = await puback_of(plain)
    # 3.1.1 has no refusing PUBACK: acknowledged, dropped
    assert ack.reason_code == (ReasonCode.NOT_AUTHORIZED if version == 5 else 0)
    gw_hub.wait_log(r"client 'plain' \(plain1\) may not publish to 'te/device/child03//'; dropped")
    # its own registration is its own business
    await plain.publish("te/device/plain1//", b'{"@type":"child-device"}', qos=1, retain=True)
    assert (await puback_of(plain)).reason_code == 0
    assert "child03" not in gw_hub.devices()
    plain.close()


async def test_gateway_publishing_a_status_on_another_gateways_child_is_refused(
    gw_hub: SecureHub,
) -> None:
    gw1 = await register(gw_hub, "gw1", "child01")
    gw_hub.upload("fw", "2.0", FIRMWARE)
    update_id = gw_hub.start_update("child01", "fw", "2.0")
    command = await command_of(gw1)
    assert gw_hub.wait_update(update_id, lambda u: u["state"] == "sent")["state"] == "sent"

    gw2, accepted = await gw_hub.client("gw2-conn", 5, username="gw2", password="gw2-pw")
    assert accepted == 0
    await gw2.publish(command.topic, with_status(command, "successful"), qos=1, retain=True)
    assert await refused(gw2)
    gw_hub.wait_log(rf"client 'gw2-conn' \(gw2\) may not publish to '{command.topic}'; dropped")
    # nor may it take the child over by registering it again, or listen to its commands
    await gw2.publish("te/device/child01//", REGISTRATION, qos=1, retain=True)
    assert await refused(gw2)
    suback = await gw2.subscribe("te/device/child01///cmd/firmware_update/+", qos=1)
    assert suback.reason_codes == [ReasonCode.NOT_AUTHORIZED]
    # nor may an anonymous client act for the gateway's child
    anonymous, _ = await gw_hub.client("local-connector", 5)
    await anonymous.publish(command.topic, with_status(command, "successful"), qos=1)
    assert await refused(anonymous)

    await gw1.expect_nothing(0.5)
    assert gw_hub.update(update_id)["state"] == "sent"
    assert gw_hub.api.get("/devices/child01").json()["owner"] == "gw1"
    # the child's own gateway still reports for it
    await gw1.publish(command.topic, with_status(command, "successful"), qos=1, retain=True)
    assert (await puback_of(gw1)).reason_code == 0
    done = gw_hub.wait_update(update_id, lambda u: u["state"] == "succeeded")
    assert done["state"] == "succeeded"
    for raw in (gw1, gw2, anonymous):
        raw.close()


async def test_anonymous_registration_from_outside_anonymous_from_is_refused(
    gw_hub: SecureHub,
) -> None:
    outsider, accepted = await gw_hub.client("outsider", 5, source=OUTSIDE)
    assert accepted == 0  # let in by --allow-anonymous, but it may not register
    await outsider.publish("te/device/child04//", REGISTRATION, qos=1, retain=True)
    assert await refused(outsider)
    gw_hub.wait_log(
        r"client 'outsider' \(outsider\) may not publish to 'te/device/child04//'; dropped"
    )
    # thin-edge's own local connectors (loopback, anonymous) still register, as before
    local, _ = await gw_hub.client("local-connector", 5)
    await local.publish("te/device/child05//", b'{"@type":"child-device"}', qos=1, retain=True)
    assert (await puback_of(local)).reason_code == 0
    gw_hub.wait_log(r"registered thin-edge device child05\b")
    # such a child belongs to no gateway, and no gateway may take it
    assert gw_hub.api.get("/devices/child05").json()["owner"] is None
    gw, _ = await gw_hub.client("gw1-conn", 5, username="gw1", password="gw1-pw")
    await gw.publish("te/device/child05///twin/firmware", b'{"version":"6.6.6"}', qos=1)
    assert await refused(gw)
    assert "child04" not in gw_hub.devices()
    for raw in (outsider, local, gw):
        raw.close()


def test_only_thin_edge_devices_are_gateways(gw_hub: SecureHub) -> None:
    response = gw_hub.api.post(
        "/devices", json={"name": "tb1", "dialect": "thingsboard", "token": "t", "gateway": True}
    )
    assert response.status_code == 422 and "gateway" in response.text
    added = cli_add(gw_hub, "gw3", "--dialect", "thin-edge", "--gateway", "--generate-password")
    assert "added thin-edge gateway gw3" in added.stdout
    assert gw_hub.api.get("/devices/gw3").json()["gateway"] is True


async def test_gateway_subscribing_to_every_devices_topics_is_refused(gw_hub: SecureHub) -> None:
    gw = await register(gw_hub, "gw1", "child01")
    suback = await gw.subscribe(
        "#",
        "te/#",
        "te/device/+/+/+/cmd/firmware_update/+",
        "te/device/#",
        "te/device/child01/+/+/cmd/firmware_update/+",
        qos=1,
    )
    refusal = ReasonCode.NOT_AUTHORIZED
    assert suback.reason_codes == [refusal, refusal, refusal, refusal, 1]
    gw_hub.wait_log(r"client 'gw1-conn' \(gw1\) may not subscribe to 'te/device/\+/\+/\+/cmd/")
    gw.close()
