"""Firmware packages: uploads, URL imports with resume, deletion rules."""

from __future__ import annotations

import hashlib
import http.server
import os
import threading
from collections.abc import Iterator

import pytest

from otahub.hub.core import HubCore
from otahub.hub.services import firmware
from otahub.hub.services.devices import DeviceSpec
from otahub.hub.services.errors import Conflict, Invalid, NotFound, UpstreamFailed
from otahub.hub.services.firmware import PackageMeta
from otahub.hub.services.updates import UpdateRequest
from otahub.protocols import checksums
from otahub.protocols.checksums import Algorithm
from tests.hub.conftest import chunks

DATA = os.urandom(300_000)


async def test_upload_computes_every_checksum(core: HubCore) -> None:
    view = await core.firmware.upload(
        PackageMeta(title="fw", version="1", filename="../../evil/image.bin"), chunks(DATA)
    )
    assert view.size == len(DATA)
    assert view.filename == "image.bin"
    for algo in Algorithm:
        assert view.checksums[algo] == checksums.checksum(algo, DATA)
    assert (await core.firmware.get(view.id)) == view
    assert [p.id for p in await core.firmware.list()] == [view.id]
    path = core.blobs.local_path(view.sha256)
    assert path is not None and path.read_bytes() == DATA


async def test_same_title_and_version_is_a_conflict(core: HubCore) -> None:
    await core.firmware.upload(PackageMeta(title="fw", version="1"), chunks(b"a"))
    with pytest.raises(Conflict, match="already exists"):
        await core.firmware.upload(PackageMeta(title="fw", version="1"), chunks(b"b"))
    await core.firmware.upload(PackageMeta(title="fw", version="2"), chunks(b"a"))


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        (PackageMeta(title="", version="1"), "title"),
        (PackageMeta(title="t", version=" "), "version"),
        (PackageMeta(title="t", version="1", kind="driver"), "kind"),
        (PackageMeta(title="t\n", version="1"), "printable"),
    ],
)
async def test_invalid_metadata(core: HubCore, meta: PackageMeta, message: str) -> None:
    with pytest.raises(Invalid, match=message):
        await core.firmware.upload(meta, chunks(b"x"))


async def test_a_package_read_before_its_delete_is_not_found_after_it(core: HubCore) -> None:
    view = await core.firmware.upload(PackageMeta(title="fw", version="1"), chunks(DATA))
    assert await core.firmware.get(view.id) == view  # read once: remembered by id
    await core.firmware.delete(view.id)
    with pytest.raises(NotFound):
        await core.firmware.get(view.id)
    # A new package may get the freed id; it is read as itself, not as the old one.
    other = await core.firmware.upload(PackageMeta(title="fw", version="2"), chunks(b"other"))
    assert await core.firmware.get(other.id) == other


async def test_delete_refused_while_an_active_update_uses_it(core: HubCore) -> None:
    view = await core.firmware.upload(PackageMeta(title="fw", version="1"), chunks(DATA))
    twin = await core.firmware.upload(PackageMeta(title="fw", version="1b"), chunks(DATA))
    await core.devices.create(DeviceSpec(name="d", dialect="thin-edge"))
    update = await core.updates.create(UpdateRequest("d", "fw", "1"))
    with pytest.raises(Conflict, match=f"active update {update.id}"):
        await core.firmware.delete(view.id)
    await core.updates.cancel(update.id)
    await core.firmware.delete(view.id)
    # The history keeps title and version; the shared blob stays for the twin.
    kept = await core.updates.get(update.id)
    assert (kept.package_id, kept.title, kept.version) == (None, "fw", "1")
    assert core.blobs.local_path(twin.sha256) is not None
    await core.firmware.delete(twin.id)
    assert core.blobs.local_path(twin.sha256) is None
    with pytest.raises(NotFound):
        await core.firmware.delete(twin.id)


class _FlakyHandler(http.server.BaseHTTPRequestHandler):
    """Serves DATA with Range support; the first answer breaks off halfway."""

    requests: list[str | None] = []

    def do_GET(self) -> None:
        range_header = self.headers.get("Range")
        type(self).requests.append(range_header)
        start = int(range_header.split("=")[1].rstrip("-")) if range_header else 0
        body = DATA[start:]
        self.send_response(206 if range_header else 200)
        self.send_header("Content-Type", "application/x-firmware")
        self.send_header("Content-Length", str(len(body)))
        if range_header:
            self.send_header("Content-Range", f"bytes {start}-{len(DATA) - 1}/{len(DATA)}")
        self.end_headers()
        if len(type(self).requests) == 1:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def flaky_server() -> Iterator[str]:
    _FlakyHandler.requests = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FlakyHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/images/app-v2.bin"
    server.shutdown()
    server.server_close()


async def test_register_by_url_resumes_after_a_broken_download(
    core: HubCore, flaky_server: str
) -> None:
    view = await core.firmware.register_url(PackageMeta(title="app", version="2"), flaky_server)
    assert view.sha256 == hashlib.sha256(DATA).hexdigest()
    assert view.size == len(DATA)
    assert view.source_url == flaky_server
    assert view.filename == "app-v2.bin"
    assert view.content_type == "application/x-firmware"
    assert _FlakyHandler.requests[0] is None
    assert _FlakyHandler.requests[1] == f"bytes={len(DATA) // 2}-"


async def test_register_by_url_errors(core: HubCore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(firmware, "URL_RETRY_DELAY_S", 0.01)
    with pytest.raises(Invalid, match="http"):
        await core.firmware.register_url(PackageMeta(title="a", version="1"), "ftp://x/y")
    with pytest.raises(Invalid, match="not a valid URL"):
        await core.firmware.register_url(PackageMeta(title="a", version="1"), "http://[::1")
    with pytest.raises(UpstreamFailed, match="after 5 attempts"):
        # Port 9 (discard) has no listener on a test machine: connection refused.
        await core.firmware.register_url(
            PackageMeta(title="a", version="1"), "http://127.0.0.1:9/none"
        )
    assert await core.firmware.list() == []
