"""The thin-edge driver in ``otahub serve``: online from what the protocol shows, and restarts.

Children are played with paho as seed 000 types them; the hub runs as a
real process on its own MQTT endpoint, and is killed with SIGKILL where a
crash is the point.
"""

from __future__ import annotations

import json
import signal
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.hubproc import HubProcess
from tests.interop.paho_client import PahoClient
from tests.polling import wait_for

pytestmark = pytest.mark.interop

IMAGE = b"thin-edge image\n" * 1000


class Hub:
    def __init__(self, root: Path) -> None:
        self.proc = HubProcess(data_dir=root / "data", extra_args=["--no-auth"]).start()
        self.http = httpx.Client(base_url=f"{self.proc.http_url}/api/v1", timeout=30)

    def device(self, name: str) -> dict[str, Any]:
        """The device, or {} while the hub has not registered it yet."""
        response = self.http.get(f"/devices/{name}")
        assert response.status_code in (200, 404), response.text
        body: dict[str, Any] = response.json() if response.status_code == 200 else {}
        return body

    def update(self, update_id: int) -> dict[str, Any]:
        body: dict[str, Any] = self.http.get(f"/updates/{update_id}").json()
        return body

    def wait(
        self, what: Callable[[], dict[str, Any]], ready: Callable[[dict[str, Any]], bool]
    ) -> dict[str, Any]:
        return wait_for(what, ready)

    def restart(self, sig: int) -> None:
        self.proc.stop(sig)
        self.proc.start()

    def close(self) -> None:
        self.http.close()
        self.proc.stop()


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    running = Hub(tmp_path)
    response = running.http.post(
        "/firmware", params={"title": "fw", "version": "2.0"}, content=IMAGE
    )
    assert response.status_code == 201, response.text
    try:
        yield running
    finally:
        running.close()
        assert "Traceback" not in running.proc.log()


def child(hub: Hub, name: str, *, subscribe: bool = True) -> PahoClient:
    """Seed 000, steps 1-4: registration, capability, twin, then the command subscription."""
    client = PahoClient(hub.proc.mqtt_port, name)
    assert client.connect() == 0
    entity = f"te/device/{name}//"
    client.publish(entity, json.dumps({"@type": "child-device", "type": "demo"}), 1, True)
    client.publish(f"te/device/{name}///cmd/firmware_update", "{}", 1, True)
    client.publish(f"te/device/{name}///twin/firmware", '{"name":"fw","version":"1.0"}', 1, True)
    if subscribe:
        client.subscribe(f"te/device/{name}///cmd/firmware_update/+", 1)
    return client


def test_child_is_online_while_its_session_waits_for_commands(hub: Hub) -> None:
    device = child(hub, "te-online")
    seen = hub.wait(lambda: hub.device("te-online"), lambda d: d.get("online") is True)
    assert seen["last_seen_at"] is not None
    device.disconnect()
    hub.wait(lambda: hub.device("te-online"), lambda d: d.get("online") is False)


def test_child_is_online_while_its_agent_reports_up(hub: Hub) -> None:
    # A connector that only registers (no subscription the hub could see) and
    # keeps its agent's health, with the broker's will saying "down" on a crash.
    device = child(hub, "te-health", subscribe=False)
    hub.wait(lambda: hub.device("te-health"), lambda d: "online" in d)
    assert hub.device("te-health")["online"] is False
    health = "te/device/te-health/service/tedge-agent/status/health"
    device.publish(health, '{"status":"up","pid":1}', 1, True)
    hub.wait(lambda: hub.device("te-health"), lambda d: d.get("online") is True)
    # another service's health says nothing about the device
    device.publish("te/device/te-health/service/other/status/health", '{"status":"down"}', 1, True)
    device.publish(health, '{"status":"down"}', 1, True)
    hub.wait(lambda: hub.device("te-health"), lambda d: d.get("online") is False)
    device.disconnect()


