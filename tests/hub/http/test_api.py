"""The REST API through a real ``otahub serve`` process, on SQLite and PostgreSQL."""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import socket
import stat
import threading
import time
from itertools import count
from pathlib import Path
from typing import Any

import httpx

from otahub.protocols import checksums
from otahub.protocols.checksums import Algorithm
from tests.hub.http.conftest import Api

DATA = os.urandom(1_000_003)
_seq = count(1)


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_seq)}-{os.getpid()}"


def upload(api: Api, title: str, version: str = "1.0", data: bytes = DATA, **params: str) -> Any:
    r = api.client.post(
        "/firmware", params={"title": title, "version": version, **params}, content=data
    )
    assert r.status_code == 201, r.text
    return r.json()


def problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = r.json()
    assert body["status"] == status
    assert body["detail"]
    return body


# -- auth -------------------------------------------------------------------


def test_auth_refused_without_or_with_a_wrong_token(api: Api) -> None:
    bare = httpx.Client(base_url=f"{api.hub.http_url}/api/v1")
    for path in ("/firmware", "/devices", "/updates"):
        r = bare.get(path)
        problem(r, 401)
        assert r.headers["www-authenticate"].startswith("Bearer")
    problem(bare.get("/firmware", headers={"Authorization": "Bearer wrong"}), 401)
    problem(bare.post("/firmware", params={"title": "x", "version": "1"}, content=b"x"), 401)
    mode = stat.S_IMODE((api.hub.data_dir / "admin.token").stat().st_mode)
    assert mode == 0o600
    assert bare.get(f"{api.hub.http_url}/healthz").status_code == 200


def test_new_admin_routes_refuse_a_missing_or_wrong_token(api: Api) -> None:
    """Verify, password change and forced delete are admin routes like the rest."""
    name = unique("auth-guard")
    created = api.client.post(
        "/devices", json={"name": name, "dialect": "thin-edge", "password": "right-pw"}
    )
    assert created.status_code == 201, created.text
    bare = httpx.Client(base_url=f"{api.hub.http_url}/api/v1")
    routes = (
        ("POST", "/firmware/verify", {"all": True}),
        ("PUT", f"/devices/{name}/password", {"password": "taken-over"}),
        ("DELETE", f"/devices/{name}?force=true", None),
    )
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        for method, path, body in routes:
            r = bare.request(method, path, json=body, headers=headers)
            problem(r, 401)
    # nothing happened: the device is still there with its password
    device = api.client.get(f"/devices/{name}")
    assert device.status_code == 200, device.text
    assert device.json()["has_password"] is True
    bare.close()


def test_verify_answers_404_not_500_for_ids_beyond_the_database_range(api: Api) -> None:
    # past PostgreSQL's INTEGER and past SQLite's 64-bit range
    for bad in (2147483648, 9223372036854775808):
        body = problem(api.client.post("/firmware/verify", json={"ids": [bad]}), 404)
        assert str(bad) in body["detail"]


def test_openapi_document_lists_the_api(api: Api) -> None:
    doc = httpx.get(f"{api.hub.http_url}/api/v1/openapi.json").json()
    paths = set(doc["paths"])
    assert {
        "/api/v1/firmware",
        "/api/v1/firmware/import",
        "/api/v1/firmware/{package_id}",
        "/api/v1/firmware/{package_id}/content",
        "/api/v1/devices",
        "/api/v1/devices/{name}",
        "/api/v1/updates",
        "/api/v1/updates/{update_id}",
        "/api/v1/updates/{update_id}/cancel",
    } <= paths


# -- firmware ---------------------------------------------------------------


def test_upload_raw_and_list(api: Api) -> None:
    title = unique("raw")
    package = upload(api, title, device_type="gw", kind="software", filename="a.bin")
    assert package["size"] == len(DATA)
    assert package["kind"] == "software"
    assert package["device_type"] == "gw"
    assert package["sha256"] == hashlib.sha256(DATA).hexdigest()
    assert package["checksums"] == {a.value: checksums.checksum(a, DATA) for a in Algorithm}
    listed = api.client.get("/firmware", params={"title": title}).json()
    assert [p["id"] for p in listed] == [package["id"]]
    assert api.client.get(f"/firmware/{package['id']}").json() == package


