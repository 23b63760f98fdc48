"""Who may make a hub take a device's update over: the device (or its gateway), not
any client that subscribes to its command topic. The update is marked as sent by
another hub in the database; an anonymous subscriber leaves it there, the device's
own login takes it over."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.hubproc import HubProcess
from tests.interop.paho_client import V311, PahoClient

pytestmark = pytest.mark.interop

PASSWORD = "device-pw"
ELSEWHERE = "another-hub"
TOPICS = {
    "thin-edge": "te/device/{}///cmd/firmware_update/+",
    "tedge-legacy": "tedge/{}/commands/req/firmware_update",
}


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    proc = HubProcess(data_dir=tmp_path_factory.mktemp("adopt") / "data", extra_args=["--no-auth"])
    proc.start()
    yield proc
    proc.stop()


def claimed_by(hub: HubProcess, update_id: int) -> str | None:
    with sqlite3.connect(hub.data_dir / "otahub.db") as db:
        row = db.execute("SELECT claimed_by FROM updates WHERE id = ?", (update_id,)).fetchone()
    return None if row is None else row[0]


def wait_claim(hub: HubProcess, update_id: int, want: str, timeout: float = 5.0) -> str | None:
    deadline = time.monotonic() + timeout
    while (held := claimed_by(hub, update_id)) != want and time.monotonic() < deadline:
        time.sleep(0.05)
    return held


@pytest.mark.parametrize("dialect", list(TOPICS))
def test_an_anonymous_subscriber_cannot_take_a_password_devices_update_over(
    hub: HubProcess, dialect: str
) -> None:
    name = f"child-{dialect}"
    with httpx.Client(base_url=f"{hub.http_url}/api/v1", timeout=30) as api:
        body = {"name": name, "dialect": dialect, "password": PASSWORD}
        assert api.post("/devices", json=body).status_code == 201
        firmware = {"title": f"fw-{dialect}", "version": "2.0"}
        assert api.post("/firmware", params=firmware, content=os.urandom(4096)).status_code == 201
        created = api.post("/updates", json={"device": name, **firmware, "force": True})
        assert created.status_code == 201, created.text
        update_id = int(created.json()["id"])
    deadline = time.monotonic() + 5
    while (mine := claimed_by(hub, update_id)) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert mine, "the hub that created the update delivers it"
    with sqlite3.connect(hub.data_dir / "otahub.db") as db:
        db.execute("UPDATE updates SET claimed_by = ? WHERE id = ?", (ELSEWHERE, update_id))
    topic = TOPICS[dialect].format(name)

    stranger = PahoClient(hub.mqtt_port, f"stranger-{dialect}", V311)
    assert stranger.connect() == 0
    try:
        stranger.subscribe(topic, 1)
        assert wait_claim(hub, update_id, mine, timeout=1.5) == ELSEWHERE
    finally:
        stranger.disconnect()

    device = PahoClient(hub.mqtt_port, name, V311, username=name, password=PASSWORD)
    assert device.connect() == 0
    try:
        device.subscribe(topic, 1)
        assert wait_claim(hub, update_id, mine) == mine
    finally:
        device.disconnect()
