"""Seed 000 step by step: a thin-edge child typed with mosquitto_pub/sub and curl.

The hub plays the gateway's requester. Every test runs twice: against the
hub's own MQTT endpoint, and with the hub connected as a client
(``--broker``) to a real mosquitto that the child uses, as on a gateway.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.hubproc import HubProcess
from tests.interop.tedge_child import (
    HAVE_CLIENTS,
    MOSQUITTO,
    Api,
    Child,
    Mosquitto,
    payload_with,
    sha256,
)

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(not HAVE_CLIENTS, reason="needs mosquitto-clients and curl"),
]

FIRMWARE = b"my firmware 2 version 1.0.1\n" * 5000


@pytest.fixture(
    scope="module",
    params=[
        "own-endpoint",
        pytest.param(
            "external-broker",
            marks=pytest.mark.skipif(
                not Path(MOSQUITTO).exists(), reason="needs the mosquitto broker"
            ),
        ),
    ],
)
def setup(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[HubProcess, Child, Api]]:
    root = tmp_path_factory.mktemp(request.param)
    broker = None
    args = ["--no-auth"]
    if request.param == "external-broker":
        broker = Mosquitto(root / "mosquitto").start()
        args += ["--broker", f"mqtt://127.0.0.1:{broker.port}"]
    hub = HubProcess(data_dir=root / "data", extra_args=args).start()
    child = Child(broker.port if broker else hub.mqtt_port)
    api = Api(hub)
    try:
        yield hub, child, api
    finally:
        hub.stop()
        if broker is not None:
            broker.stop()


def announce(child: Child, api: Api, name: str, version: str = "1.0.0") -> None:
    """Seed 000 steps 1-3, then wait until the hub has seen the twin."""
    child.pub(
        f"te/device/{name}//",
        '{\n  "@type": "child-device",\n  "name": "Child 03",\n  "type": "RaspberryPi4"\n}',
        "-r",
    )
    child.pub(f"te/device/{name}///cmd/firmware_update", "{}", "-r")
    child.pub(
        f"te/device/{name}///twin/firmware",
        f'{{"name": "my firmware 2", "version":"{version}"}}',
        "-r",
    )
    assert api.wait_for(
        lambda: (
            api.device(name).status_code == 200
            and api.device(name).json()["firmware"]["version"] == version
        )
    )


def receive_init(child: Child, name: str) -> tuple[str, dict[str, Any]]:
    """Seed 000 steps 4-5: subscribe and get the retained init command."""
    sub = child.sub(f"te/device/{name}///cmd/firmware_update/+", 1)
    topic, message = Child.lines(sub)[0].split(" ", 1)
    return topic, json.loads(message)


def test_seed_000_walkthrough(setup: tuple[HubProcess, Child, Api], tmp_path: Path) -> None:
    hub, child, api = setup
    name = "child03"
    announce(child, api, name)
    device = api.device(name).json()
    assert (device["dialect"], device["device_type"]) == ("thin-edge", "RaspberryPi4")
    package = api.upload("my firmware 2", "1.0.1", FIRMWARE)
    created = api.start(name, "my firmware 2", "1.0.1")
    assert created.status_code == 201, created.text
    update_id = created.json()["id"]

    # 4./5. subscribed after the hub published: the command is retained
    topic, command = receive_init(child, name)
    assert topic.startswith(f"te/device/{name}///cmd/firmware_update/otahub-")
    assert command["status"] == "init"
    assert (command["name"], command["version"]) == ("my firmware 2", "1.0.1")
    assert command["sha256"] == package["sha256"] == sha256(FIRMWARE)
    assert command["size"] == len(FIRMWARE)
    assert command["tedgeUrl"].startswith(f"{hub.http_url}/te/v1/files/{name}/firmware_update/")
    assert command["remoteUrl"] == f"{hub.http_url}/api/v1/firmware/{package['id']}/content"
    assert api.update(update_id)["state"] == "sent"

    # 6. executing, echoing the whole payload
    child.pub(topic, payload_with(command, status="executing"), "-r")
    assert api.wait_update(update_id, lambda u: u["state"] == "downloading")["state"] == (
        "downloading"
    )

    # 7. download tedgeUrl (resumed halfway, as a child on a flaky link would)
    image = tmp_path / "image.bin"
    headers = Child.curl(command["tedgeUrl"], image, "-r", "0-9999")
    assert "206" in headers.splitlines()[0]
    with image.open("ab") as out:
        rest = tmp_path / "rest.bin"
        Child.curl(command["tedgeUrl"], rest, "-r", "10000-")
        out.write(rest.read_bytes())
    assert sha256(image.read_bytes()) == command["sha256"]
    # a custom intermediate status is progress
    child.pub(topic, payload_with(command, status="verifying"), "-r")
    assert api.wait_update(update_id, lambda u: u["state"] == "installing")["state"] == (
        "installing"
    )

    # 9. the new twin, then successful
    twin_topic = f"te/device/{name}///twin/firmware"
    child.pub(twin_topic, '{"name": "my firmware 2", "version":"1.0.1"}', "-r")
    child.pub(topic, payload_with(command, status="successful"), "-r")
    done = api.wait_update(update_id, lambda u: u["state"] == "succeeded")
    assert done["state"] == "succeeded"
    assert [t["to_state"] for t in done["transitions"]] == [
        "pending",
        "sent",
        "downloading",
        "installing",
        "succeeded",
    ]
    assert done["transitions"][-1]["source"] == "thin-edge:successful"
    # the requester cleared the command and published the twin with the URL
    assert api.wait_for(lambda: child.retained(f"te/device/{name}///cmd/firmware_update/+") == [])
    assert child.retained(twin_topic) == [
        (
            twin_topic,
            json.dumps(
                {"name": "my firmware 2", "version": "1.0.1", "url": command["remoteUrl"]},
                separators=(",", ":"),
            ),
        )
    ]
    assert api.device(name).json()["firmware"] == {"title": "my firmware 2", "version": "1.0.1"}
    # the file link goes with the update; the package stays in the API
    assert httpx.get(command["tedgeUrl"]).status_code == 404
    assert httpx.get(command["remoteUrl"]).status_code == 200


def test_seed_000_failed_with_reason(setup: tuple[HubProcess, Child, Api]) -> None:
    _hub, child, api = setup
    name = "child04"
    announce(child, api, name)
    api.upload("my firmware 2", "1.0.1", FIRMWARE)
    update_id = api.start(name, "my firmware 2", "1.0.1").json()["id"]
    topic, command = receive_init(child, name)
    child.pub(topic, payload_with(command, status="executing"), "-r")
    # 10. failed, with the seed's spacing
    failed = payload_with(command, status="failed", reason="your failure reason here")
    child.pub(topic, failed.replace('"failed", ', '"failed",  '), "-r")
    done = api.wait_update(update_id, lambda u: u["state"] == "failed")
    assert (done["state"], done["reason"]) == ("failed", "your failure reason here")
    assert api.wait_for(lambda: child.retained(topic) == [])
    # the twin still says what the child runs
    assert api.device(name).json()["firmware"]["version"] == "1.0.0"


def test_capability_required_unless_forced(setup: tuple[HubProcess, Child, Api]) -> None:
    _hub, child, api = setup
    api.upload("my firmware 2", "1.0.1", FIRMWARE)
    # registered only, no capability
    child.pub("te/device/child05//", '{"@type": "child-device", "name": "Child 05"}', "-r")
    assert api.wait_for(lambda: api.device("child05").status_code == 200)
    refused = api.start("child05", "my firmware 2", "1.0.1")
    assert refused.status_code == 409
    assert "has not announced the firmware_update capability" in refused.json()["detail"]
    forced = api.start("child05", "my firmware 2", "1.0.1", force=True)
    assert forced.status_code == 201, forced.text
    receive_init(child, "child05")
    # the operator cancels: the hub clears its command
    api.client.post(f"/updates/{forced.json()['id']}/cancel")
    assert api.wait_for(lambda: child.retained("te/device/child05///cmd/firmware_update/+") == [])

    # a device added by name gets updates once it announces the capability
    added = api.client.post("/devices", json={"name": "child06", "dialect": "thin-edge"})
    assert added.status_code == 201
    assert api.start("child06", "my firmware 2", "1.0.1").status_code == 409
    child.pub("te/device/child06///cmd/firmware_update", "{}", "-r")
    assert api.wait_for(lambda: api.start("child06", "my firmware 2", "1.0.1").status_code == 201)
    receive_init(child, "child06")
    # withdrawing the capability (empty retained) refuses the next one again
    child.pub("te/device/child06///cmd/firmware_update", None, "-r")
    assert api.wait_for(
        lambda: api.start("child06", "my firmware 2", "1.0.1", replace=True).status_code == 409
    )


def test_bad_input_is_ignored(setup: tuple[HubProcess, Child, Api]) -> None:
    hub, child, api = setup
    child.pub("te/device/child07//", "not json", "-r")
    child.pub("te/device/child07///cmd/firmware_update", "[1]", "-r")
    child.pub("te/device/child07///twin/firmware", '{"version": 7}', "-r")
    child.pub("te/device/child07///cmd/firmware_update/otahub-999-abc", '{"status": 1}')
    child.pub("te/device/child07///cmd/firmware_update/otahub-999-abc", '{"status": "executing"}')
    child.pub("te/device/bad name//", '{"@type": "child-device"}')
    # another requester's command (a co-located c8y mapper) is left alone
    foreign = "te/device/child08///cmd/firmware_update/c8y-mapper-210293"
    child.pub(foreign, '{"status":"successful","name":"x","version":"1"}', "-r")
    announce(child, api, "child08")  # still serving
    assert [t for t, _ in child.retained(foreign)] == [foreign]
    child.pub(foreign, None, "-r")
    assert api.device("child07").status_code == 404
    assert "Traceback" not in hub.log()
    for topic in ("te/device/child07//", "te/device/child07///cmd/firmware_update"):
        child.pub(topic, None, "-r")
    child.pub("te/device/child07///twin/firmware", None, "-r")


def test_cli_refuses_without_capability(setup: tuple[HubProcess, Child, Api]) -> None:
    hub, child, api = setup
    api.upload("my firmware 2", "1.0.1", FIRMWARE)
    child.pub("te/device/child09//", '{"@type": "child-device"}', "-r")
    assert api.wait_for(lambda: api.device("child09").status_code == 200)
    command = [sys.executable, "-m", "otahub", "update", "start", "--server", hub.http_url]
    command += ["--device", "child09", "--title", "my firmware 2", "--version", "1.0.1"]
    refused = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert refused.returncode != 0
    assert "has not announced the firmware_update capability" in refused.stderr
    forced = subprocess.run([*command, "--force"], capture_output=True, text=True, timeout=30)
    assert forced.returncode == 0, forced.stderr
    assert "started" in forced.stdout


def test_hub_restart_keeps_the_running_command(setup: tuple[HubProcess, Child, Api]) -> None:
    """Like the ESP32 client's reboot, but the hub restarts: the command is still there."""
    hub, child, api = setup
    name = "child10"
    announce(child, api, name)
    api.upload("my firmware 2", "1.0.1", FIRMWARE)
    update_id = api.start(name, "my firmware 2", "1.0.1").json()["id"]
    topic, command = receive_init(child, name)
    child.pub(topic, payload_with(command, status="executing"), "-r")
    assert api.wait_update(update_id, lambda u: u["state"] == "downloading")["state"] == (
        "downloading"
    )
    hub.stop()
    hub.start()
    again_topic, again = receive_init(child, name)
    assert (again_topic, again) == (topic, {**command, "status": "executing"})
    child.pub(f"te/device/{name}///twin/firmware", '{"name":"my firmware 2","version":"1.0.1"}')
    child.pub(topic, payload_with(command, status="successful"), "-r")
    done = api.wait_update(update_id, lambda u: u["state"] == "succeeded")
    assert done["state"] == "succeeded"
    assert api.wait_for(lambda: child.retained(topic) == [])


