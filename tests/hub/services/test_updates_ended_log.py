"""A running hub logs one line for every update that ends, however it ends."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable

from otahub.mqtt.packets import Connack, Connect
from tests.agent.hubapi import api, register, upload, wait_state
from tests.hubproc import HubProcess
from tests.mqtt.rawclient import RawClient

ENDED = re.compile(
    r"update (?P<id>\d+) ended: device=(?P<device>\S+) dialect=(?P<dialect>\S+) "
    r"(?P<kind>\S+) (?P<title>\S+) (?P<from>\S+) -> (?P<to>\S+) state=(?P<state>\S+) "
    r"duration=(?P<duration>[0-9.]+)s reason=(?P<reason>.*)$"
)


def _ended_lines(hub: HubProcess) -> dict[int, dict[str, str]]:
    found: dict[int, dict[str, str]] = {}
    for line in hub.log().splitlines():
        match = ENDED.search(line)
        if match is not None:
            assert int(match["id"]) not in found, f"update {match['id']} logged twice"
            found[int(match["id"])] = match.groupdict()
    return found


def _wait_logged(hub: HubProcess, count: int) -> dict[int, dict[str, str]]:
    deadline = time.monotonic() + 60
    while len(lines := _ended_lines(hub)) < count and time.monotonic() < deadline:
        time.sleep(0.1)
    return lines


async def _device_running(hub: HubProcess, name: str, token: str, version: str) -> RawClient:
    """A raw ThingsBoard device that has reported ``version`` of meter-fw, as the hub saw."""
    device = await RawClient.open(hub.mqtt_port)
    await device.send(Connect(client_id=name, protocol_level=4, username=token))
    assert isinstance(await device.recv(), Connack)
    telemetry = {"current_fw_title": "meter-fw", "current_fw_version": version}
    await device.publish("v1/devices/me/telemetry", json.dumps(telemetry).encode(), qos=1)
    with api(hub) as client:
        deadline = time.monotonic() + 30
        while client.get(f"/devices/{name}").json()["firmware"]["version"] != version:
            assert time.monotonic() < deadline, "the device's version never arrived"
            await asyncio.sleep(0.05)
    return device


def test_every_update_that_ends_is_logged_once_with_how_it_ended(
    hub_factory: Callable[..., HubProcess],
) -> None:
    hub = hub_factory("--no-auth", "--update-timeout", "3")
    register(hub, name="meter-1", dialect="thingsboard", token="tok-1")
    register(hub, name="meter-2", dialect="thingsboard", token="tok-2")
    for version in ("1.0.1", "1.0.2"):
        upload(hub, "meter-fw", version, version.encode() * 1000)

    async def run() -> None:
        device = await _device_running(hub, "meter-1", "tok-1", "1.0.0")
        with api(hub) as client:
            r = client.post(
                "/updates", json={"device": "meter-1", "title": "meter-fw", "version": "1.0.1"}
            )
            assert r.status_code == 201, r.text
            succeeded = int(r.json()["id"])
            await device.publish(
                "v1/devices/me/telemetry",
                json.dumps(
                    {
                        "fw_state": "UPDATED",
                        "current_fw_title": "meter-fw",
                        "current_fw_version": "1.0.1",
                    }
                ).encode(),
                qos=1,
            )
            await wait_state(hub, succeeded, "succeeded")
            r = client.post(
                "/updates", json={"device": "meter-2", "title": "meter-fw", "version": "1.0.1"}
            )
            canceled = int(r.json()["id"])
            assert client.post(f"/updates/{canceled}/cancel").status_code == 200
            r = client.post(
                "/updates", json={"device": "meter-2", "title": "meter-fw", "version": "1.0.2"}
            )
            timed_out = int(r.json()["id"])  # meter-2 is offline: nothing happens
            await wait_state(hub, timed_out, "failed")
        device.close()
        lines = _wait_logged(hub, 3)
        assert lines[succeeded] | {"duration": "-"} == {
            "id": str(succeeded),
            "device": "meter-1",
            "dialect": "thingsboard",
            "kind": "firmware",
            "title": "meter-fw",
            "from": "1.0.0",
            "to": "1.0.1",
            "state": "succeeded",
            "duration": "-",
            "reason": "-",
        }
        assert (lines[canceled]["from"], lines[canceled]["state"]) == ("none", "canceled")
        assert lines[canceled]["reason"] == "canceled"
        assert (lines[timed_out]["to"], lines[timed_out]["state"]) == ("1.0.2", "failed")
        assert lines[timed_out]["reason"].startswith("timed out"), lines[timed_out]
        assert float(lines[timed_out]["duration"]) >= 3

    asyncio.run(run())


def test_the_from_version_outlives_a_hub_restart(
    hub_factory: Callable[..., HubProcess],
) -> None:
    hub = hub_factory("--no-auth")
    register(hub, name="meter-3", dialect="thingsboard", token="tok-3")
    upload(hub, "meter-fw", "2.0.1", b"2.0.1" * 1000)

    async def run() -> int:
        device = await _device_running(hub, "meter-3", "tok-3", "2.0.0")
        with api(hub) as client:
            r = client.post(
                "/updates", json={"device": "meter-3", "title": "meter-fw", "version": "2.0.1"}
            )
            assert r.status_code == 201, r.text
            assert r.json()["from_version"] == "2.0.0"
        device.close()
        return int(r.json()["id"])

    update_id = asyncio.run(run())
    hub.stop()
    hub.start()
    with api(hub) as client:
        assert client.post(f"/updates/{update_id}/cancel").status_code == 200
    line = _wait_logged(hub, 1)[update_id]
    assert (line["from"], line["to"], line["state"]) == ("2.0.0", "2.0.1", "canceled")
