"""Seed 000 as written, typed with mosquitto_pub/sub, by a child that has credentials."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.hubproc import HubProcess
from tests.interop.tedge_child import HAVE_CLIENTS, Api, Child, payload_with, sha256

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(not HAVE_CLIENTS, reason="needs mosquitto-clients and curl"),
]

FIRMWARE = b"my firmware 2 version 1.0.1\n" * 500
NAME = "child03"
PASSWORD = "child03 password"
CREDENTIALS = ("-u", NAME, "-P", PASSWORD, "-i", "child03-agent")


def test_seed_000_with_mosquitto_clients_and_credentials(
    hub_factory: Callable[..., HubProcess], tmp_path: Path
) -> None:
    hub = hub_factory("--no-auth")
    api = Api(hub)
    created = api.client.post(
        "/devices", json={"name": NAME, "dialect": "thin-edge", "password": PASSWORD}
    )
    assert created.status_code == 201, created.text
    child = Child(hub.mqtt_port)
    child.pub(
        f"te/device/{NAME}//",
        '{\n  "@type": "child-device",\n  "name": "Child 03",\n  "type": "RaspberryPi4"\n}',
        "-r",
        *CREDENTIALS,
    )
    child.pub(f"te/device/{NAME}///cmd/firmware_update", "{}", "-r", *CREDENTIALS)
    child.pub(
        f"te/device/{NAME}///twin/firmware",
        '{"name": "my firmware 2", "version":"1.0.0"}',
        "-r",
        *CREDENTIALS,
    )
    assert api.wait_for(lambda: api.device(NAME).json()["firmware"]["version"] == "1.0.0")

    # a wrong password is refused: mosquitto_pub reports it and exits non-zero
    wrong = subprocess.run(
        [
            *("mosquitto_pub", "-p", str(hub.mqtt_port), "-t", f"te/device/{NAME}//"),
            *("-m", "{}", "-u", NAME, "-P", "guess"),
        ],
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert wrong.returncode != 0
    assert "wrong password for thin-edge device 'child03'" in hub.log()

    api.upload("my firmware 2", "1.0.1", FIRMWARE)
    update_id = api.start(NAME, "my firmware 2", "1.0.1").json()["id"]
    sub = child.sub(f"te/device/{NAME}///cmd/firmware_update/+", 1, *CREDENTIALS[:4])
    topic, message = Child.lines(sub)[0].split(" ", 1)
    command = json.loads(message)
    assert command["status"] == "init"
    child.pub(topic, payload_with(command, status="executing"), "-r", *CREDENTIALS)
    assert api.wait_update(update_id, lambda u: u["state"] == "downloading")["state"] == (
        "downloading"
    )
    image = tmp_path / "image.bin"
    Child.curl(command["tedgeUrl"], image)
    assert sha256(image.read_bytes()) == command["sha256"]
    # an anonymous mosquitto_pub cannot finish the update for the child
    child.pub(topic, payload_with(command, status="failed", reason="spoofed"), "-r")
    assert "may not publish to" in hub.log()
    child.pub(
        f"te/device/{NAME}///twin/firmware",
        '{"name": "my firmware 2", "version":"1.0.1"}',
        "-r",
        *CREDENTIALS,
    )
    child.pub(topic, payload_with(command, status="successful"), "-r", *CREDENTIALS)
    done = api.wait_update(update_id, lambda u: u["state"] == "succeeded")
    assert done["state"] == "succeeded"
    assert done["transitions"][-1]["source"] == "thin-edge:successful"
