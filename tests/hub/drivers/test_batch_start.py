"""Updates started as a batch (``POST /updates/batch``) reach each device as one at a time would.

The drivers start a batch's updates together (claims, driver states and the
move to ``sent`` a batch at a time): each device must still get its own
command. Devices are played with paho against a real ``otahub serve``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.hubproc import HubProcess
from tests.interop.paho_client import PahoClient
from tests.polling import wait_for

pytestmark = pytest.mark.interop

IMAGE = b"one image for a batch\n" * 700
SOURCES = {"te": "thin-edge", "legacy": "tedge-legacy", "tb": "driver:thingsboard"}


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[HubProcess]:
    proc = HubProcess(data_dir=tmp_path / "data", extra_args=["--no-auth"]).start()
    try:
        yield proc
    finally:
        proc.stop()
        assert "Traceback" not in proc.log()


def test_each_device_of_a_batch_gets_its_own_command(hub: HubProcess) -> None:
    api = httpx.Client(base_url=f"{hub.http_url}/api/v1", timeout=30)
    r = api.post("/firmware", params={"title": "fw", "version": "2.0"}, content=IMAGE)
    assert r.status_code == 201, r.text
    clients: dict[str, PahoClient] = {}
    for n in (1, 2):
        child = f"te-{n}"
        te = clients[child] = PahoClient(hub.mqtt_port, child)
        assert te.connect() == 0
        te.publish(f"te/device/{child}//", json.dumps({"@type": "child-device"}), 1, True)
        te.publish(f"te/device/{child}///cmd/firmware_update", "{}", 1, True)
        te.subscribe(f"te/device/{child}///cmd/firmware_update/+", 1)

        legacy = f"legacy-{n}"
        r = api.post("/devices", json={"name": legacy, "dialect": "tedge-legacy"})
        assert r.status_code == 201, r.text
        clients[legacy] = PahoClient(hub.mqtt_port, legacy)
        assert clients[legacy].connect() == 0
        clients[legacy].subscribe(f"tedge/{legacy}/commands/req/firmware_update", 1)

        tb = f"tb-{n}"
        r = api.post("/devices", json={"name": tb, "dialect": "thingsboard", "token": f"T{n}"})
        assert r.status_code == 201, r.text
        clients[tb] = PahoClient(hub.mqtt_port, tb, username=f"T{n}")
        assert clients[tb].connect() == 0
        clients[tb].subscribe("v1/devices/me/attributes", 1)
    for n in (1, 2):  # forced below: their capability need not have been seen yet
        wait_for(lambda n=n: api.get(f"/devices/te-{n}").status_code, lambda s: s == 200)
    names = sorted(clients)
    items = [{"device": name, "title": "fw", "version": "2.0", "force": True} for name in names]
    r = api.post("/updates/batch", json=items)
    assert r.status_code == 200, r.text
    r = r.json()
    assert (r["created"], r["refused"]) == (len(names), 0), r
    ids = {item["device"]: item["update"]["id"] for item in r["items"]}
    sha256 = hashlib.sha256(IMAGE).hexdigest()

    for name in names:
        message = clients[name].expect(10)
        body = json.loads(message.payload)
        if name.startswith("te-"):
            assert message.topic.startswith(f"te/device/{name}///cmd/firmware_update/otahub-")
            assert (body["status"], body["name"], body["version"]) == ("init", "fw", "2.0")
            assert body["sha256"] == sha256 and f"/{name}/firmware_update/" in body["tedgeUrl"]
        elif name.startswith("legacy-"):
            assert message.topic == f"tedge/{name}/commands/req/firmware_update"
            assert (body["name"], body["version"], body["sha256"]) == ("fw", "2.0", sha256)
            assert body["attempt"] == 1 and f"/{name}/firmware_update/" in body["url"]
        else:
            # the assignment: the values, and the deletion of the keys it leaves unset
            assert message.topic == "v1/devices/me/attributes"
            if "deleted" in body:
                assert body == {"deleted": ["fw_tag", "fw_url"]}
                body = json.loads(clients[name].expect(10).payload)
            assert (body["fw_title"], body["fw_version"]) == ("fw", "2.0")
            assert body["fw_size"] == len(IMAGE) and body["fw_checksum"] == sha256
        clients[name].expect_none()  # one command each, no more
        update = wait_for(
            lambda name=name: api.get(f"/updates/{ids[name]}").json(),
            lambda u: u["state"] != "pending",
        )
        assert update["state"] == "sent", update
        sources = [t["source"] for t in update["transitions"]]
        assert sources == ["api", SOURCES[name.split("-")[0]]]
    for client in clients.values():
        client.disconnect()
