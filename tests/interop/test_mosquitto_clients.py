"""Debian's mosquitto_pub / mosquitto_sub against ``otahub serve``, including seed 000."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.hubproc import HubProcess

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(shutil.which("mosquitto_pub") is None, reason="needs mosquitto-clients"),
]

VERSIONS = [pytest.param("mqttv311", id="3.1.1"), pytest.param("mqttv5", id="5.0")]


@pytest.fixture(scope="module")
def shared_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    hub = HubProcess(data_dir=tmp_path_factory.mktemp("mosq") / "data", extra_args=["--no-auth"])
    hub.start()
    yield hub
    hub.stop()


def pub(hub: HubProcess, topic: str, message: str, *args: str) -> None:
    subprocess.run(
        [
            "mosquitto_pub",
            "-h",
            "127.0.0.1",
            "-p",
            str(hub.mqtt_port),
            "-t",
            topic,
            "-m",
            message,
            *args,
        ],
        check=True,
        timeout=10,
    )


def sub(hub: HubProcess, topic: str, count: int, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            "mosquitto_sub",
            "-h",
            "127.0.0.1",
            "-p",
            str(hub.mqtt_port),
            "-t",
            topic,
            "-C",
            str(count),
            "-W",
            "10",
            "-v",
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def lines(proc: subprocess.Popen[str]) -> list[str]:
    out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    return out.splitlines()


def retained(hub: HubProcess, topic: str) -> list[str]:
    """What a fresh subscriber gets from the retained store (nothing: empty list)."""
    proc = subprocess.run(
        [
            "mosquitto_sub",
            "-h",
            "127.0.0.1",
            "-p",
            str(hub.mqtt_port),
            "-t",
            topic,
            "--retained-only",
            "-W",
            "1",
            "-v",
        ],
        capture_output=True,
        text=True,
        timeout=10,
    )
    return proc.stdout.splitlines()


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("qos", ["0", "1", "2"])
def test_pub_sub_each_qos(shared_hub: HubProcess, version: str, qos: str) -> None:
    topic = f"plain/{version}/{qos}"
    listener = sub(shared_hub, "plain/+/#", 1, "-q", qos, "-V", version)
    # mosquitto_sub does not say when it has subscribed: publish until it got one
    deadline = time.monotonic() + 10
    while listener.poll() is None and time.monotonic() < deadline:
        pub(shared_hub, topic, f"hello {qos}", "-q", qos, "-V", version)
        time.sleep(0.2)
    assert lines(listener) == [f"{topic} hello {qos}"]


@pytest.mark.parametrize("version", VERSIONS)
def test_seed_000_child_device_flow(shared_hub: HubProcess, version: str) -> None:
    """Seed 000 typed with mosquitto_pub -r / mosquitto_sub instead of tedge mqtt pub/sub."""
    child = f"child03-{version}"
    v = ("-V", version)
    # 1. register the child device, 2. announce the capability, 3. current firmware
    pub(
        shared_hub,
        f"te/device/{child}//",
        '{"@type": "child-device", "name": "Child 03", "type": "RaspberryPi4"}',
        "-r",
        *v,
    )
    pub(shared_hub, f"te/device/{child}///cmd/firmware_update", "{}", "-r", *v)
    pub(
        shared_hub,
        f"te/device/{child}///twin/firmware",
        '{"name": "my firmware 2", "version":"1.0.0"}',
        "-r",
        *v,
    )
    # the gateway publishes the command (retained) before the child subscribes
    command_topic = f"te/device/{child}///cmd/firmware_update/c8y-mapper-210293"
    init = {
        "status": "init",
        "tedgeUrl": "https://tedge:8001/c8y/inventory/binaries/77206248",
        "remoteUrl": "https://t40073098.cumulocity.com/inventory/binaries/77206248",
        "name": "my firmware 2",
        "version": "1.0.1",
    }
    pub(shared_hub, command_topic, json.dumps(init), "-r", "-q", "1", *v)
    # 4. subscribe for firmware updates, 5. the retained command arrives
    received = lines(sub(shared_hub, f"te/device/{child}///cmd/firmware_update/+", 1, *v))
    topic, _, payload = received[0].partition(" ")
    assert topic == command_topic
    assert json.loads(payload) == init
    # 6. executing, 9. new twin and successful
    pub(shared_hub, command_topic, json.dumps({**init, "status": "executing"}), "-r", *v)
    assert json.loads(retained(shared_hub, command_topic)[0].partition(" ")[2])["status"] == (
        "executing"
    )
    pub(
        shared_hub,
        f"te/device/{child}///twin/firmware",
        '{"name": "my firmware 2", "version":"1.0.1"}',
        "-r",
        *v,
    )
    pub(shared_hub, command_topic, json.dumps({**init, "status": "successful"}), "-r", *v)
    state = dict(line.split(" ", 1) for line in retained(shared_hub, f"te/device/{child}/#"))
    assert json.loads(state[command_topic])["status"] == "successful"
    assert json.loads(state[f"te/device/{child}///twin/firmware"])["version"] == "1.0.1"
    assert json.loads(state[f"te/device/{child}//"])["@type"] == "child-device"
    # the requester clears the command with an empty retained message
    pub(shared_hub, command_topic, "", "-r", *v)
    assert retained(shared_hub, command_topic) == []
