"""Seed 001 as written (tedge-legacy), typed with mosquitto_pub/sub and curl, by a
child that has credentials."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.hubproc import HubProcess
from tests.interop.tedge_child import HAVE_CLIENTS, Api, Child, sha256

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(not HAVE_CLIENTS, reason="needs mosquitto-clients and curl"),
]

FIRMWARE = b"OpenWRT 22.03 image\n" * 2000
NAME = "tedge-child4"
PASSWORD = "tedge-child4 password"
CREDENTIALS = ("-u", NAME, "-P", PASSWORD)


def test_seed_001_with_mosquitto_clients_and_credentials(
    hub_factory: Callable[..., HubProcess], tmp_path: Path
) -> None:
    hub = hub_factory("--no-auth")
    api = Api(hub)
    created = api.client.post(
        "/devices", json={"name": NAME, "dialect": "tedge-legacy", "password": PASSWORD}
    )
    assert created.status_code == 201, created.text
    api.upload("OpenWRT", "22.03", FIRMWARE)
    child = Child(hub.mqtt_port)
    requests = f"tedge/{NAME}/commands/req/firmware_update"
    responses = f"tedge/{NAME}/commands/res/firmware_update"
    sub = child.sub(requests, 1, *CREDENTIALS, "-i", f"{NAME}-plugin", wait=20)
    time.sleep(0.5)  # mosquitto_sub subscribes; a request started before is re-sent then
    update_id = api.start(NAME, "OpenWRT", "22.03").json()["id"]
    topic, message = Child.lines(sub)[0].split(" ", 1)
    assert topic == requests
    request = json.loads(message)
    assert (request["name"], request["version"]) == ("OpenWRT", "22.03")

    child.pub(responses, json.dumps({"id": request["id"], "status": "executing"}), *CREDENTIALS)
    assert api.wait_update(update_id, lambda u: u["state"] == "downloading")["state"] == (
        "downloading"
    )
    image = tmp_path / "image"
    Child.curl(request["url"], image)
    assert sha256(image.read_bytes()) == request["sha256"]
    # an anonymous client may not answer for the child
    spoofed = json.dumps({"id": request["id"], "status": "failed", "reason": "spoofed"})
    child.pub(responses, spoofed)
    assert api.wait_for(lambda: f"may not publish to '{responses}'" in hub.log())
    assert api.update(update_id)["state"] == "downloading"
    child.pub(responses, json.dumps({"id": request["id"], "status": "successful"}), *CREDENTIALS)
    done = api.wait_update(update_id, lambda u: u["state"] == "succeeded")
    assert done["state"] == "succeeded"
