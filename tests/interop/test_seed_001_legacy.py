"""Seed 001 step by step: a legacy child connector typed with mosquitto_pub/sub and curl.

The hub plays ``c8y-firmware-plugin``. Runs against the hub's own endpoint
and through a real mosquitto (``--broker``).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
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
    Listener,
    Mosquitto,
    sha256,
)

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(not HAVE_CLIENTS, reason="needs mosquitto-clients and curl"),
]

FIRMWARE = b"OpenWRT 22.03 image\n" * 4000
REQUESTS = "tedge/+/commands/req/firmware_update"


class Setup:
    def __init__(self, hub: HubProcess, child: Child, api: Api, external: bool) -> None:
        self.hub, self.child, self.api, self.external = hub, child, api, external


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
) -> Iterator[Setup]:
    root = tmp_path_factory.mktemp(f"legacy-{request.param}")
    broker = None
    args = ["--no-auth"]
    if request.param == "external-broker":
        broker = Mosquitto(root / "mosquitto").start()
        args += ["--broker", f"mqtt://127.0.0.1:{broker.port}"]
    hub = HubProcess(data_dir=root / "data", extra_args=args).start()
    api = Api(hub)
    api.upload("OpenWRT", "22.03", FIRMWARE)
    try:
        yield Setup(hub, Child(broker.port if broker else hub.mqtt_port), api, broker is not None)
    finally:
        hub.stop()
        if broker is not None:
            broker.stop()


@pytest.fixture
def listener(setup: Setup) -> Iterator[Listener]:
    """The child connector's subscription (seed 001: mosquitto_sub -t tedge/<child>/…/req/…)."""
    sub = Listener(setup.child, REQUESTS).ready()
    yield sub
    sub.stop()


def add_child(setup: Setup, name: str) -> None:
    """The seed's `touch /etc/tedge/operations/c8y/<child>/c8y_Firmware`, on the hub."""
    response = setup.api.client.post("/devices", json={"name": name, "dialect": "tedge-legacy"})
    assert response.status_code == 201, response.text


def request_for(listener: Listener, child: str) -> dict[str, Any]:
    topic, payload = listener.next()
    assert topic == f"tedge/{child}/commands/req/firmware_update"
    body: dict[str, Any] = json.loads(payload)
    return body


def respond(setup: Setup, child: str, message: str) -> None:
    setup.child.pub(f"tedge/{child}/commands/res/firmware_update", message)


