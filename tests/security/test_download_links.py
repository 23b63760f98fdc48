"""Download links are per-update capabilities: each works while its update is
unfinished and is refused once it was canceled or ended, on every dialect that
downloads over HTTP (thin-edge ``tedgeUrl``, legacy ``url``, EnOS ``fileUrl``);
a link with an altered token is refused. The hub runs as ``otahub serve``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from otahub.protocols import enos
from tests.hubproc import HubProcess
from tests.interop.paho_client import V311, PahoClient

PASSWORD = "device-pw"


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    proc = HubProcess(
        data_dir=tmp_path_factory.mktemp("links") / "data",
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


def upload(api: httpx.Client, title: str) -> bytes:
    data = os.urandom(50_000)
    response = api.post("/firmware", params={"title": title, "version": "2.0"}, content=data)
    assert response.status_code == 201, response.text
    return data


def start_update(api: httpx.Client, device: str, title: str) -> int:
    body = {"device": device, "title": title, "version": "2.0", "force": True}
    response = api.post("/updates", json=body)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def end_update(api: httpx.Client, update_id: int, how: str) -> None:
    """Cancel the update, or have it end as a device or script reports (failed)."""
    if how == "canceled":
        response = api.post(f"/updates/{update_id}/cancel")
    else:
        response = api.post(f"/updates/{update_id}/state", json={"state": "failed"})
    assert response.status_code == 200, response.text
    assert response.json()["state"] == how


def wait_log(hub: HubProcess, pattern: str, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while True:
        for line in hub.log().splitlines():
            if re.search(pattern, line):
                return line
        assert time.monotonic() < deadline, f"no log line matches {pattern!r}"
        time.sleep(0.05)


def thin_edge_url(hub: HubProcess, api: httpx.Client, child: str, title: str) -> tuple[int, str]:
    """The ``tedgeUrl`` a child with credentials is sent, received as that child."""
    device = PahoClient(hub.mqtt_port, child, V311, username=child, password=PASSWORD)
    assert device.connect() == 0
    try:
        device.subscribe(f"te/device/{child}///cmd/firmware_update/+", 1)
        update_id = start_update(api, child, title)
        command = json.loads(device.expect(10).payload)
    finally:
        device.disconnect()
    return update_id, str(command["tedgeUrl"])


def legacy_url(hub: HubProcess, api: httpx.Client, child: str, title: str) -> tuple[int, str]:
    """The ``url`` of the request a legacy child with credentials is sent."""
    device = PahoClient(hub.mqtt_port, child, V311, username=child, password=PASSWORD)
    assert device.connect() == 0
    try:
        device.subscribe(f"tedge/{child}/commands/req/firmware_update", 1)
        update_id = start_update(api, child, title)
        request = json.loads(device.expect(10).payload)
    finally:
        device.disconnect()
    return update_id, str(request["url"])


def enos_url(hub: HubProcess, api: httpx.Client, name: str, title: str) -> tuple[int, str]:
    """The ``fileUrl`` of the ``upgrade`` an EnOS device is pushed."""
    pk, dk, secret = f"pk{name}", f"dk{name}", secrets.token_hex(8)
    body = {"name": name, "dialect": "enos", "product_key": pk, "device_key": dk, "secret": secret}
    assert api.post("/devices", json=body).status_code == 201
    login = enos.build_login(pk, dk, secret, timestamp=str(int(time.time() * 1000)))
    device = PahoClient(hub.mqtt_port, login.client_id, username=login.username)
    device.client.username_pw_set(login.username, login.password)
    assert device.connect() == 0
    try:
        inform = {"id": "1", "version": "1.0", "method": "ota.inform", "params": {"version": "1"}}
        device.publish(f"/sys/{pk}/{dk}/ota/device/inform", json.dumps(inform), qos=1)
        update_id = start_update(api, name, title)
        while True:
            message = device.expect(10)
            if message.topic.endswith("/ota/device/upgrade"):
                break
    finally:
        device.disconnect()
    return update_id, str(json.loads(message.payload)["params"]["fileUrl"])


Offer = Callable[[HubProcess, httpx.Client, str, str], tuple[int, str]]
DIALECTS: dict[str, tuple[str | None, Offer]] = {
    "thin-edge": ("thin-edge", thin_edge_url),
    "tedge-legacy": ("tedge-legacy", legacy_url),
    "enos": (None, enos_url),  # enos_url registers its device
}


def offered(hub: HubProcess, api: httpx.Client, dialect: str) -> tuple[int, str, bytes, str]:
    """A new device of ``dialect`` with an update running: (update id, URL, firmware, title)."""
    registered_as, offer = DIALECTS[dialect]
    name = f"d{secrets.token_hex(4)}"
    title = f"fw-{name}"
    data = upload(api, title)
    if registered_as is not None:
        body: dict[str, Any] = {"name": name, "dialect": registered_as, "password": PASSWORD}
        assert api.post("/devices", json=body).status_code == 201
    update_id, url = offer(hub, api, name, title)
    return update_id, url, data, title


@pytest.mark.parametrize("dialect", list(DIALECTS))
@pytest.mark.parametrize("how", ["canceled", "failed"])
def test_download_url_is_refused_once_its_update_was_canceled_or_ended(
    hub: HubProcess, api: httpx.Client, dialect: str, how: str
) -> None:
    update_id, url, data, _ = offered(hub, api, dialect)
    # while the update runs the URL works without other credentials, and resumes
    first = httpx.get(url, headers={"Range": "bytes=0-9999"})
    assert (first.status_code, first.content) == (206, data[:10000])
    rest = httpx.get(url, headers={"Range": "bytes=10000-"})
    assert (rest.status_code, rest.content) == (206, data[10000:])
    end_update(api, update_id, how)
    # the file is gone from the device's paths, which need its credentials
    refused = 404 if dialect == "enos" else 401
    assert httpx.get(url).status_code == refused
    assert httpx.get(url, headers={"Range": "bytes=10000-"}).status_code == refused


@pytest.mark.parametrize("dialect", ["thin-edge", "tedge-legacy"])
def test_file_transfer_url_of_an_ended_update_stays_refused_when_the_package_is_offered_again(
    hub: HubProcess, api: httpx.Client, dialect: str
) -> None:
    update_id, old_url, data, title = offered(hub, api, dialect)
    end_update(api, update_id, "canceled")
    child = old_url.split("/te/v1/files/", 1)[1].split("/", 1)[0]
    _, new_url = DIALECTS[dialect][1](hub, api, child, title)
    assert new_url != old_url
    assert httpx.get(new_url).content == data
    # the old name is no file now; with the child's credentials that is plain
    assert httpx.get(old_url, auth=(child, PASSWORD)).status_code == 404
    assert httpx.get(old_url).status_code == 401


def _altered(url: str) -> str:
    last = url[-1]
    return url[:-1] + ("0" if last != "0" else "1")


@pytest.mark.parametrize("dialect", list(DIALECTS))
def test_download_url_with_an_altered_token_is_refused(
    hub: HubProcess, api: httpx.Client, dialect: str
) -> None:
    update_id, url, data, _ = offered(hub, api, dialect)
    forged = _altered(url)
    refused = httpx.get(forged)
    # no such file; below the paths of a device with credentials that is "log in"
    assert refused.status_code == (404 if dialect == "enos" else 401)
    assert data not in refused.content
    path = re.escape(forged.split("/", 3)[3].removeprefix("te/v1/files/"))
    if dialect == "enos":
        wait_log(hub, rf"EnOS download of update {update_id} with a wrong token refused")
    else:
        wait_log(hub, rf"file transfer: refused GET {path} from 127\.0\.0\.1:\d+: ")
    # the genuine link still works
    assert httpx.get(url).content == data


@pytest.mark.parametrize("dialect", ["thin-edge", "tedge-legacy"])
def test_another_device_with_credentials_cannot_read_a_running_offer(
    hub: HubProcess, api: httpx.Client, dialect: str
) -> None:
    _, url, data, _ = offered(hub, api, dialect)
    other = f"d{secrets.token_hex(4)}"
    body = {"name": other, "dialect": dialect, "password": PASSWORD}
    assert api.post("/devices", json=body).status_code == 201
    # the URL is a capability, but a device that logs in is held to its own paths
    refused = httpx.get(url, auth=(other, PASSWORD))
    assert refused.status_code == 403
    assert data not in refused.content
    ranged = httpx.get(url, auth=(other, PASSWORD), headers={"Range": "bytes=0-9999"})
    assert ranged.status_code == 403
    assert httpx.get(url, auth=(other, "wrong")).status_code == 401
    # while the same URL still serves whoever comes without credentials
    assert httpx.get(url).content == data
