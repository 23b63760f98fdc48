"""A blob tampered with on the hub's disk is never served, on any download path.

The attack: rewrite bytes of a stored firmware file in place, with the same
size, and set its modification time back (``os.utime``), so size, mtime and
inode all stay as they were. The hub's cached verdict is keyed on the file's
stamp, which includes its ctime, and the kernel moves ctime on every write and
every ``utime``: the next request hashes the file again and refuses it. Each
test runs ``otahub serve`` as a subprocess and uses one package of its own.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from otahub.protocols import enos
from tests.hubproc import HubProcess
from tests.interop.paho_client import V311, PahoClient

LOGGED = "no longer matches its SHA-256"


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    proc = HubProcess(
        data_dir=tmp_path_factory.mktemp("integrity") / "data",
        extra_args=["--no-auth"],
        env={"OTAHUB_ENOS_PUSH_GRACE": "0.2"},
    )
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture
def api(hub: HubProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{hub.http_url}/api/v1", timeout=30) as client:
        yield client


def upload(api: httpx.Client, title: str, size: int = 300_000) -> tuple[dict[str, Any], bytes]:
    data = os.urandom(size)
    response = api.post("/firmware", params={"title": title, "version": "2.0"}, content=data)
    assert response.status_code == 201, response.text
    package: dict[str, Any] = response.json()
    return package, data


def blob_path(hub: HubProcess, sha256: str) -> Path:
    return hub.data_dir / "blobs" / "sha256" / sha256[:2] / sha256


def tamper_in_place(hub: HubProcess, sha256: str) -> None:
    """Same size, same inode, mtime set back: only ctime tells."""
    path = blob_path(hub, sha256)
    before = os.stat(path)
    time.sleep(0.01)  # a ctime the clock can tell apart from the upload's
    with open(path, "r+b") as f:
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 0x55]))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (
        before.st_size,
        before.st_mtime_ns,
        before.st_ino,
    )


def start_update(api: httpx.Client, device: str, title: str, **extra: Any) -> int:
    body = {"device": device, "title": title, "version": "2.0", **extra}
    response = api.post("/updates", json=body)
    assert response.status_code < 300, response.text
    return int(response.json()["id"])


def wait_failed(api: httpx.Client, update_id: int, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        update: dict[str, Any] = api.get(f"/updates/{update_id}").json()
        if update["state"] in ("failed", "succeeded", "canceled"):
            return update
        assert time.monotonic() < deadline, update
        time.sleep(0.05)


def assert_failed_as_corrupt(api: httpx.Client, update_id: int, title: str) -> None:
    update = wait_failed(api, update_id)
    assert update["state"] == "failed", update
    assert update["code"] == "firmware_corrupt", update
    assert f"{title} 2.0" in update["reason"] and LOGGED in update["reason"], update


def logged_once(hub: HubProcess, title: str) -> None:
    """Exactly one log line for the refusal, however many requests were refused.

    (The line every ended update gets, which quotes the reason, is not counted.)
    """
    lines = [
        line
        for line in hub.log().splitlines()
        if LOGGED in line and f"{title} 2.0" in line and " ended: device=" not in line
    ]
    assert len(lines) == 1, lines


def test_admin_download_and_range_refuse_a_tampered_blob(
    hub: HubProcess, api: httpx.Client
) -> None:
    package, data = upload(api, "integrity-http")
    content = f"/firmware/{package['id']}/content"
    assert api.get(content).content == data
    ranged = api.get(content, headers={"Range": "bytes=1000-1999"})
    assert ranged.status_code == 206 and ranged.content == data[1000:2000]
    tamper_in_place(hub, package["sha256"])
    for headers in ({}, {"Range": "bytes=1000-1999"}, {"Range": "bytes=0-9"}):
        refused = api.get(content, headers=headers)
        assert refused.status_code == 500, refused.text
        assert LOGGED in refused.json()["detail"]
    assert api.head(content).status_code == 500
    logged_once(hub, "integrity-http")


def test_thin_edge_file_transfer_link_refuses_a_tampered_blob(
    hub: HubProcess, api: httpx.Client
) -> None:
    package, data = upload(api, "integrity-te")
    child = f"te-{secrets.token_hex(3)}"
    assert api.post("/devices", json={"name": child, "dialect": "thin-edge"}).status_code == 201
    watcher = PahoClient(hub.mqtt_port, f"watch-{child}", V311)
    assert watcher.connect() == 0
    try:
        watcher.subscribe(f"te/device/{child}///cmd/firmware_update/+", 1)
        update_id = start_update(api, child, "integrity-te", force=True)
        command = json.loads(watcher.expect(10).payload)
    finally:
        watcher.disconnect()
    url = command["tedgeUrl"]
    assert httpx.get(url).content == data
    tamper_in_place(hub, package["sha256"])
    refused = httpx.get(url, headers={"Range": "bytes=100-"})
    assert refused.status_code == 500 and LOGGED in refused.text
    assert_failed_as_corrupt(api, update_id, "integrity-te")
    # the link went with its update
    assert httpx.get(url).status_code == 404
    logged_once(hub, "integrity-te")


def test_enos_download_refuses_a_tampered_blob(hub: HubProcess, api: httpx.Client) -> None:
    package, data = upload(api, "integrity-enos")
    name, pk, dk, secret = "enos-integrity", "pkIntegrity", "dkIntegrity", secrets.token_hex(8)
    body = {"name": name, "dialect": "enos", "product_key": pk, "device_key": dk, "secret": secret}
    assert api.post("/devices", json=body).status_code == 201
    login = enos.build_login(pk, dk, secret, timestamp=str(int(time.time() * 1000)))
    device = PahoClient(hub.mqtt_port, login.client_id, username=login.username)
    device.client.username_pw_set(login.username, login.password)
    assert device.connect() == 0
    try:
        inform = {"id": "1", "version": "1.0", "method": "ota.inform", "params": {"version": "1"}}
        device.publish(f"/sys/{pk}/{dk}/ota/device/inform", json.dumps(inform), qos=1)
        update_id = start_update(api, name, "integrity-enos", force=True)
        while True:
            message = device.expect(10)
            if message.topic.endswith("/ota/device/upgrade"):
                break
        file_url = json.loads(message.payload)["params"]["fileUrl"]
    finally:
        device.disconnect()
    ranged = httpx.get(file_url, headers={"Range": "bytes=0-99"})
    assert ranged.status_code == 206 and ranged.content == data[:100]
    tamper_in_place(hub, package["sha256"])
    refused = httpx.get(file_url, headers={"Range": "bytes=100-"})
    assert refused.status_code == 500 and LOGGED in refused.json()["detail"]
    assert_failed_as_corrupt(api, update_id, "integrity-enos")
    # the update has ended, so its link is dead as EnOS links are after cancel
    assert httpx.get(file_url).status_code == 404
    logged_once(hub, "integrity-enos")


def test_thingsboard_chunks_and_http_api_refuse_a_tampered_blob(
    hub: HubProcess, api: httpx.Client
) -> None:
    package, data = upload(api, "integrity-tb")
    token = f"tok-{secrets.token_hex(4)}"
    body = {"name": "tb-integrity", "dialect": "thingsboard", "token": token}
    assert api.post("/devices", json=body).status_code == 201
    device = PahoClient(hub.mqtt_port, "tb-integrity", V311, username=token)
    assert device.connect() == 0
    try:
        update_id = start_update(api, "tb-integrity", "integrity-tb")
        device.publish("v2/fw/request/1/chunk/0", b"4096", qos=1)
        first = device.expect(10)
        assert first.topic == "v2/fw/response/1/chunk/0" and first.payload == data[:4096]
        http_url = f"{hub.http_url}/api/v1/{token}/firmware"
        query = {"title": "integrity-tb", "version": "2.0"}
        assert httpx.get(http_url, params={**query, "size": 100, "chunk": 0}).content == data[:100]
        tamper_in_place(hub, package["sha256"])
        refused = httpx.get(http_url, params=query)
        assert refused.status_code == 500 and LOGGED in refused.text
        assert_failed_as_corrupt(api, update_id, "integrity-tb")
        # the next chunk is refused as ThingsBoard refuses an absent package: error, then close
        device.client.publish("v2/fw/request/1/chunk/1", b"4096", qos=1)
        error = device.expect(10)
        assert (error.topic, error.payload) == ("v2/fw/error", b"NOT_FOUND")
        assert device.wait_disconnected()
    finally:
        device.disconnect()
    logged_once(hub, "integrity-tb")


def test_verify_scrubs_the_store_and_fails_on_corruption(
    hub: HubProcess, api: httpx.Client
) -> None:
    """``otahub firmware verify`` reads every byte, whatever the cache says."""
    good, _ = upload(api, "integrity-scrub-good", 5000)
    bad, _ = upload(api, "integrity-scrub-bad", 5000)
    tamper_in_place(hub, bad["sha256"])

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "otahub", "firmware", "verify", *args, "--server", hub.http_url],
            capture_output=True,
            text=True,
            timeout=60,
        )

    ok = cli(str(good["id"]))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "all 1 package(s) match their SHA-256" in ok.stdout
    by_name = cli("integrity-scrub-bad", "2.0")
    assert by_name.returncode == 1, by_name.stdout + by_name.stderr
    assert "CORRUPT" in by_name.stdout and bad["sha256"] in by_name.stdout
    everything = cli("--all", "--json")
    assert everything.returncode == 1
    results = {r["id"]: r for r in json.loads(everything.stdout)}
    assert results[good["id"]]["status"] == "ok"
    assert results[bad["id"]]["status"] == "corrupt"
    assert results[bad["id"]]["actual_sha256"] not in (None, bad["sha256"])
    assert cli().returncode != 0  # neither --all nor packages


def test_touched_but_intact_blob_keeps_serving_chunks(hub: HubProcess, api: httpx.Client) -> None:
    """A changed stamp with the same bytes is hashed again and served on: no false alarm."""
    package, data = upload(api, "integrity-touch")
    token = f"tok-{secrets.token_hex(4)}"
    body = {"name": "tb-touch", "dialect": "thingsboard", "token": token}
    assert api.post("/devices", json=body).status_code == 201
    device = PahoClient(hub.mqtt_port, "tb-touch", V311, username=token)
    assert device.connect() == 0
    try:
        update_id = start_update(api, "tb-touch", "integrity-touch")
        device.publish("v2/fw/request/1/chunk/0", b"4096", qos=1)
        assert device.expect(10).payload == data[:4096]
        os.utime(blob_path(hub, package["sha256"]))
        device.publish("v2/fw/request/1/chunk/1", b"", qos=1)  # the remembered size
        second = device.expect(10)
        assert second.topic == "v2/fw/response/1/chunk/1" and second.payload == data[4096:8192]
        assert api.get(f"/updates/{update_id}").json()["state"] not in ("failed", "canceled")
    finally:
        device.disconnect()
    assert not [
        line for line in hub.log().splitlines() if "integrity-touch" in line and LOGGED in line
    ]
