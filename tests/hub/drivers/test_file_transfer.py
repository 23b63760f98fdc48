"""The file-transfer service: upstream's status codes, Range and ETag, traversal refused."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from otahub.hub.core import CoreConfig, HubCore
from otahub.hub.drivers.base import DriverContext
from otahub.hub.drivers.file_transfer.offer import file_root
from otahub.hub.drivers.file_transfer.routes import mount_file_transfer
from otahub.hub.drivers.file_transfer.store import FileTransferRoot
from otahub.hub.settings import HubSettings
from otahub.hub.transport import LocalTransport
from otahub.mqtt.server import MQTTServer, ServerConfig
from otahub.protocols import tedge_legacy as legacy

V1 = "/te/v1/files"
OLD = "/tedge/file-transfer"
DATA = bytes(range(256)) * 40  # 10240 bytes


@pytest.fixture
def root(tmp_path: Path) -> FileTransferRoot:
    return FileTransferRoot(tmp_path / "file-transfer")


@pytest.fixture
def client(tmp_path: Path, root: FileTransferRoot) -> Iterator[TestClient]:
    """The routes of a hub whose data dir holds ``root``, asked from loopback."""
    settings = HubSettings(data_dir=tmp_path)
    core = HubCore(CoreConfig(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'db'}"))
    mqtt = MQTTServer(ServerConfig())
    ctx = DriverContext(core=core, mqtt=mqtt, transport=LocalTransport(mqtt), settings=settings)
    app = FastAPI()
    mount_file_transfer(app, ctx)
    mount_file_transfer(app, ctx)  # a second driver asking again adds nothing
    assert file_root(ctx).root == root.root
    with TestClient(app, client=("127.0.0.1", 50000)) as c:
        # the database is used on the client's event loop only
        c.portal.call(core.db.migrate)  # type: ignore[union-attr]
        yield c
        c.portal.call(core.close)  # type: ignore[union-attr]


def test_put_get_delete_status_codes(client: TestClient, root: FileTransferRoot) -> None:
    assert client.get(f"{V1}/child1/config/a.conf").status_code == 404
    put = client.put(f"{V1}/child1/config/a.conf", content=b"one")
    assert put.status_code == 201
    assert (root.root / "child1/config/a.conf").read_bytes() == b"one"
    assert client.put(f"{V1}/child1/config/a.conf", content=DATA).status_code == 201  # replaced
    got = client.get(f"{V1}/child1/config/a.conf")
    assert (got.status_code, got.content) == (200, DATA)
    assert got.headers["content-length"] == str(len(DATA))
    assert got.headers["accept-ranges"] == "bytes"
    assert client.head(f"{V1}/child1/config/a.conf").status_code == 200
    # trailing slash ignored, as upstream
    assert client.get(f"{V1}/child1/config/a.conf/").content == DATA
    assert client.delete(f"{V1}/child1/config/a.conf").status_code == 202
    assert client.delete(f"{V1}/child1/config/a.conf").status_code == 202  # also when missing
    missing = client.get(f"{V1}/child1/config/a.conf")
    assert (missing.status_code, missing.text) == (404, 'File not found: "child1/config/a.conf"')


def test_directories(client: TestClient) -> None:
    assert client.put(f"{V1}/dir/file", content=b"x").status_code == 201
    assert client.get(f"{V1}/dir").status_code == 404
    assert client.get(f"{V1}/dir").text == 'File not found: "dir"'
    assert client.put(f"{V1}/dir", content=b"x").status_code == 409
    assert client.put(f"{V1}/", content=b"x").status_code == 409
    assert client.delete(f"{V1}/dir").status_code == 404
    assert client.get(f"{V1}/dir/file").content == b"x"


def test_legacy_prefix_has_deprecation_headers(client: TestClient) -> None:
    assert client.put(f"{OLD}/child/firmware_update/k", content=DATA).status_code == 201
    for response in (
        client.get(f"{OLD}/child/firmware_update/k"),
        client.get(f"{OLD}/child/firmware_update/missing"),
        client.delete(f"{OLD}/child/firmware_update/missing"),
    ):
        for name, value in legacy.LEGACY_DEPRECATION_HEADERS.items():
            assert response.headers[name] == value
    assert client.get(f"{OLD}/child/firmware_update/k").content == DATA
    # the same file under both prefixes
    v1 = client.get(f"{V1}/child/firmware_update/k")
    assert v1.content == DATA and "deprecation" not in v1.headers


def test_range_requests(client: TestClient) -> None:
    client.put(f"{V1}/f", content=DATA)
    part = client.get(f"{V1}/f", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206
    assert part.content == DATA[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(DATA)}"
    tail = client.get(f"{V1}/f", headers={"Range": "bytes=10000-"})
    assert (tail.status_code, tail.content) == (206, DATA[10000:])
    suffix = client.get(f"{V1}/f", headers={"Range": "bytes=-5"})
    assert suffix.content == DATA[-5:]
    beyond = client.get(f"{V1}/f", headers={"Range": f"bytes={len(DATA)}-"})
    assert beyond.status_code == 416
    assert beyond.headers["content-range"] == f"bytes */{len(DATA)}"
    several = client.get(f"{V1}/f", headers={"Range": "bytes=0-1,5-6"})
    assert (several.status_code, several.content) == (200, DATA)
    old = client.get(f"{OLD}/f", headers={"Range": "bytes=0-9"})
    assert (old.status_code, old.content) == (206, DATA[:10])


def test_etag_and_conditional_requests(client: TestClient) -> None:
    client.put(f"{V1}/f", content=DATA)
    first = client.get(f"{V1}/f")
    tag = first.headers["etag"]
    assert tag.startswith('"') and not tag.startswith("W/")
    assert client.get(f"{V1}/f").headers["etag"] == tag  # stable while unchanged
    assert client.get(f"{V1}/f", headers={"If-None-Match": tag}).status_code == 304
    resumed = client.get(f"{V1}/f", headers={"Range": "bytes=5000-", "If-Range": tag})
    assert (resumed.status_code, resumed.content) == (206, DATA[5000:])
    client.put(f"{V1}/f", content=DATA[::-1])
    changed = client.get(f"{V1}/f")
    assert changed.headers["etag"] != tag
    # resuming against the old tag gets the whole new file, not a mixed one
    stale = client.get(f"{V1}/f", headers={"Range": "bytes=5000-", "If-Range": tag})
    assert (stale.status_code, stale.content) == (200, DATA[::-1])
    assert client.get(f"{V1}/f", headers={"If-None-Match": tag}).status_code == 200


# The HTTP client removes literal "../" itself; percent-encoded dots reach the
# server as they are (the interop test sends literal ones with curl --path-as-is).
@pytest.mark.parametrize(
    "path",
    [
        "/te/v1/files/%2e%2e/admin.token",
        "/te/v1/files/..%2fadmin.token",
        "/te/v1/files/a/%2e%2e/%2e%2e/admin.token",
        "/te/v1/files/a/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/tedge/file-transfer/%2e%2e/admin.token",
        "/tedge/file-transfer/%2E%2E/%2E%2E/etc/passwd",
    ],
)
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_traversal_refused(
    client: TestClient, root: FileTransferRoot, tmp_path: Path, path: str, method: str
) -> None:
    secret = tmp_path / "admin.token"
    secret.write_text("secret")
    response = client.request(method, path, content=b"overwritten" if method == "PUT" else None)
    assert (response.status_code, response.text) == (404, "Invalid file path")
    assert secret.read_text() == "secret"


def test_dot_segments_inside_the_root_are_resolved(client: TestClient) -> None:
    client.put(f"{V1}/a/b", content=b"inside")
    assert client.get(f"{V1}/a/x/../b").content == b"inside"
    assert client.get(f"{V1}/a/./b").content == b"inside"


def test_firmware_links_are_read_only_and_served_only_for_their_update(
    client: TestClient, root: FileTransferRoot
) -> None:
    blob = root.root.parent / hashlib.sha256(DATA).hexdigest()
    blob.write_bytes(DATA)
    key = "ab" * 32
    root.link_firmware("child1", key, blob)
    # no update offers it: not served (the hub tests serve it with one)
    assert client.get(f"{V1}/child1/firmware_update/{key}").status_code == 404
    assert client.put(f"{V1}/child1/firmware_update/{key}", content=b"other").status_code == 403
    assert client.delete(f"{V1}/child1/firmware_update/{key}").status_code == 403
    assert blob.read_bytes() == DATA
    assert root.firmware_blob(legacy.FileTransferPath(("child1", legacy.OPERATION, key))) == (
        blob.name
    )
    root.unlink_firmware("child1", key)
    assert client.get(f"{V1}/child1/firmware_update/{key}").status_code == 404
    assert blob.read_bytes() == DATA