def test_upload_multipart(api: Api) -> None:
    title = unique("multi")
    r = api.client.post(
        "/firmware",
        data={"title": title, "version": "2.0", "kind": "firmware"},
        files={"file": ("image.swu", DATA[:5000], "application/x-swupdate")},
    )
    assert r.status_code == 201, r.text
    package = r.json()
    assert (package["title"], package["version"]) == (title, "2.0")
    assert package["filename"] == "image.swu"
    assert package["content_type"] == "application/x-swupdate"
    assert package["sha256"] == hashlib.sha256(DATA[:5000]).hexdigest()
    content = api.client.get(f"/firmware/{package['id']}/content")
    assert content.content == DATA[:5000]
    assert content.headers["content-type"].startswith("application/x-swupdate")


def test_duplicate_title_and_version_is_409(api: Api) -> None:
    title = unique("dup")
    upload(api, title)
    body = problem(
        api.client.post("/firmware", params={"title": title, "version": "1.0"}, content=b"x"),
        409,
    )
    assert "already exists" in body["detail"]
    r = api.client.post(
        "/firmware",
        data={"title": title, "version": "1.0"},
        files={"file": ("f", b"x")},
    )
    problem(r, 409)


def test_upload_errors_are_problems(api: Api) -> None:
    problem(api.client.post("/firmware", content=b"x"), 422)  # no title/version
    problem(api.client.post("/firmware", params={"title": "t", "version": "1", "kind": "x"}), 422)
    r = api.client.post(
        "/firmware",
        content=b"--b\r\nbroken",
        headers={"content-type": "multipart/form-data; boundary=b"},
        params={"title": unique("bad"), "version": "1"},
    )
    assert r.status_code == 422
    problem(api.client.get("/firmware/999999"), 404)
    problem(api.client.get("/firmware/not-a-number"), 422)


def test_empty_firmware_upload_or_import_is_refused_with_422(api: Api, tmp_path: Path) -> None:
    title = unique("empty")
    raw = problem(api.client.post("/firmware", params={"title": title, "version": "1"}), 422)
    assert "empty" in raw["detail"]
    form = api.client.post(
        "/firmware",
        params={"title": title, "version": "1"},
        files={"file": ("fw.bin", b"", "application/octet-stream")},
    )
    assert "empty" in problem(form, 422)["detail"]
    (tmp_path / "empty.bin").write_bytes(b"")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/empty.bin"
        imported = api.client.post(
            "/firmware/import", json={"url": url, "title": title, "version": "1"}
        )
        assert "empty" in problem(imported, 422)["detail"]
    finally:
        server.shutdown()
        server.server_close()
    # Nothing was stored, and each refusal was logged.
    assert all(p["title"] != title for p in api.client.get("/firmware").json())
    assert api.hub.log().count(f"refused firmware {title} 1: the file") == 3


def test_package_checksum_algorithm_is_chosen_at_upload_sha256_by_default(api: Api) -> None:
    assert upload(api, unique("alg"))["checksum_algorithm"] == "SHA256"
    raw = upload(api, unique("alg"), checksum_algorithm="crc32")
    assert raw["checksum_algorithm"] == "CRC32"
    form = api.client.post(
        "/firmware",
        data={"title": unique("alg"), "version": "1", "checksum_algorithm": "MURMUR3_32"},
        files={"file": ("fw.bin", b"form firmware", "application/octet-stream")},
    )
    assert form.status_code == 201, form.text
    assert form.json()["checksum_algorithm"] == "MURMUR3_32"
    assert api.client.get(f"/firmware/{raw['id']}").json()["checksum_algorithm"] == "CRC32"
    bad = problem(
        api.client.post(
            "/firmware",
            params={"title": unique("alg"), "version": "1", "checksum_algorithm": "SHA1"},
            content=b"x",
        ),
        422,
    )
    assert "unknown checksum algorithm 'SHA1'" in bad["detail"]


def test_download_whole_and_head(api: Api) -> None:
    package = upload(api, unique("dl"))
    url = f"/firmware/{package['id']}/content"
    r = api.client.get(url)
    assert r.status_code == 200
    assert r.content == DATA
    assert r.headers["content-length"] == str(len(DATA))
    assert r.headers["etag"] == f'"{package["sha256"]}"'
    assert r.headers["accept-ranges"] == "bytes"
    head = api.client.head(url)
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(len(DATA))
    assert head.headers["etag"] == r.headers["etag"]


