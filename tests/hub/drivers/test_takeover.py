"""Two hubs on one PostgreSQL: a child moving from a killed hub to the other one.

The hub the child connects to next delivers its update: the command the
dead hub sent comes again with the same id and the step the child reached
(so it never starts twice), with a download link the new hub serves; what
the dead hub never sent is sent. Children are played with paho, the hubs run
as real processes.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.hubproc import HubProcess
from tests.interop.paho_client import PahoClient
from tests.pgserver import PostgresServer
from tests.polling import wait_for

pytestmark = pytest.mark.interop

IMAGE = b"firmware moving between hubs\n" * 500
LEGACY_REQUESTS = "tedge/{}/commands/req/firmware_update"
LEGACY_RESPONSES = "tedge/{}/commands/res/firmware_update"


class Pair:
    """Hub A and hub B on one database; B sees A's blob store, as on a shared volume."""

    def __init__(self, root: Path, url: str) -> None:
        args = ["--no-auth", "--database-url", url]
        self.a = HubProcess(root / "a", extra_args=args).start()
        self.b = HubProcess(root / "b", extra_args=args)
        self.b.data_dir.mkdir(parents=True)
        (self.b.data_dir / "blobs").symlink_to(self.a.data_dir / "blobs")
        self.b.start()
        response = self.api(self.a).post(
            "/firmware", params={"title": "fw", "version": "2.0"}, content=IMAGE
        )
        assert response.status_code == 201, response.text

    @staticmethod
    def api(hub: HubProcess) -> httpx.Client:
        return httpx.Client(base_url=f"{hub.http_url}/api/v1", timeout=30)

    def update(self, hub: HubProcess, update_id: int) -> dict[str, Any]:
        body: dict[str, Any] = self.api(hub).get(f"/updates/{update_id}").json()
        return body

    def create(self, hub: HubProcess, device: str) -> int:
        response = self.api(hub).post(
            "/updates", json={"device": device, "title": "fw", "version": "2.0", "force": True}
        )
        assert response.status_code == 201, response.text
        update_id: int = response.json()["id"]
        return update_id

    def kill_a(self) -> None:
        assert self.a.stop(signal.SIGKILL) == -signal.SIGKILL

    def close(self) -> None:
        self.a.stop()
        self.b.stop()
        assert "Traceback" not in self.b.log()


@pytest.fixture
def pair(postgres: PostgresServer, tmp_path: Path) -> Iterator[Pair]:
    hubs = Pair(tmp_path, postgres.create_database())
    try:
        yield hubs
    finally:
        hubs.close()


def thin_edge_child(hub: HubProcess, name: str, *, subscribe: bool = True) -> PahoClient:
    """Seed 000, steps 1-4, on ``hub``."""
    client = PahoClient(hub.mqtt_port, name)
    assert client.connect() == 0
    client.publish(f"te/device/{name}//", json.dumps({"@type": "child-device"}), 1, True)
    client.publish(f"te/device/{name}///cmd/firmware_update", "{}", 1, True)
    client.publish(f"te/device/{name}///twin/firmware", '{"name":"fw","version":"1.0"}', 1, True)
    if subscribe:
        client.subscribe(f"te/device/{name}///cmd/firmware_update/+", 1)
    return client


def download(url: str) -> bytes:
    response = httpx.get(url, timeout=30)
    assert response.status_code == 200, (url, response.status_code, response.text)
    return response.content


