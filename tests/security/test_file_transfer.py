"""``/te/v1/files``: devices confined to their own paths, the files the hub
offers read-only, anonymous clients only from the ``--anonymous-from``
networks, PUT bodies capped. The hub runs as ``otahub serve``."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.hubproc import HubProcess
from tests.interop.paho_client import V311, PahoClient
from tests.security.conftest import OUTSIDE

MAX_BYTES = 100_000
FIRMWARE = os.urandom(30_000)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    proc = HubProcess(
        data_dir=tmp_path_factory.mktemp("files") / "data",
        extra_args=[
            "--no-auth",
            "--anonymous-from",
            "127.0.0.1/32",
            "--file-transfer-max-bytes",
            str(MAX_BYTES),
        ],
    )
    proc.start()
    with httpx.Client(base_url=f"{proc.http_url}/api/v1", timeout=30) as api:
        for name in ("child01", "child02"):
            body = {"name": name, "dialect": "thin-edge", "password": f"{name}-pw"}
            assert api.post("/devices", json=body).status_code == 201
        open03 = api.post("/devices", json={"name": "open03", "dialect": "thin-edge"})
        assert open03.status_code == 201
        response = api.post("/firmware", params={"title": "fw", "version": "2.0"}, content=FIRMWARE)
        assert response.status_code == 201, response.text
    yield proc
    proc.stop()


def files(hub: HubProcess, path: str) -> str:
    return f"{hub.http_url}/te/v1/files/{path}"


def as_device(name: str) -> tuple[str, str]:
    return name, f"{name}-pw"


def stored(hub: HubProcess, path: str) -> Path:
    return hub.data_dir / "file-transfer" / path


def wait_log(hub: HubProcess, pattern: str, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while True:
        for line in hub.log().splitlines():
            if re.search(pattern, line):
                return line
        assert time.monotonic() < deadline, f"no log line matches {pattern!r}:\n{hub.log()}"
        time.sleep(0.05)


def offer(hub: HubProcess, child: str, credentials: tuple[str, str] | None) -> tuple[int, str]:
    """Start an update of ``child``; its ``tedgeUrl`` as the child receives it."""
    username, password = credentials or (None, None)
    device = PahoClient(
        hub.mqtt_port, f"{child}-{os.getpid()}", V311, username=username, password=password
    )
    assert device.connect() == 0
    try:
        device.subscribe(f"te/device/{child}///cmd/firmware_update/+", 1)
        body = {"device": child, "title": "fw", "version": "2.0", "force": True, "replace": True}
        response = httpx.post(f"{hub.http_url}/api/v1/updates", json=body)
        assert response.status_code == 201, response.text
        while True:
            command = json.loads(device.expect(10).payload or b"{}")
            if "tedgeUrl" in command and command.get("status") == "init":
                break
    finally:
        device.disconnect()
    return int(response.json()["id"]), str(command["tedgeUrl"])


def test_device_cannot_read_another_devices_file_transfer_path(hub: HubProcess) -> None:
    own = httpx.put(
        files(hub, "child02/config/a.conf"), content=b"secret", auth=as_device("child02")
    )
    assert own.status_code == 201
    assert httpx.get(files(hub, "child02/config/a.conf"), auth=as_device("child02")).content == (
        b"secret"
    )
    refused = httpx.get(files(hub, "child02/config/a.conf"), auth=as_device("child01"))
    assert refused.status_code == 403 and b"secret" not in refused.content
    wait_log(
        hub,
        r"file transfer: refused GET child02/config/a\.conf from 127\.0\.0\.1:\d+: "
        r"device 'child01' may use only its own paths",
    )
    # the firmware the hub offers child02 is no more child01's to read than its files
    _, url = offer(hub, "child02", as_device("child02"))
    assert httpx.get(url, auth=as_device("child01")).status_code == 403
    assert httpx.get(url, auth=as_device("child02")).content == FIRMWARE
    # nor anyone's without credentials, save through the link itself
    assert httpx.get(files(hub, "child02/config/a.conf")).status_code == 401


def test_device_cannot_write_another_devices_file_transfer_path(hub: HubProcess) -> None:
    path = "child01/log/today.log"
    assert httpx.put(files(hub, path), content=b"mine", auth=as_device("child01")).status_code == (
        201
    )
    put = httpx.put(files(hub, path), content=b"forged", auth=as_device("child02"))
    assert put.status_code == 403
    wait_log(hub, r"refused PUT child01/log/today\.log from .*: device 'child02' may use only")
    assert httpx.delete(files(hub, path), auth=as_device("child02")).status_code == 403
    assert stored(hub, path).read_bytes() == b"mine"


def test_wrong_device_password_is_refused_with_401(hub: HubProcess) -> None:
    refused = httpx.get(files(hub, "child01/log/x"), auth=("child01", "guess"))
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Basic ")
    wait_log(hub, r"refused GET child01/log/x from .*: wrong password for device 'child01'")


@pytest.mark.parametrize("child", ["open03", "child01"])
def test_anonymous_put_and_delete_of_a_file_the_hub_offers_are_refused(
    hub: HubProcess, child: str
) -> None:
    credentials = None if child == "open03" else as_device(child)
    _, url = offer(hub, child, credentials)
    path = url.split("/te/v1/files/", 1)[1]
    # from loopback, the trusted network: still refused
    replaced = httpx.put(url, content=b"evil image")
    assert replaced.status_code == 403
    deleted = httpx.delete(url)
    assert deleted.status_code == 403
    wait_log(hub, rf"refused DELETE {path} from 127\.0\.0\.1:\d+: the file is offered by the hub")
    # the device itself may not replace it either
    if credentials is not None:
        assert httpx.put(url, content=b"evil", auth=credentials).status_code == 403
    assert httpx.get(url).content == FIRMWARE


def test_anonymous_client_outside_anonymous_from_cannot_put_or_read(hub: HubProcess) -> None:
    with httpx.Client(transport=httpx.HTTPTransport(local_address=OUTSIDE)) as outside:
        evil = outside.put(files(hub, "evil/evil.bin"), content=b"6.6.6")
        assert evil.status_code == 401
        assert outside.get(files(hub, "open03/config/x")).status_code == 401
    assert not stored(hub, "evil/evil.bin").exists()
    wait_log(
        hub,
        r"refused PUT evil/evil\.bin from 127\.0\.0\.2:\d+: no credentials, and anonymous "
        r"access is allowed only from 127\.0\.0\.1/32",
    )
    # the same from loopback is the gateway's trusted connector, as on the MQTT endpoint
    assert httpx.put(files(hub, "open03/config/x"), content=b"ok").status_code == 201


def test_put_over_the_size_cap_is_refused_with_413(hub: HubProcess) -> None:
    path = "child01/config/big.bin"
    too_big = httpx.put(files(hub, path), content=b"x" * (MAX_BYTES + 1), auth=as_device("child01"))
    assert too_big.status_code == 413
    wait_log(hub, rf"refused PUT {re.escape(path)} from .*: the body is over the {MAX_BYTES}-byte")
    assert not stored(hub, path).exists()

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it comes
        for _ in range(MAX_BYTES // 10_000 + 1):
            yield b"y" * 10_000

    streamed = httpx.put(files(hub, path), content=chunks(), auth=as_device("child01"))
    assert streamed.status_code == 413
    assert not stored(hub, path).exists()
    assert [p.name for p in stored(hub, "child01/config").iterdir() if "big" in p.name] == []
    exact = httpx.put(files(hub, path), content=b"z" * MAX_BYTES, auth=as_device("child01"))
    assert exact.status_code == 201
    assert stored(hub, path).stat().st_size == MAX_BYTES


def test_put_that_would_eat_into_the_free_space_floor_is_refused_with_507(
    hub_factory: Callable[..., HubProcess],
) -> None:
    floor = str(1 << 62)  # more than any disk has free
    small = hub_factory("--no-auth", "--file-transfer-min-free-bytes", floor)
    refused = httpx.put(files(small, "open/config/a"), content=b"a")
    assert refused.status_code == 507
    assert not stored(small, "open/config/a").exists()
    wait_log(small, r"refused PUT open/config/a from .*: storing it would leave less than")
    # a small body without Content-Length too
    streamed = httpx.put(files(small, "open/config/b"), content=iter([b"b"]))
    assert streamed.status_code == 507
    assert not stored(small, "open/config/b").exists()


def test_allow_anonymous_from_outside_reaches_existing_devices_only(
    hub_factory: Callable[..., HubProcess],
) -> None:
    opened = hub_factory("--no-auth", "--anonymous-from", "127.0.0.1/32", "--allow-anonymous")
    body = {"name": "open04", "dialect": "thin-edge"}
    assert httpx.post(f"{opened.http_url}/api/v1/devices", json=body).status_code == 201
    with httpx.Client(transport=httpx.HTTPTransport(local_address=OUTSIDE)) as outside:
        assert outside.put(files(opened, "open04/config/c"), content=b"c").status_code == 201
        evil = outside.put(files(opened, "evil/evil.bin"), content=b"6.6.6")
        assert evil.status_code == 403
    assert not stored(opened, "evil/evil.bin").exists()
    wait_log(opened, r"refused PUT evil/evil\.bin from 127\.0\.0\.2:\d+: no device 'evil'")


def test_gateway_uses_the_paths_of_the_children_it_registered_only(hub: HubProcess) -> None:
    with httpx.Client(base_url=f"{hub.http_url}/api/v1", timeout=30) as api:
        body = {"name": "gw9", "dialect": "thin-edge", "password": "gw9-pw", "gateway": True}
        assert api.post("/devices", json=body).status_code == 201
        gateway = PahoClient(hub.mqtt_port, "gw9-conn", V311, username="gw9", password="gw9-pw")
        assert gateway.connect() == 0
        try:
            registration = '{"@type":"child-device","@parent":"device/gw9//"}'
            gateway.publish("te/device/gw9child//", registration, qos=1, retain=True)
            deadline = time.monotonic() + 10
            while api.get("/devices/gw9child").json().get("owner") != "gw9":
                assert time.monotonic() < deadline, "the gateway's child was never registered"
                time.sleep(0.05)
        finally:
            gateway.disconnect()
    put = httpx.put(files(hub, "gw9child/config.toml"), content=b"a=1", auth=as_device("gw9"))
    assert put.status_code == 201, put.text
    assert httpx.get(files(hub, "gw9child/config.toml"), auth=as_device("gw9")).content == b"a=1"
    # another device's paths stay closed to it
    foreign = httpx.put(files(hub, "child02/config.toml"), content=b"a=2", auth=as_device("gw9"))
    assert foreign.status_code == 403
    assert not stored(hub, "child02/config.toml").exists()
    wait_log(hub, r"refused PUT child02/config\.toml .*'gw9' may use only its own paths")
