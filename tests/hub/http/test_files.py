"""file_response through a real uvicorn server on loopback, with httpx and curl,
and through the hub's own listener, which sends the bodies with sendfile."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request, Response
from starlette.types import Message

from otahub.hub.http.files import CHUNK_SIZE, RangeNotSatisfiable, file_response, parse_range
from otahub.hub.http.listener import HubHttpServer

# Not a multiple of the chunk size, so the last chunk is a short one.
SIZE = 2 * CHUNK_SIZE + 12_345
HTTP_IMPLS = ["h11"]
try:
    import httptools  # noqa: F401

    HTTP_IMPLS.append("httptools")
    HTTP_IMPLS.append("listener")  # otahub's own (listener.py), built on httptools
except ImportError:
    pass


class Served:
    def __init__(self, base_url: str, data: bytes, sha256: str) -> None:
        self.base_url = base_url
        self.data = data
        self.sha256 = sha256
        self.etag = f'"{sha256}"'
        self.url = f"{base_url}/files/firmware.bin"
        self.empty_url = f"{base_url}/files/empty.bin"
        self.client = httpx.Client(timeout=30)


def _app(directory: Path, etags: dict[str, str]) -> FastAPI:
    app = FastAPI()

    @app.api_route("/files/{name}", methods=["GET", "HEAD"])
    async def serve(name: str, request: Request) -> Response:
        return file_response(
            request,
            directory / name,
            etag=etags[name],
            filename=name,
            extra_headers={"Cache-Control": "private, max-age=60"},
        )

    return app


@pytest.fixture(scope="module", params=HTTP_IMPLS)
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    directory = tmp_path_factory.mktemp("files")
    data = os.urandom(SIZE)
    (directory / "firmware.bin").write_bytes(data)
    (directory / "empty.bin").write_bytes(b"")
    etags = {
        "firmware.bin": hashlib.sha256(data).hexdigest(),
        "empty.bin": hashlib.sha256(b"").hexdigest(),
    }
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = _app(directory, etags)
    server: uvicorn.Server
    if request.param == "listener":
        sock.close()
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
        server = HubHttpServer(config)
        thread = threading.Thread(target=server.run, daemon=True)
    else:
        config = uvicorn.Config(app, http=request.param, log_level="warning", lifespan="off")
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    if isinstance(server, HubHttpServer):
        port = server.port
    result = Served(f"http://127.0.0.1:{port}", data, etags["firmware.bin"])
    try:
        yield result
    finally:
        result.client.close()
        server.should_exit = True
        thread.join(10)
        sock.close()


def _get(served: Served, **headers: str) -> httpx.Response:
    return served.client.get(served.url, headers=headers)


# --- whole file and HEAD ---------------------------------------------------


def test_full_get(served: Served) -> None:
    r = _get(served)
    assert r.status_code == 200
    assert r.content == served.data
    assert r.headers["content-length"] == str(SIZE)
    assert r.headers["accept-ranges"] == "bytes"
    assert r.headers["etag"] == served.etag
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.headers["content-disposition"] == 'attachment; filename="firmware.bin"'
    assert r.headers["cache-control"] == "private, max-age=60"
    assert "content-range" not in r.headers


def test_head_has_headers_and_no_body(served: Served) -> None:
    with socket.create_connection(("127.0.0.1", int(served.base_url.rsplit(":", 1)[1]))) as s:
        # Raw socket: a client library would hide a body sent after HEAD.
        s.sendall(b"HEAD /files/firmware.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        raw = b""
        while chunk := s.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert body == b""
    lower = head.lower()
    assert f"content-length: {SIZE}".encode() in lower
    assert b"accept-ranges: bytes" in lower
    assert f"etag: {served.etag}".encode() in lower


def test_head_ignores_range(served: Served) -> None:
    # RFC 9110 defines range handling for GET only.
    r = served.client.head(served.url, headers={"Range": "bytes=0-9"})
    assert r.status_code == 200
    assert r.headers["content-length"] == str(SIZE)
    assert r.content == b""


# --- ranges ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "start", "stop"),
    [
        ("bytes=0-99", 0, 100),  # first bytes
        ("bytes=0-0", 0, 1),
        # middle, across a chunk boundary
        (f"bytes={CHUNK_SIZE - 10}-{CHUNK_SIZE + 9}", CHUNK_SIZE - 10, CHUNK_SIZE + 10),
        ("bytes=-500", SIZE - 500, SIZE),  # suffix
        (f"bytes=-{SIZE + 10}", 0, SIZE),  # suffix longer than the file
        ("bytes=1000-", 1000, SIZE),  # open-ended
        (f"bytes={SIZE - 1}-", SIZE - 1, SIZE),  # last byte
        (f"bytes=10-{SIZE * 2}", 10, SIZE),  # last-pos past the end is clamped
        ("bytes=0-", 0, SIZE),
        ("BYTES = 5 - 6", 5, 7),  # unit is case-insensitive, whitespace tolerated
        ("bytes=7-8,", 7, 9),  # empty list elements are allowed
    ],
)
def test_single_range(served: Served, header: str, start: int, stop: int) -> None:
    r = _get(served, Range=header)
    assert r.status_code == 206
    assert r.content == served.data[start:stop]
    assert r.headers["content-range"] == f"bytes {start}-{stop - 1}/{SIZE}"
    assert r.headers["content-length"] == str(stop - start)
    assert r.headers["etag"] == served.etag
    assert r.headers["accept-ranges"] == "bytes"


@pytest.mark.parametrize("header", [f"bytes={SIZE}-", f"bytes={SIZE + 5}-{SIZE + 10}", "bytes=-0"])
def test_unsatisfiable_range(served: Served, header: str) -> None:
    r = _get(served, Range=header)
    assert r.status_code == 416
    assert r.headers["content-range"] == f"bytes */{SIZE}"
    assert r.headers["content-length"] == "0"
    assert r.content == b""


@pytest.mark.parametrize(
    "header",
    [
        "bytes=abc",
        "bytes=5-3",
        "bytes",
        "bytes=",
        "bytes=-",
        "items=0-5",
        "bytes=1-2-3",
        "bytes=+1-2",
    ],
)
def test_malformed_range_sends_whole_file(served: Served, header: str) -> None:
    r = _get(served, Range=header)
    assert r.status_code == 200
    assert r.content == served.data
    assert "content-range" not in r.headers


@pytest.mark.parametrize("header", ["bytes=0-1,5-6", "bytes=0-10, 20-30", f"bytes=0-1,{SIZE}-"])
def test_multiple_ranges_send_whole_file(served: Served, header: str) -> None:
    r = _get(served, Range=header)
    assert r.status_code == 200
    assert r.headers["content-length"] == str(SIZE)
    assert r.content == served.data


# --- conditional requests ----------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "exact",
        'list: "0123", "{sha}" , "4567"',
        "*",
        # If-None-Match uses the weak comparison (RFC 9110 13.1.2): W/"x" matches "x".
        'W/"{sha}"',
    ],
)
def test_if_none_match_gives_304(served: Served, value: str) -> None:
    if value == "exact":
        header = served.etag
    else:
        header = value.removeprefix("list: ").replace("{sha}", served.sha256)
    for method in ("GET", "HEAD"):
        r = served.client.request(method, served.url, headers={"If-None-Match": header})
        assert r.status_code == 304, method
        assert r.content == b""
        assert r.headers["etag"] == served.etag
        assert r.headers["cache-control"] == "private, max-age=60"


def test_if_none_match_other_tags_send_file(served: Served) -> None:
    r = _get(served, **{"If-None-Match": '"deadbeef", W/"cafe"'})
    assert r.status_code == 200
    assert r.content == served.data


def test_if_none_match_is_checked_before_range(served: Served) -> None:
    r = _get(served, **{"If-None-Match": served.etag, "Range": "bytes=0-9"})
    assert r.status_code == 304


def test_if_range_matching_etag_honours_range(served: Served) -> None:
    r = _get(served, **{"If-Range": served.etag, "Range": "bytes=100-199"})
    assert r.status_code == 206
    assert r.content == served.data[100:200]


@pytest.mark.parametrize(
    "if_range",
    [
        '"0000"',  # another representation
        'W/"{sha}"',  # If-Range needs the strong comparison
        "{sha}",  # unquoted is not an entity tag
        "Mon, 23 Nov 2026 10:00:00 GMT",  # the hub sends no Last-Modified to match a date
    ],
)
def test_if_range_mismatch_sends_whole_file(served: Served, if_range: str) -> None:
    r = _get(served, **{"If-Range": if_range.replace("{sha}", served.sha256), "Range": "bytes=0-9"})
    assert r.status_code == 200
    assert r.content == served.data


def test_if_match(served: Served) -> None:
    assert _get(served, **{"If-Match": f'"x", {served.etag}'}).status_code == 200
    assert _get(served, **{"If-Match": "*"}).status_code == 200
    refused = _get(served, **{"If-Match": '"other"'})
    assert refused.status_code == 412
    # If-Match takes the strong comparison.
    assert _get(served, **{"If-Match": f"W/{served.etag}"}).status_code == 412


# --- empty file --------------------------------------------------------------


def test_empty_file(served: Served) -> None:
    r = served.client.get(served.empty_url)
    assert r.status_code == 200
    assert r.headers["content-length"] == "0"
    assert r.content == b""
    head = served.client.head(served.empty_url)
    assert head.status_code == 200
    assert head.headers["content-length"] == "0"


@pytest.mark.parametrize("header", ["bytes=0-", "bytes=-5", "bytes=0-0"])
def test_empty_file_ignores_range(served: Served, header: str) -> None:
    # No Content-Range can describe a range of an empty file: send it whole.
    r = served.client.get(served.empty_url, headers={"Range": header})
    assert r.status_code == 200
    assert r.headers["content-length"] == "0"
    assert r.content == b""


# --- resume and disconnects --------------------------------------------------


def test_resume_interrupted_download(served: Served) -> None:
    half = SIZE // 2 + 7
    got = bytearray()
    with served.client.stream("GET", served.url) as r:
        assert r.status_code == 200
        for chunk in r.iter_raw(64 * 1024):
            got += chunk
            if len(got) >= half:
                break
    # The connection is dropped mid-body; continue from what arrived.
    rest = _get(served, Range=f"bytes={len(got)}-", **{"If-Range": served.etag})
    assert rest.status_code == 206
    assert rest.headers["content-range"] == f"bytes {len(got)}-{SIZE - 1}/{SIZE}"
    assert hashlib.sha256(bytes(got) + rest.content).hexdigest() == served.sha256


def test_server_survives_aborted_downloads(served: Served) -> None:
    port = int(served.base_url.rsplit(":", 1)[1])
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"GET /files/firmware.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            s.recv(1000)
    assert hashlib.sha256(_get(served).content).hexdigest() == served.sha256


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_curl_resumes_partial_file(served: Served, tmp_path: Path) -> None:
    target = tmp_path / "download.bin"
    target.write_bytes(served.data[: SIZE // 3])
    subprocess.run(
        ["curl", "-sSf", "-C", "-", "-o", str(target), served.url], check=True, timeout=60
    )
    assert hashlib.sha256(target.read_bytes()).hexdigest() == served.sha256
    # A complete file resumes to a 416, which curl takes as "already done".
    done = subprocess.run(
        ["curl", "-sS", "-C", "-", "-o", str(target), "-w", "%{http_code}", served.url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.stdout == "416"
    assert hashlib.sha256(target.read_bytes()).hexdigest() == served.sha256


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_curl_range(served: Served, tmp_path: Path) -> None:
    target = tmp_path / "part.bin"
    subprocess.run(
        ["curl", "-sSf", "-r", "5000-70000", "-o", str(target), served.url], check=True, timeout=60
    )
    assert target.read_bytes() == served.data[5000:70001]


# --- units -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-4", (0, 5)),
        ("bytes=5-", (5, 10)),
        ("bytes=-3", (7, 10)),
        ("bytes=-30", (0, 10)),
        ("bytes=9-9", (9, 10)),
        ("bytes=3-100", (3, 10)),
        ("bytes=0-1,2-3", None),
        ("bytes=3-2", None),
        ("bytes=x-", None),
        ("bytes=1", None),
        ("lines=1-2", None),
        ("bytes=-", None),
        ("bytes=٣-4", None),  # Unicode digits are not DIGIT
    ],
)
def test_parse_range(header: str, expected: tuple[int, int] | None) -> None:
    assert parse_range(header, 10) == expected


@pytest.mark.parametrize("header", ["bytes=10-", "bytes=11-20", "bytes=-0"])
def test_parse_range_unsatisfiable(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, 10)


def _request(method: str = "GET", headers: list[tuple[bytes, bytes]] | None = None) -> Request:
    scope: dict[str, Any] = {"type": "http", "method": method, "headers": headers or []}
    return Request(scope)


@pytest.mark.parametrize("etag", ['"a"b"', 'W/"weak"', "with space"])
def test_invalid_etag_is_refused(tmp_path: Path, etag: str) -> None:
    (tmp_path / "f").write_bytes(b"x")
    with pytest.raises(ValueError, match="entity tag"):
        file_response(_request(), tmp_path / "f", etag=etag)


def test_missing_file_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        file_response(_request(), tmp_path / "nope", etag="x")


def test_size_mismatch_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"abc")
    with pytest.raises(RuntimeError, match="expected 4"):
        file_response(_request(), tmp_path / "f", etag="x", size=4)


def test_non_ascii_filename(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"abc")
    response = file_response(_request(), tmp_path / "f", etag="x", filename='fw "ü".bin')
    assert response.headers["content-disposition"] == (
        "attachment; filename=\"fw ___.bin\"; filename*=UTF-8''fw%20%22%C3%BC%22.bin"
    )


async def test_pathsend_used_when_server_offers_it(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"0123456789")
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    scope: dict[str, Any] = {
        "type": "http",
        "method": "GET",
        "headers": [],
        "extensions": {"http.response.pathsend": {}},
    }
    await file_response(Request(scope), path, etag="x")(scope, receive, send)
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.pathsend"]
    assert sent[1]["path"] == str(path)

    # A range cannot be path-sent: it is streamed.
    sent.clear()
    scope["headers"] = [(b"range", b"bytes=2-4")]
    await file_response(Request(scope), path, etag="x")(scope, receive, send)
    assert sent[0]["status"] == 206
    assert bytes(sent[1]["body"]) == b"234"
    assert sent[1]["more_body"] is False


async def test_zerocopysend_gets_the_open_file_and_the_range(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"0123456789")
    sent: list[Message] = []

    async def send(message: Message) -> None:
        if message["type"] == "http.response.zerocopysend":
            # What the server would send, read while the descriptor is still open.
            message = {
                **message,
                "bytes": os.pread(message["file"], message["count"], message["offset"]),
            }
        sent.append(message)

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    scope: dict[str, Any] = {
        "type": "http",
        "method": "GET",
        "headers": [(b"range", b"bytes=2-4")],
        "extensions": {"http.response.zerocopysend": {}, "http.response.pathsend": {}},
    }
    await file_response(Request(scope), path, etag="x")(scope, receive, send)
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.zerocopysend"]
    assert sent[0]["status"] == 206
    assert (sent[1]["offset"], sent[1]["count"], sent[1]["more_body"]) == (2, 3, False)
    assert sent[1]["bytes"] == b"234"