def test_download_ranges(api: Api) -> None:
    package = upload(api, unique("range"))
    url = f"/firmware/{package['id']}/content"
    size = len(DATA)
    cases = {
        "bytes=0-99": (0, 99),  # first
        "bytes=500000-500999": (500000, 500999),  # middle
        "bytes=-100": (size - 100, size - 1),  # suffix
        f"bytes={size - 10}-": (size - 10, size - 1),  # open-ended
        f"bytes=0-{size + 1000}": (0, size - 1),  # clipped to the end
    }
    for header, (first, last) in cases.items():
        r = api.client.get(url, headers={"Range": header})
        assert r.status_code == 206, header
        assert r.headers["content-range"] == f"bytes {first}-{last}/{size}"
        assert r.headers["content-length"] == str(last - first + 1)
        assert r.content == DATA[first : last + 1]
    r = api.client.get(url, headers={"Range": f"bytes={size}-"})
    assert r.status_code == 416
    assert r.headers["content-range"] == f"bytes */{size}"


def test_etag_revalidation(api: Api) -> None:
    package = upload(api, unique("etag"))
    url = f"/firmware/{package['id']}/content"
    etag = api.client.head(url).headers["etag"]
    assert etag == f'"{package["sha256"]}"'
    r = api.client.get(url, headers={"If-None-Match": etag})
    assert r.status_code == 304
    assert r.content == b""
    assert r.headers["etag"] == etag
    assert api.client.get(url, headers={"If-None-Match": '"other"'}).status_code == 200
    # If-Range: the range only while the entity is unchanged, else the whole file.
    same = api.client.get(url, headers={"Range": "bytes=10-19", "If-Range": etag})
    assert (same.status_code, same.content) == (206, DATA[10:20])
    changed = api.client.get(url, headers={"Range": "bytes=10-19", "If-Range": '"stale"'})
    assert (changed.status_code, len(changed.content)) == (200, len(DATA))


def test_delete_firmware(api: Api) -> None:
    package = upload(api, unique("del"))
    assert api.client.delete(f"/firmware/{package['id']}").status_code == 204
    problem(api.client.get(f"/firmware/{package['id']}"), 404)
    problem(api.client.get(f"/firmware/{package['id']}/content"), 404)


# -- devices and updates ----------------------------------------------------


