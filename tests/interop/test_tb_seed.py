"""Seed 003 replayed with paho-mqtt (MQTT 3.1.1 and 5) against ``otahub serve``."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator

import pytest

from tests.hubproc import HubProcess
from tests.interop.paho_client import V5, V311, PahoClient
from tests.interop.tbhub import TbHub

pytestmark = pytest.mark.interop

IMAGE = os.urandom(40_000)
CHUNK = 8192


@pytest.fixture(scope="module")
def tb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TbHub]:
    hub = HubProcess(data_dir=tmp_path_factory.mktemp("tb-seed") / "data", extra_args=["--no-auth"])
    hub.start()
    client = TbHub(hub)
    client.upload("CIM-168", "1.0.1", IMAGE)
    try:
        yield client
    finally:
        client.close()
        hub.stop()
        assert "Traceback" not in hub.log()


def _telemetry(dev: PahoClient, version: str, state: str | None = None) -> None:
    body = {"current_fw_title": "CIM-168", "current_fw_version": version}
    if state:
        body["fw_state"] = state
    dev.publish("v1/devices/me/telemetry", json.dumps(body, separators=(",", ":")), qos=1)


def _wait_initiated(tb: TbHub, token: str) -> None:
    """The paced notification saves the attributes shortly after the assignment."""
    probe = PahoClient(tb.mqtt_port, f"probe-{token}", V5, username=token)
    assert probe.connect() == 0
    try:
        for request_id in range(1, 200):
            probe.publish(f"v1/devices/me/attributes/request/{request_id}", b"{}", qos=1)
            if json.loads(probe.expect().payload):
                return
            time.sleep(0.05)
        raise AssertionError("the assignment was never initiated")
    finally:
        probe.disconnect()


@pytest.mark.parametrize("protocol", [V311, V5], ids=["mqtt311", "mqtt5"])
def test_seed_003_sequence(tb: TbHub, protocol: object) -> None:
    name = f"CIM-168-{'5' if protocol == V5 else '3'}"
    tb.add_device(name, f"seed-token-{name}")
    first = tb.start_update(name, "CIM-168", "1.0.1")
    _wait_initiated(tb, f"seed-token-{name}")
    dev = PahoClient(tb.mqtt_port, f"client-{name}", protocol, username=f"seed-token-{name}")  # type: ignore[arg-type]
    assert dev.connect() == 0
    try:
        # 1-3: report, subscribe, request the firmware attributes
        _telemetry(dev, "1.0.0")
        assert dev.subscribe("v1/devices/me/attributes/response/+", 1)[0] == 1
        dev.publish(
            "v1/devices/me/attributes/request/1",
            '{"sharedKeys":"fw_title,fw_version,fw_size,fw_checksum,fw_checksum_algorithm"}',
            qos=1,
        )
        response = dev.expect()
        assert response.topic == "v1/devices/me/attributes/response/1"
        shared = {
            "fw_title": "CIM-168",
            "fw_version": "1.0.1",
            "fw_size": len(IMAGE),
            "fw_checksum_algorithm": "SHA256",
            "fw_checksum": hashlib.sha256(IMAGE).hexdigest(),
        }
        assert json.loads(response.payload) == {"shared": shared}
        tb.wait_update(first, "sent")
        # 4: subscribe for pushes; the operator assigns the same package again:
        # the device is told it was unassigned, then gets the assignment's push
        assert dev.subscribe("v1/devices/me/attributes", 1)[0] == 1
        second = tb.start_update(name, "CIM-168", "1.0.1", replace=True)
        unassigned = json.loads(dev.expect().payload)
        assert unassigned["deleted"][:2] == ["fw_title", "fw_version"]
        assert len(unassigned["deleted"]) == 9
        deleted = dev.expect()
        assert deleted.topic == "v1/devices/me/attributes"
        assert json.loads(deleted.payload) == {"deleted": ["fw_tag", "fw_url"]}
        pushed = dev.expect()
        assert json.loads(pushed.payload) == shared
        tb.wait_update(second, "sent")
        # 5-7: DOWNLOADING, then chunks until an empty one
        _telemetry(dev, "1.0.0", "DOWNLOADING")
        assert dev.subscribe("v2/fw/response/+/chunk/+", 1)[0] == 1
        image = b""
        for index in range(100):
            dev.publish(f"v2/fw/request/1/chunk/{index}", str(CHUNK), qos=1)
            chunk = dev.expect()
            assert chunk.topic == f"v2/fw/response/1/chunk/{index}"
            if not chunk.payload:
                break
            assert len(chunk.payload) == min(CHUNK, len(IMAGE) - len(image))
            image += chunk.payload
        assert image == IMAGE
        # 8-9: the rest of the states
        for state in ("DOWNLOADED", "VERIFIED", "UPDATING"):
            _telemetry(dev, "1.0.0", state)
        _telemetry(dev, "1.0.1", "UPDATED")
        update = tb.wait_update(second, ("succeeded", "failed"))
    finally:
        dev.disconnect()
    assert update["state"] == "succeeded"
    assert tb.states(first) == ["pending", "sent", "canceled"]
    assert tb.states(second) == [
        "pending",
        "sent",
        "downloading",
        "downloaded",
        "verified",
        "installing",
        "succeeded",
    ]
    assert tb.device(name)["firmware"] == {"title": "CIM-168", "version": "1.0.1"}
