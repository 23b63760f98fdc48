"""Assignment lifecycle: pacing, unassignment, device types, the stuck-update timeout."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest

from tests.hubproc import HubProcess
from tests.interop.paho_client import V5, PahoClient
from tests.interop.tbhub import TbHub

pytestmark = pytest.mark.interop

IMAGE = os.urandom(5000)
NINE = [
    "fw_title",
    "fw_version",
    "fw_ts",
    "fw_tag",
    "fw_url",
    "fw_size",
    "fw_checksum",
    "fw_checksum_algorithm",
    "fw_state",
]


@pytest.fixture(scope="module")
def tb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TbHub]:
    # 4 notifications per second and a 2 s stuck-update timeout
    hub = HubProcess(
        data_dir=tmp_path_factory.mktemp("tb-life") / "data",
        extra_args=["--no-auth", "--notify-rate", "4", "--update-timeout", "2"],
    )
    hub.start()
    client = TbHub(hub)
    client.upload("life", "1", IMAGE)
    client.upload("life", "2", IMAGE[::-1])
    try:
        yield client
    finally:
        client.close()
        hub.stop()
        assert "Traceback" not in hub.log()


def _listening(tb: TbHub, name: str, device_type: str | None = None) -> PahoClient:
    tb.add_device(name, f"tok-{name}", device_type)
    dev = PahoClient(tb.mqtt_port, name, V5, username=f"tok-{name}")
    assert dev.connect() == 0
    assert dev.subscribe("v1/devices/me/attributes", 1)[0] == 1
    return dev


def test_notifications_are_paced(tb: TbHub) -> None:
    devices = [_listening(tb, f"paced-{i}") for i in range(6)]
    for i in range(6):
        tb.start_update(f"paced-{i}", "life", "1", timeout=60)
    arrivals = []
    for dev in devices:
        while True:
            message = dev.expect(10)
            if "fw_title" in json.loads(message.payload):
                arrivals.append(message.timestamp)  # monotonic, when received
                break
        dev.disconnect()
    # 4 per second in packs of one: six releases span at least 5 intervals of 0.25 s
    assert max(arrivals) - min(arrivals) >= 1.0


def test_cancel_pushes_the_nine_deletions(tb: TbHub) -> None:
    dev = _listening(tb, "cancel-1")
    update_id = tb.start_update("cancel-1", "life", "1", timeout=60)
    assert json.loads(dev.expect(5).payload) == {"deleted": ["fw_tag", "fw_url"]}
    assert json.loads(dev.expect(5).payload)["fw_version"] == "1"
    tb.call("POST", f"/updates/{update_id}/cancel")
    assert json.loads(dev.expect(5).payload) == {"deleted": NINE}
    dev.publish("v1/devices/me/attributes/request/1", b"{}", qos=1)
    assert json.loads(dev.expect(5).payload) == {}
    dev.disconnect()


def test_silent_device_update_fails_after_the_timeout(tb: TbHub) -> None:
    dev = _listening(tb, "silent-1")
    update_id = tb.start_update("silent-1", "life", "1")
    tb.wait_update(update_id, "sent", timeout=10)
    update = tb.wait_update(update_id, ("failed",), timeout=15)
    assert update["code"] == "timeout"
    assert "sent" in update["reason"]
    dev.disconnect()


def test_device_type_assignment_and_device_override(tb: TbHub) -> None:
    typed = _listening(tb, "typed-1", "sensor")
    other = _listening(tb, "typed-2", "sensor")
    result = tb.call(
        "PUT", "/device-types/sensor/assignment", json={"title": "life", "version": "1"}
    )
    assert (result["device_type"], result["kind"], result["version"]) == ("sensor", "firmware", "1")
    for dev in (typed, other):
        messages = [json.loads(dev.expect(5).payload) for _ in range(2)]
        assert messages[1]["fw_version"] == "1"
    # the device's own package overrides its type's
    own = tb.start_update("typed-1", "life", "2", timeout=60)
    pushed = [json.loads(typed.expect(5).payload) for _ in range(2)]
    assert pushed[1]["fw_version"] == "2"
    updates = tb.call("GET", "/updates", params={"device": "typed-1"})
    assert updates[0]["id"] == own
    assert updates[1]["state"] == "canceled"  # the type's update yielded
    # canceling it brings the type's package back
    tb.call("POST", f"/updates/{own}/cancel")
    back = [json.loads(typed.expect(5).payload) for _ in range(2)]
    assert back[1]["fw_version"] == "1"
    listed = tb.call("GET", "/device-types/assignments")
    assert [(a["device_type"], a["version"]) for a in listed] == [("sensor", "1")]
    # removing the type's assignment deletes the attributes of its devices
    tb.call("DELETE", "/device-types/sensor/assignment")
    assert json.loads(other.expect(5).payload) == {"deleted": NINE}
    typed.disconnect()
    other.disconnect()


def test_device_type_cli(tb: TbHub) -> None:
    import subprocess
    import sys

    def cli(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "otahub", "device-type", *args, "--server", tb.hub.http_url],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "firmware life 2" in cli("assign", "gateway", "life", "2")
    assert "gateway firmware life 2" in " ".join(cli("list").split())
    assert "unassigned" in cli("unassign", "gateway")
    assert "gateway" not in cli("list")


def test_forced_delete_of_an_updating_device_pushes_the_nine_deletions(tb: TbHub) -> None:
    dev = _listening(tb, "deleted-1")
    update_id = tb.start_update("deleted-1", "life", "1", timeout=60)
    assert json.loads(dev.expect(5).payload) == {"deleted": ["fw_tag", "fw_url"]}
    assert json.loads(dev.expect(5).payload)["fw_version"] == "1"
    refused = tb.call("DELETE", "/devices/deleted-1", expect=409)
    assert refused["active_updates"] == [update_id]
    tb.call("DELETE", "/devices/deleted-1", expect=204, params={"force": "true"})
    # canceled the ordinary way first: the device is told its package is unassigned
    assert json.loads(dev.expect(5).payload) == {"deleted": NINE}
    assert tb.update(update_id)["state"] == "canceled"
    dev.disconnect()


def test_deleting_a_device_closes_its_sessions(tb: TbHub) -> None:
    dev = _listening(tb, "deleted-2")
    tb.call("DELETE", "/devices/deleted-2", params={"force": "true"}, expect=204)
    assert dev.wait_disconnected(10)
    # and its token no longer opens one
    again = PahoClient(tb.mqtt_port, "deleted-2-again", V5, username="tok-deleted-2")
    assert again.connect() != 0