def test_thin_edge_command_of_the_dead_hub_comes_back_as_it_was_left(pair: Pair) -> None:
    name = "te-mover"
    device = thin_edge_child(pair.a, name)
    wait_for(lambda: pair.api(pair.a).get(f"/devices/{name}").status_code, lambda s: s == 200)
    update_id = pair.create(pair.a, name)
    sent = device.expect(10)
    command = json.loads(sent.payload)
    assert command["status"] == "init" and str(pair.a.http_port) in command["tedgeUrl"]
    device.publish(sent.topic, json.dumps({**command, "status": "executing"}), 1, True)
    wait_for(lambda: pair.update(pair.a, update_id), lambda u: u["state"] == "downloading")
    pair.kill_a()
    device.drop()

    device = thin_edge_child(pair.b, name)
    again = device.expect(10)
    resent = json.loads(again.payload)
    # the same command, at the step the child had reached: it does not start it again
    assert again.topic == sent.topic
    assert resent["status"] == "executing"
    assert str(pair.b.http_port) in resent["tedgeUrl"]
    assert resent["tedgeUrl"].rsplit("/", 1)[1] == command["tedgeUrl"].rsplit("/", 1)[1]
    assert download(resent["tedgeUrl"]) == IMAGE
    device.publish(again.topic, json.dumps({**resent, "status": "successful"}), 1, True)
    done = wait_for(lambda: pair.update(pair.b, update_id), lambda u: u["state"] == "succeeded")
    assert done["progress"] == 100
    device.disconnect()


def test_thin_edge_status_for_the_dead_hubs_command_ends_the_update_on_the_other(
    pair: Pair,
) -> None:
    name = "te-finisher"
    device = thin_edge_child(pair.a, name)
    wait_for(lambda: pair.api(pair.a).get(f"/devices/{name}").status_code, lambda s: s == 200)
    update_id = pair.create(pair.a, name)
    sent = device.expect(10)
    command = json.loads(sent.payload)
    pair.kill_a()
    device.drop()
    # it installed meanwhile, and says so on the other hub before asking for commands
    device = thin_edge_child(pair.b, name, subscribe=False)
    device.publish(sent.topic, json.dumps({**command, "status": "successful"}), 1, True)
    wait_for(lambda: pair.update(pair.b, update_id), lambda u: u["state"] == "succeeded")
    device.disconnect()


def test_thin_edge_update_another_hub_created_is_sent_once_when_the_child_comes(pair: Pair) -> None:
    name = "te-late"
    device = thin_edge_child(pair.a, name)
    wait_for(lambda: pair.api(pair.a).get(f"/devices/{name}").status_code, lambda s: s == 200)
    device.disconnect()
    # created by B, which cannot reach the child (it is on A, then on neither)
    update_id = pair.create(pair.b, name)
    pair.kill_a()
    device = thin_edge_child(pair.b, name)
    first = device.expect(10)
    assert json.loads(first.payload)["status"] == "init"
    device.expect_none(1.0)  # one command, not one per path that knew of the update
    assert pair.update(pair.b, update_id)["state"] == "sent"
    device.disconnect()


def test_legacy_request_of_the_dead_hub_is_asked_again_with_the_same_id(pair: Pair) -> None:
    name = "legacy-mover"
    response = pair.api(pair.a).post("/devices", json={"name": name, "dialect": "tedge-legacy"})
    assert response.status_code == 201, response.text
    device = PahoClient(pair.a.mqtt_port, name)
    assert device.connect() == 0
    device.subscribe(LEGACY_REQUESTS.format(name), 1)
    update_id = pair.create(pair.a, name)
    request = json.loads(device.expect(10).payload)
    assert request["attempt"] == 1
    executing = {"id": request["id"], "status": "executing"}
    device.publish(LEGACY_RESPONSES.format(name), json.dumps(executing), 1, False)
    wait_for(lambda: pair.update(pair.a, update_id), lambda u: u["state"] == "downloading")
    pair.kill_a()
    device.drop()

    device = PahoClient(pair.b.mqtt_port, name)
    assert device.connect() == 0
    device.subscribe(LEGACY_REQUESTS.format(name), 1)
    again = json.loads(device.expect(10).payload)
    # the same operation asked again: the child answers with its status
    assert (again["id"], again["attempt"]) == (request["id"], 2)
    assert str(pair.b.http_port) in again["url"]
    # the same link on the other hub: both sign with the database's key
    assert again["url"].rsplit("/", 1)[1] == request["url"].rsplit("/", 1)[1]
    assert download(again["url"]) == IMAGE
    successful = {"id": request["id"], "status": "successful"}
    device.publish(LEGACY_RESPONSES.format(name), json.dumps(successful), 1, False)
    wait_for(lambda: pair.update(pair.b, update_id), lambda u: u["state"] == "succeeded")
    device.disconnect()
