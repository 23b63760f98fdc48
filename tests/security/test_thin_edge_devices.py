"""thin-edge devices with credentials: their password is checked and they are confined
to ``te/device/<own id>/...``; anonymous clients cannot act for them."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from otahub.mqtt.packets import Puback, Publish
from otahub.mqtt.reason_codes import ReasonCode
from tests.mqtt.rawclient import RawClient
from tests.security.conftest import SecureHub

FIRMWARE = b"firmware for child01\n" * 100


def cli(hub: SecureHub, *args: str) -> subprocess.CompletedProcess[str]:
    """``otahub ARGS --server <the hub>``, which must succeed."""
    done = subprocess.run(
        [sys.executable, "-m", "otahub", *args, "--server", hub.process.http_url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done


def cli_add(hub: SecureHub, name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return cli(hub, "device", "add", name, *args)


async def puback_of(raw: RawClient) -> Puback:
    """The next PUBACK, past the messages a subscribed client gets meanwhile."""
    while True:
        packet = await raw.recv()
        if isinstance(packet, Puback):
            return packet


@pytest.fixture
def te_hub(secure_hub: Callable[..., SecureHub], tmp_path: Path) -> SecureHub:
    hub = secure_hub()
    secret = tmp_path / "child01.password"
    secret.write_text("s3cret child 01\n")  # the line break is not part of it
    cli_add(hub, "child01", "--dialect", "thin-edge", "--password-file", str(secret))
    hub.add_device("child02", "thin-edge", password="child02-pw")
    return hub


@pytest.mark.parametrize(("version", "code"), [(4, 4), (5, ReasonCode.BAD_USER_NAME_OR_PASSWORD)])
async def test_thin_edge_device_with_a_wrong_or_missing_password_is_refused(
    te_hub: SecureHub, version: int, code: int
) -> None:
    raw, refused = await te_hub.client("c1", version, username="child01", password="guess")
    assert refused == code
    te_hub.wait_log(r"\(client id 'c1', user 'child01'\): wrong password for thin-edge device")
    raw, refused = await te_hub.client("c2", version, username="child01")
    assert refused == code
    te_hub.wait_log(r"\(client id 'c2', user 'child01'\): wrong password for thin-edge device")
    raw, accepted = await te_hub.client(
        "c3", version, username="child01", password="s3cret child 01"
    )
    assert accepted == 0
    raw.close()


def test_generated_password_is_printed_once_and_not_returned(te_hub: SecureHub) -> None:
    done = cli_add(te_hub, "child09", "--dialect", "tedge-legacy", "--generate-password")
    assert "MQTT user name: child09" in done.stdout
    password = done.stdout.split("MQTT password:")[1].split()[0]
    assert len(password) >= 32
    device = te_hub.api.get("/devices/child09").json()
    assert device["has_password"] is True
    assert password not in json.dumps(device)
    assert "password" not in device and "password_hash" not in device
    listed = te_hub.api.get("/devices").json()
    assert {d["name"]: d["has_password"] for d in listed} == {
        "child01": True,
        "child02": True,
        "child09": True,
    }


@pytest.mark.parametrize(("version", "refusal"), [(4, 0x80), (5, ReasonCode.NOT_AUTHORIZED)])
async def test_thin_edge_device_subscribing_to_everything_or_another_device_is_refused(
    te_hub: SecureHub, version: int, refusal: int
) -> None:
    raw, accepted = await te_hub.client("c2", version, username="child02", password="child02-pw")
    assert accepted == 0
    suback = await raw.subscribe(
        "#",
        "te/+/+/+/+/cmd/firmware_update/+",
        "te/device/child01///cmd/firmware_update/+",
        "te/device/child02///cmd/firmware_update/+",
        qos=1,
    )
    assert suback.reason_codes == [refusal, refusal, refusal, 1]
    te_hub.wait_log(r"client 'c2' \(child02\) may not subscribe to '#'")
    te_hub.wait_log(
        r"client 'c2' \(child02\) may not subscribe to 'te/device/child01///cmd/firmware_update/\+'"
    )
    raw.close()


async def test_thin_edge_device_publishing_another_childs_command_or_status_is_refused(
    te_hub: SecureHub,
) -> None:
    child01, _ = await te_hub.client("c1", 5, username="child01", password="s3cret child 01")
    await child01.publish("te/device/child01///cmd/firmware_update", b"{}", qos=1, retain=True)
    assert (await child01.recv()).reason_code == 0  # type: ignore[attr-defined]
    await child01.subscribe("te/device/child01///cmd/firmware_update/+", qos=1)
    te_hub.upload("fw", "2.0", FIRMWARE)
    update_id = te_hub.start_update("child01", "fw", "2.0")
    command = await child01.recv()
    assert isinstance(command, Publish)
    assert json.loads(command.payload)["status"] == "init"
    await child01.send(Puback(command.packet_id or 0))
    assert te_hub.wait_update(update_id, lambda u: u["state"] == "sent")["state"] == "sent"
    forged = json.dumps({**json.loads(command.payload), "status": "successful"}).encode()

    # another credentialed child, then an anonymous client, claim it succeeded
    child02, _ = await te_hub.client("c2", 5, username="child02", password="child02-pw")
    await child02.publish(command.topic, forged, qos=1, retain=True)
    ack = await child02.recv()
    assert isinstance(ack, Puback) and ack.reason_code == ReasonCode.NOT_AUTHORIZED
    te_hub.wait_log(rf"client 'c2' \(child02\) may not publish to '{command.topic}'; dropped")
    await child02.publish("te/device/child01///twin/firmware", b'{"version":"6.6.6"}', qos=1)
    ack = await child02.recv()
    assert isinstance(ack, Puback) and ack.reason_code == ReasonCode.NOT_AUTHORIZED

    anonymous, accepted = await te_hub.client("anon", 5)
    assert accepted == 0
    await anonymous.publish(command.topic, forged, qos=1, retain=True)
    ack = await anonymous.recv()
    assert isinstance(ack, Puback) and ack.reason_code == ReasonCode.NOT_AUTHORIZED
    te_hub.wait_log(rf"client 'anon' \(anon\) may not publish to '{command.topic}'; dropped")
    # nor may it register a device with credentials again or announce its twin
    await anonymous.publish("te/device/child01//", b'{"@type":"child-device"}', qos=1)
    ack = await anonymous.recv()
    assert isinstance(ack, Puback) and ack.reason_code == ReasonCode.NOT_AUTHORIZED

    # nothing of it reached the child or the update
    await child01.expect_nothing(0.5)
    update = te_hub.update(update_id)
    assert update["state"] == "sent"
    assert te_hub.api.get("/devices/child01").json()["firmware"]["version"] is None
    # the child itself still reports its own status
    await child01.publish(command.topic, forged, qos=1, retain=True)
    assert (await puback_of(child01)).reason_code == 0
    done = te_hub.wait_update(update_id, lambda u: u["state"] == "succeeded")
    assert done["state"] == "succeeded"
    for raw in (child01, child02, anonymous):
        raw.close()


async def test_setting_a_password_confines_a_self_registered_device(
    secure_hub: Callable[..., SecureHub], tmp_path: Path
) -> None:
    """A child registered anonymously gets credentials later: from then on only it may act."""
    hub = secure_hub()
    anonymous, _ = await hub.client("connector", 5)
    await anonymous.publish("te/device/child05//", b'{"@type":"child-device"}', qos=1, retain=True)
    assert (await anonymous.recv()).reason_code == 0  # type: ignore[attr-defined]
    hub.wait_log(r"registered thin-edge device child05")
    assert hub.api.get("/devices/child05").json()["has_password"] is False

    secret = tmp_path / "child05.password"
    secret.write_text("child05-pw")
    await asyncio.to_thread(
        cli, hub, "device", "set-password", "child05", "--password-file", str(secret)
    )
    assert hub.api.get("/devices/child05").json()["has_password"] is True
    await anonymous.publish("te/device/child05///cmd/firmware_update", b"{}", qos=1)
    ack = await anonymous.recv()
    assert isinstance(ack, Puback) and ack.reason_code == ReasonCode.NOT_AUTHORIZED
    hub.wait_log(r"'connector' \(connector\) may not publish to 'te/device/child05///cmd")

    child, accepted = await hub.client("c5", 5, username="child05", password="child05-pw")
    assert accepted == 0
    # a new password closes the sessions logged in with the old one
    changed = hub.api.put("/devices/child05/password", json={"password": "new-pw"})
    assert changed.status_code == 200, changed.text
    assert [type(p).__name__ for p in await child.closed()] == ["Disconnect"]
    _, refused = await hub.client("c5", 5, username="child05", password="child05-pw")
    assert refused == ReasonCode.BAD_USER_NAME_OR_PASSWORD
    # removed: the device connects anonymously again
    assert hub.api.put("/devices/child05/password", json={"password": None}).status_code == 200
    await anonymous.publish("te/device/child05///cmd/firmware_update", b"{}", qos=1)
    assert (await anonymous.recv()).reason_code == 0  # type: ignore[attr-defined]
    # and the other dialects have no such password
    hub.add_device("tb5", "thingsboard", token="tb5-token")
    refused_tb = hub.api.put("/devices/tb5/password", json={"password": "x"})
    assert refused_tb.status_code == 422 and "thingsboard" in refused_tb.text
    anonymous.close()