def test_device_delete_refused_while_updating_and_forced_delete_clears_command_and_file_link(
    setup: tuple[HubProcess, Child, Api],
) -> None:
    _hub, child, api = setup
    name = "child07"
    announce(child, api, name)
    api.upload("my firmware 2", "1.0.1", FIRMWARE)
    update_id = api.start(name, "my firmware 2", "1.0.1").json()["id"]
    topic, command = receive_init(child, name)
    child.pub(topic, payload_with(command, status="executing"), "-r")
    assert api.wait_update(update_id, lambda u: u["state"] == "downloading")["state"] == (
        "downloading"
    )
    assert httpx.get(command["tedgeUrl"]).status_code == 200

    refused = api.client.delete(f"/devices/{name}")
    assert refused.status_code == 409, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["active_updates"] == [update_id]
    assert str(update_id) in refused.json()["detail"]
    assert api.update(update_id)["state"] == "downloading"
    assert child.retained(topic) != []

    assert api.client.delete(f"/devices/{name}", params={"force": "true"}).status_code == 204
    assert api.device(name).status_code == 404
    # what the hub published for the update is gone: the retained command and the file link
    assert api.wait_for(lambda: child.retained(f"te/device/{name}///cmd/firmware_update/+") == [])
    assert httpx.get(command["tedgeUrl"]).status_code == 404
    # the history stays, canceled, no longer tied to a device
    kept = api.update(update_id)
    assert (kept["state"], kept["device"], kept["device_id"]) == ("canceled", name, None)
    assert kept["transitions"][-1]["reason"] == f"device {name} deleted"


def test_online_follows_the_agent_health_through_either_broker(
    setup: tuple[HubProcess, Child, Api],
) -> None:
    # thin-edge's health endpoint: the service standing for the device (tedge-agent
    # unless the registration's @health names another) says up, or its will says down.
    _, child, api = setup
    announce(child, api, "child-health")
    assert api.device("child-health").json()["online"] is False
    health = "te/device/child-health/service/tedge-agent/status/health"
    child.pub(health, '{"pid": 4711, "status": "up", "time": 1674739912}', "-r")
    assert api.wait_for(lambda: api.device("child-health").json()["online"] is True)
    child.pub(health, '{"status": "down"}', "-r")
    assert api.wait_for(lambda: api.device("child-health").json()["online"] is False)