def at(transition: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(transition["at"])


def test_seed_001_walkthrough(setup: Setup, listener: Listener, tmp_path: Path) -> None:
    hub, api = setup.hub, setup.api
    child = "tedge-child"
    add_child(setup, child)
    update_id = api.start(child, "OpenWRT", "22.03").json()["id"]

    request = request_for(listener, child)
    assert list(request) == ["id", "attempt", "name", "version", "sha256", "url"]
    assert len(request["id"]) == 21
    assert (request["attempt"], request["name"], request["version"]) == (1, "OpenWRT", "22.03")
    assert request["sha256"] == sha256(FIRMWARE)
    prefix = f"{hub.http_url}/te/v1/files/{child}/firmware_update/"
    assert request["url"].startswith(prefix)
    key = request["url"].removeprefix(prefix)
    assert len(key) == 64
    assert api.update(update_id)["state"] == "sent"

    respond(setup, child, f'{{"id": "{request["id"]}", "status": "executing"}}')
    assert api.wait_update(update_id, lambda u: u["state"] == "downloading")["state"] == (
        "downloading"
    )
    image = tmp_path / "image"
    Child.curl(request["url"], image)
    assert sha256(image.read_bytes()) == request["sha256"]
    # the older URL form of the seed serves the same file, marked deprecated
    old = f"{hub.http_url}/tedge/file-transfer/{child}/firmware_update/{key}"
    headers = Child.curl(old, tmp_path / "old").lower()
    assert "deprecation: true" in headers
    assert 'link: </te/v1/files>; rel="deprecation"' in headers
    assert (tmp_path / "old").read_bytes() == FIRMWARE
    # literal dot segments as a hostile client sends them are refused
    (hub.data_dir / "secret").write_text("secret")
    for prefix in ("/te/v1/files", "/tedge/file-transfer"):
        escape = subprocess.run(
            [
                "curl",
                "-sS",
                "--path-as-is",
                "-w",
                " %{http_code}",
                f"{hub.http_url}{prefix}/{child}/../../secret",
            ],
            capture_output=True,
            text=True,
            timeout=10,
        )
        assert escape.stdout == "Invalid file path 404"

    respond(setup, child, f'{{ "id": "{request["id"]}", "status": "successful" }}')
    done = api.wait_update(update_id, lambda u: u["state"] == "succeeded")
    assert done["state"] == "succeeded"
    assert [t["to_state"] for t in done["transitions"]] == [
        "pending",
        "sent",
        "downloading",
        "succeeded",
    ]
    assert api.device(child).json()["firmware"] == {"title": "OpenWRT", "version": "22.03"}
    # the file-transfer link went with the update (upstream keeps it forever)
    assert httpx.get(request["url"]).status_code == 404
    # a late message for the finished operation changes nothing
    respond(setup, child, f'{{"id": "{request["id"]}", "status": "failed"}}')
    assert api.update(update_id)["state"] == "succeeded"


def test_failed_with_reason_after_bad_responses(setup: Setup, listener: Listener) -> None:
    api, child = setup.api, "tedge-child2"
    add_child(setup, child)
    update_id = api.start(child, "OpenWRT", "22.03").json()["id"]
    op_id = request_for(listener, child)["id"]
    # each of these is logged and ignored
    for bad in (
        "not json",
        '["executing"]',
        '{"status": "failed"}',
        f'{{"id": "{op_id}"}}',
        f'{{"id": "{op_id}", "status": "EXECUTING"}}',
        f'{{"id": "{op_id}", "status": "done"}}',
        f'{{"id": "{op_id}", "status": "failed", "reason": 5}}',
        '{"id": "someone-elses", "status": "failed"}',
    ):
        respond(setup, child, bad)
    setup.child.pub(f"tedge/{child}/commands/res/firmware_update/extra", '{"id": "x"}')
    respond(setup, "tedge-child-unknown", f'{{"id": "{op_id}", "status": "failed"}}')
    respond(setup, child, f'{{"id": "{op_id}", "status": "executing"}}')
    assert api.wait_update(update_id, lambda u: u["state"] == "downloading")["state"] == (
        "downloading"
    )
    respond(
        setup,
        child,
        f'{{ "id": "{op_id}", "status": "failed", '
        '"reason": "SHA-256 checksum validation failed" }',
    )
    done = api.wait_update(update_id, lambda u: u["state"] == "failed")
    assert (done["state"], done["reason"]) == ("failed", "SHA-256 checksum validation failed")
    assert [t["to_state"] for t in done["transitions"]] == [
        "pending",
        "sent",
        "downloading",
        "failed",
    ]
    assert "Traceback" not in setup.hub.log()


def test_timeout_restarted_by_executing(setup: Setup, listener: Listener) -> None:
    api, child = setup.api, "tedge-child3"
    add_child(setup, child)
    update_id = api.start(child, "OpenWRT", "22.03", timeout=3).json()["id"]
    op_id = request_for(listener, child)["id"]
    assert api.wait_update(update_id, lambda u: False, timeout=1.5)["state"] == "sent"
    respond(setup, child, f'{{"id": "{op_id}", "status": "executing"}}')
    done = api.wait_update(update_id, lambda u: u["state"] == "failed", timeout=10)
    assert done["state"] == "failed"
    assert done["code"] == "timeout"
    assert done["reason"] == (
        f"Child device {child} did not respond within the timeout interval of 3sec. "
        f"Operation ID={op_id}"
    )
    steps = {t["to_state"]: t for t in done["transitions"]}
    # counted from the executing, not from the request
    assert (at(steps["failed"]) - at(steps["downloading"])).total_seconds() >= 3
    assert (at(steps["failed"]) - at(steps["sent"])).total_seconds() >= 4


def test_duplicate_request_is_resent_with_next_attempt(setup: Setup, listener: Listener) -> None:
    api, child = setup.api, "tedge-child4"
    add_child(setup, child)
    first = api.start(child, "OpenWRT", "22.03")
    request = request_for(listener, child)
    again = api.start(child, "OpenWRT", "22.03")
    assert again.status_code == 201, again.text
    assert again.json()["id"] == first.json()["id"]
    resent = request_for(listener, child)
    assert resent == {**request, "attempt": 2}
    respond(setup, child, f'{{"id": "{request["id"]}", "status": "successful"}}')
    done = api.wait_update(first.json()["id"], lambda u: u["state"] == "succeeded")
    assert done["state"] == "succeeded"
    # another version while one runs is still refused
    api.upload("OpenWRT", "23.05", FIRMWARE[::-1])
    running = api.start(child, "OpenWRT", "22.03", force=True).json()["id"]
    assert api.start(child, "OpenWRT", "23.05").status_code == 409
    api.client.post(f"/updates/{running}/cancel")


def test_hub_restart_resends_and_keeps_tracking(setup: Setup, listener: Listener) -> None:
    hub, api = setup.hub, setup.api
    add_child(setup, "tedge-child5")
    add_child(setup, "tedge-child6")
    done_id = api.start("tedge-child5", "OpenWRT", "22.03").json()["id"]
    first = request_for(listener, "tedge-child5")
    silent_id = api.start("tedge-child6", "OpenWRT", "22.03", timeout=12).json()["id"]
    silent = request_for(listener, "tedge-child6")
    respond(setup, "tedge-child5", f'{{"id": "{first["id"]}", "status": "executing"}}')
    assert api.wait_update(done_id, lambda u: u["state"] == "downloading")["state"] == (
        "downloading"
    )

    hub.stop()
    hub.start()
    if not setup.external:
        # the child reconnects to the restarted hub and subscribes again
        listener.stop()
        listener = Listener(setup.child, REQUESTS).ready()
    resent: dict[str, Any] = {}
    while not {"tedge-child5", "tedge-child6"} <= resent.keys():
        topic, payload = listener.next(timeout=20)
        resent[topic.split("/")[1]] = json.loads(payload)
    assert resent["tedge-child5"] == {**first, "attempt": 2}
    assert resent["tedge-child6"] == {**silent, "attempt": 2}

    respond(setup, "tedge-child5", f'{{"id": "{first["id"]}", "status": "successful"}}')
    done = api.wait_update(done_id, lambda u: u["state"] == "succeeded")
    assert done["state"] == "succeeded"
    # the silent one's timeout kept running across the restart
    failed = api.wait_update(silent_id, lambda u: u["state"] == "failed", timeout=20)
    assert failed["state"] == "failed"
    assert failed["reason"] == (
        "Child device tedge-child6 did not respond within the timeout interval of 12sec. "
        f"Operation ID={silent['id']}"
    )
    listener.stop()


def test_forced_delete_of_an_updating_legacy_child_removes_its_file_link(
    setup: Setup, listener: Listener
) -> None:
    api = setup.api
    child = "legacy-deleted"
    add_child(setup, child)
    update_id = api.start(child, "OpenWRT", "22.03").json()["id"]
    request = request_for(listener, child)
    respond(setup, child, json.dumps({"id": request["id"], "status": "executing"}))
    assert api.wait_update(update_id, lambda u: u["state"] == "downloading")["state"] == (
        "downloading"
    )
    assert httpx.get(request["url"]).status_code == 200
    refused = api.client.delete(f"/devices/{child}")
    assert refused.status_code == 409, refused.text
    assert refused.json()["active_updates"] == [update_id]
    assert httpx.get(request["url"]).status_code == 200
    assert api.client.delete(f"/devices/{child}", params={"force": "true"}).status_code == 204
    assert httpx.get(request["url"]).status_code == 404
    assert api.update(update_id)["state"] == "canceled"
    # a late response for the deleted child's operation changes nothing
    respond(setup, child, json.dumps({"id": request["id"], "status": "successful"}))
    assert api.wait_for(lambda: f"ignoring successful from {child}" in setup.hub.log())
    assert api.update(update_id)["state"] == "canceled"


def wait_online(api: Api, child: str, online: bool, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        device: dict[str, Any] = api.device(child).json()
        if device["online"] is online:
            return device
        assert time.monotonic() < deadline, f"{child} never became online={online}: {device}"
        time.sleep(0.05)


def test_child_offline_at_start_gets_the_request_when_it_subscribes(setup: Setup) -> None:
    if setup.external:
        pytest.skip("through an external broker the hub cannot see the child's session")
    api, child = setup.api, "tedge-child7"
    add_child(setup, child)
    assert api.device(child).json()["online"] is False
    update_id = api.start(child, "OpenWRT", "22.03").json()["id"]
    assert api.wait_update(update_id, lambda u: u["state"] == "sent")["state"] == "sent"
    # the child connects and subscribes to its own requests, as seed 001 does
    own = Listener(setup.child, f"tedge/{child}/commands/req/firmware_update").ready()
    try:
        request = request_for(own, child)
        assert request["attempt"] == 2  # the first went out while nobody listened
        assert wait_online(api, child, True)["last_seen_at"] is not None
        respond(setup, child, f'{{"id": "{request["id"]}", "status": "successful"}}')
        done = api.wait_update(update_id, lambda u: u["state"] == "succeeded")
        assert done["state"] == "succeeded"
    finally:
        own.stop()
    wait_online(api, child, False)


def test_late_response_of_a_deleted_child_leaves_another_update_alone(
    setup: Setup, listener: Listener
) -> None:
    # The deleted child's update id may be given to the next update (SQLite
    # reuses the highest id): a response is matched by the operation the hub
    # issued to that child, not by the id it was filed under.
    api = setup.api
    add_child(setup, "tedge-gone")
    api.start("tedge-gone", "OpenWRT", "22.03")
    gone = request_for(listener, "tedge-gone")
    deleted = api.client.delete("/devices/tedge-gone", params={"force": "true"})
    assert deleted.status_code == 204, deleted.text
    add_child(setup, "tedge-next")
    update_id = api.start("tedge-next", "OpenWRT", "22.03").json()["id"]
    request = request_for(listener, "tedge-next")
    respond(setup, "tedge-gone", f'{{"id": "{gone["id"]}", "status": "successful"}}')
    respond(setup, "tedge-next", f'{{"id": "{request["id"]}", "status": "executing"}}')
    update = api.wait_update(update_id, lambda u: u["state"] != "sent")
    assert update["state"] == "downloading", update