def _start_and_execute(hub: Hub, device: PahoClient, name: str) -> tuple[int, str, dict[str, Any]]:
    hub.wait(lambda: hub.device(name), lambda d: "online" in d)
    response = hub.http.post(
        "/updates", json={"device": name, "title": "fw", "version": "2.0", "force": True}
    )
    assert response.status_code == 201, response.text
    update_id: int = response.json()["id"]
    message = device.expect(10)
    command = json.loads(message.payload)
    assert command["status"] == "init"
    device.publish(message.topic, json.dumps({**command, "status": "executing"}), 1, True)
    hub.wait(lambda: hub.update(update_id), lambda u: u["state"] == "downloading")
    return update_id, message.topic, command


def test_child_that_finished_while_the_hub_was_killed_ends_succeeded(hub: Hub) -> None:
    name = "te-crash"
    device = child(hub, name)
    update_id, topic, command = _start_and_execute(hub, device, name)
    hub.proc.stop(signal.SIGKILL)
    device.drop()
    # the child installs and reboots meanwhile; back on the restarted hub it
    # finds its command again (as the hub last knew it) and says how it ended
    hub.proc.start()
    device = child(hub, name)
    replayed = device.expect(10)
    assert replayed.topic == topic
    assert json.loads(replayed.payload)["status"] == "executing"
    device.publish(topic, json.dumps({**command, "status": "successful"}), 1, True)
    done = hub.wait(lambda: hub.update(update_id), lambda u: u["state"] != "downloading")
    assert done["state"] == "succeeded", done
    device.disconnect()


def test_status_stored_without_its_transition_is_applied_after_a_kill(hub: Hub) -> None:
    # A kill between storing the child's status and the transition it causes
    # left the status ahead of the update: after the restart the replayed
    # status was taken for one already applied, and the update stayed behind.
    name = "te-window"
    device = child(hub, name)
    update_id, topic, command = _start_and_execute(hub, device, name)
    device.publish(topic, json.dumps({**command, "status": "successful"}), 1, True)
    hub.wait(lambda: hub.update(update_id), lambda u: u["state"] == "succeeded")
    hub.proc.stop(signal.SIGKILL)
    device.drop()
    # put the database back as such a kill leaves it: status stored, transition not
    with sqlite3.connect(hub.proc.data_dir / "otahub.db") as db:
        (raw,) = db.execute(
            "SELECT driver_state FROM updates WHERE id = ?", (update_id,)
        ).fetchone()
        assert json.loads(raw)["status"] == "successful"
        last = db.execute(
            "SELECT max(id) FROM update_transitions WHERE update_id = ?", (update_id,)
        ).fetchone()[0]
        db.execute("DELETE FROM update_transitions WHERE id = ?", (last,))
        db.execute(
            "UPDATE updates SET state = 'downloading', finished_at = NULL WHERE id = ?",
            (update_id,),
        )
    hub.proc.start()
    done = hub.wait(lambda: hub.update(update_id), lambda u: u["state"] != "downloading")
    assert done["state"] == "succeeded", done


def test_late_status_of_a_deleted_device_s_command_leaves_another_update_alone(hub: Hub) -> None:
    # The deleted device's update id may be given to the next update (SQLite
    # reuses the highest id): its command's late status must still be matched
    # by the command the hub issued, not by that id.
    gone = child(hub, "te-gone")
    first, gone_topic, gone_command = _start_and_execute(hub, gone, "te-gone")
    response = hub.http.delete("/devices/te-gone", params={"force": "true"})
    assert response.status_code == 204, response.text
    other = child(hub, "te-other")
    hub.wait(lambda: hub.device("te-other"), lambda d: "online" in d)
    response = hub.http.post(
        "/updates", json={"device": "te-other", "title": "fw", "version": "2.0", "force": True}
    )
    assert response.status_code == 201, response.text
    second = response.json()["id"]
    command = other.expect(10)
    assert json.loads(command.payload)["status"] == "init"
    # the deleted child's executor finishes late
    gone.publish(gone_topic, json.dumps({**gone_command, "status": "successful"}), 1, True)
    gone.publish("te/device/te-gone///twin/firmware", '{"name":"fw","version":"2.0"}', 1, True)
    hub.wait(lambda: hub.http.get("/devices/te-gone").json(), lambda d: "online" in d)
    assert hub.update(second)["state"] == "sent", (first, second)
    other.expect_none(1.0)  # its command was not cleared either
    gone.disconnect()
    other.disconnect()