def add_device(api: Api, **body: Any) -> Any:
    body.setdefault("name", unique("dev"))
    # an EnOS device that never connects keeps its updates where these tests put them
    if body.setdefault("dialect", "enos") == "enos":
        body.setdefault("product_key", "pk-test")
        body.setdefault("device_key", body["name"])
        body.setdefault("secret", "s3cret")
    r = api.client.post("/devices", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def start_update(api: Api, device: str, title: str, **extra: Any) -> Any:
    r = api.client.post(
        "/updates", json={"device": device, "title": title, "version": "1.0", **extra}
    )
    assert r.status_code == 201, r.text
    return r.json()


def test_devices(api: Api) -> None:
    token = unique("tok")
    tb = add_device(api, dialect="thingsboard", token=token, device_type="CIM")
    assert tb["token"] == token
    enos = add_device(api, dialect="enos", product_key="pk", device_key=unique("dk"), secret="s")
    assert enos["has_secret"] is True
    assert "secret" not in enos
    names = {d["name"] for d in api.client.get("/devices").json()}
    assert {tb["name"], enos["name"]} <= names
    problem(
        api.client.post("/devices", json={"name": "x1", "dialect": "thingsboard", "token": token}),
        409,
    )
    problem(api.client.post("/devices", json={"name": tb["name"], "dialect": "thin-edge"}), 409)
    body = problem(api.client.post("/devices", json={"name": "x2", "dialect": "enos"}), 422)
    assert "product_key" in body["detail"]
    problem(api.client.post("/devices", json={"name": "x3", "dialect": "zigbee"}), 422)
    assert api.client.delete(f"/devices/{enos['name']}").status_code == 204
    problem(api.client.get(f"/devices/{enos['name']}"), 404)


def test_update_lifecycle_with_transitions(api: Api) -> None:
    title = unique("life")
    upload(api, title)
    device = add_device(api)["name"]
    update = start_update(api, device, title)
    assert {"id", "device", "title", "version", "state", "progress", "reason"} <= set(update)
    assert update["state"] == "pending"
    steps = [
        {"state": "sent"},
        {"state": "downloading", "progress": 10},
        {"state": "downloading", "progress": 80},
        {"state": "downloaded"},
        {"state": "verified"},
        {"state": "installing"},
        {"state": "succeeded"},
    ]
    for step in steps:
        r = api.client.post(f"/updates/{update['id']}/state", json=step)
        assert r.status_code == 200, r.text
    done = api.client.get(f"/updates/{update['id']}").json()
    assert (done["state"], done["progress"]) == ("succeeded", 100)
    assert [(t["from_state"], t["to_state"]) for t in done["transitions"]] == [
        (None, "pending"),
        ("pending", "sent"),
        ("sent", "downloading"),
        ("downloading", "downloaded"),
        ("downloaded", "verified"),
        ("verified", "installing"),
        ("installing", "succeeded"),
    ]
    assert all(t["at"] for t in done["transitions"])
    # Backwards is refused, and finished is final.
    problem(api.client.post(f"/updates/{update['id']}/state", json={"state": "sent"}), 409)
    history = api.client.get(f"/devices/{device}").json()["updates"]
    assert [u["id"] for u in history] == [update["id"]]
    listed = api.client.get("/updates", params={"device": device, "state": "succeeded"}).json()
    assert [u["id"] for u in listed] == [update["id"]]
    assert api.client.get("/updates", params={"device": device, "state": "failed"}).json() == []


def test_second_update_is_409_unless_replace(api: Api) -> None:
    title = unique("two")
    upload(api, title)
    device = add_device(api)["name"]
    first = start_update(api, device, title)
    body = problem(
        api.client.post("/updates", json={"device": device, "title": title, "version": "1.0"}),
        409,
    )
    assert str(first["id"]) in body["detail"]
    second = start_update(api, device, title, replace=True)
    assert api.client.get(f"/updates/{first['id']}").json()["state"] == "canceled"
    assert second["state"] == "pending"
    problem(
        api.client.post("/updates", json={"device": "ghost", "title": title, "version": "1.0"}), 404
    )


def test_cancel(api: Api) -> None:
    title = unique("cancel")
    package = upload(api, title)
    device = add_device(api)["name"]
    update = start_update(api, device, title)
    api.client.post(f"/updates/{update['id']}/state", json={"state": "downloading"})
    # The package of an active update cannot be deleted.
    problem(api.client.delete(f"/firmware/{package['id']}"), 409)
    r = api.client.post(f"/updates/{update['id']}/cancel", json={"reason": "operator"})
    assert r.status_code == 200
    canceled = r.json()
    assert (canceled["state"], canceled["reason"]) == ("canceled", "operator")
    assert canceled["transitions"][-1]["from_state"] == "downloading"
    problem(api.client.post(f"/updates/{update['id']}/cancel"), 409)
    assert api.client.delete(f"/firmware/{package['id']}").status_code == 204
    kept = api.client.get(f"/updates/{update['id']}").json()
    assert (kept["package_id"], kept["title"]) == (None, title)


def test_device_delete_is_409_with_active_updates_unless_forced_and_keeps_history(
    api: Api,
) -> None:
    title = unique("del")
    upload(api, title)
    device = add_device(api)
    update = start_update(api, device["name"], title)
    refused = problem(api.client.delete(f"/devices/{device['name']}"), 409)
    assert refused["active_updates"] == [update["id"]]
    assert f"{update['id']} ({title} 1.0, " in refused["detail"]
    assert api.client.get(f"/updates/{update['id']}").json()["state"] == "pending"
    forced = api.client.delete(f"/devices/{device['name']}", params={"force": "true"})
    assert forced.status_code == 204, forced.text
    problem(api.client.get(f"/devices/{device['name']}"), 404)
    kept = api.client.get(f"/updates/{update['id']}").json()
    assert (kept["state"], kept["device"], kept["device_id"]) == (
        "canceled",
        device["name"],
        None,
    )
    assert [t["to_state"] for t in kept["transitions"]] == ["pending", "canceled"]
    assert update["id"] in [u["id"] for u in api.client.get("/updates").json()]
    # The name can be used again, by a device with a new id and a history of its own.
    again = add_device(api, name=device["name"])
    assert again["id"] > device["id"]
    assert api.client.get(f"/devices/{device['name']}").json()["updates"] == []
    problem(api.client.delete("/devices/no-such-device", params={"force": "true"}), 404)


def test_timeout_fails_a_stuck_update(api: Api) -> None:
    title = unique("stuck")
    upload(api, title)
    device = add_device(api)["name"]
    update = start_update(api, device, title, timeout=0.5)
    api.client.post(f"/updates/{update['id']}/state", json={"state": "downloading"})
    deadline = time.monotonic() + 10
    state = update
    while time.monotonic() < deadline:
        state = api.client.get(f"/updates/{update['id']}").json()
        if state["state"] == "failed":
            break
        time.sleep(0.1)
    assert state["state"] == "failed"
    assert state["code"] == "timeout"
    assert "downloading" in state["reason"]
    assert state["transitions"][-1]["source"] == "timeout"


def _wait_until(condition: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_broken_upload_leaves_nothing_behind(api: Api) -> None:
    title = unique("broken")
    host, port = "127.0.0.1", api.hub.http_port
    tmp = api.hub.data_dir / "blobs" / "tmp"
    with socket.create_connection((host, port)) as sock:
        sock.sendall(
            (
                f"POST /api/v1/firmware?title={title}&version=1 HTTP/1.1\r\n"
                f"Host: {host}\r\nAuthorization: Bearer {api.token}\r\n"
                "Content-Type: application/octet-stream\r\nContent-Length: 10000000\r\n\r\n"
            ).encode()
            + DATA[:300_000]
        )
        # The client goes away only once the hub writes the upload: looked at
        # right after the close, blobs/tmp was still empty because the hub had
        # not begun yet, and its file could appear just after that look.
        _wait_until(lambda: list(tmp.iterdir()), "the hub to begin writing the upload")
    _wait_until(lambda: not list(tmp.iterdir()), "the upload's temporary file to be removed")
    assert api.client.get("/firmware", params={"title": title}).json() == []
    # The same title and version can be uploaded properly afterwards.
    upload(api, title, version="1")


def test_register_by_url(api: Api, tmp_path: Path) -> None:
    (tmp_path / "fw.bin").write_bytes(DATA[:70_000])
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/fw.bin"
        title = unique("url")
        r = api.client.post(
            "/firmware/import",
            json={"url": url, "title": title, "version": "1", "checksum_algorithm": "MD5"},
        )
        assert r.status_code == 201, r.text
        package = r.json()
        assert (package["source_url"], package["filename"]) == (url, "fw.bin")
        assert package["checksum_algorithm"] == "MD5"
        assert package["sha256"] == hashlib.sha256(DATA[:70_000]).hexdigest()
    finally:
        server.shutdown()
        server.server_close()
    # Served from the hub's own copy once the origin is gone.
    content = api.client.get(f"/firmware/{package['id']}/content")
    assert content.content == DATA[:70_000]
    missing = api.client.post(
        "/firmware/import", json={"url": url, "title": unique("url"), "version": "1"}
    )
    assert missing.status_code == 502
    bad = api.client.post(
        "/firmware/import", json={"url": "file:///etc/passwd", "title": "t", "version": "1"}
    )
    problem(bad, 422)


# -- paging, changing devices, malformed bodies ----------------------------------


def test_updates_page_with_offset_and_keep_the_page_cap(api: Api) -> None:
    title = unique("paged")
    upload(api, title)
    created = []
    for _ in range(5):
        device = add_device(api)
        r = api.client.post(
            "/updates", json={"device": device["name"], "title": title, "version": "1.0"}
        )
        assert r.status_code == 201, r.text
        created.append(r.json()["id"])
    newest_first = sorted(created, reverse=True)
    pages = [
        [u["id"] for u in api.client.get("/updates", params={"limit": 2, "offset": o}).json()]
        for o in (0, 2)
    ]
    # other tests of this module add updates too: the newest are these five
    assert pages[0] == newest_first[:2]
    assert pages[1] == newest_first[2:4]
    problem(api.client.get("/updates", params={"limit": 1001}), 422)
    problem(api.client.get("/updates", params={"offset": -1}), 422)
    assert api.client.get("/updates", params={"offset": 10**6}).json() == []


def test_device_patch_changes_only_what_is_given(api: Api) -> None:
    device = add_device(api, dialect="thingsboard", token=unique("tok"), device_type="CIM")
    other = add_device(api, dialect="thingsboard", token=unique("tok"))
    name = device["name"]
    changed = api.client.patch(f"/devices/{name}", json={"device_type": "CIM-2"})
    assert changed.status_code == 200, changed.text
    assert (changed.json()["device_type"], changed.json()["token"]) == ("CIM-2", device["token"])
    problem(api.client.patch(f"/devices/{name}", json={"token": other["token"]}), 409)
    problem(api.client.patch(f"/devices/{name}", json={"token": None}), 422)  # TB needs one
    problem(api.client.patch(f"/devices/{name}", json={"secret": "x"}), 422)
    assert api.client.get(f"/devices/{name}").json()["token"] == device["token"]
    cleared = api.client.patch(f"/devices/{name}", json={"device_type": None}).json()
    assert cleared["device_type"] is None
    problem(api.client.patch("/devices/nobody", json={"device_type": "x"}), 404)


def test_malformed_json_names_the_member_not_a_character_offset(api: Api) -> None:
    body = problem(
        api.client.post(
            "/updates",
            content=b'{"device": "d",\n "title": "t", "version": }',
            headers={"content-type": "application/json"},
        ),
        422,
    )
    assert body["errors"][0]["field"] == "version"
    assert body["detail"].startswith("version: malformed JSON at line 2, column 27")
