"""The hub's HTTP listener (sendfile) under `otahub serve`: aborted clients,
files that go away while they are sent, and many range requests at once."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import struct
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request, Response
from starlette.requests import ClientDisconnect

from otahub.hub.http.files import file_response
from otahub.hub.http.listener import HubHttpServer
from tests.hubproc import HubProcess

MIB = 1 << 20


def _upload(hub: HubProcess, data: bytes, version: str) -> dict[str, Any]:
    r = httpx.post(
        f"{hub.http_url}/api/v1/firmware",
        params={"title": "listener-test", "version": version, "filename": "fw.bin"},
        content=data,
        headers={"Content-Type": "application/octet-stream"},
        timeout=60,
    )
    assert r.status_code == 201, r.text
    package: dict[str, Any] = r.json()
    return package


def _open_blob_fds(pid: int, sha256: str) -> list[str]:
    found = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if sha256 in target:
            found.append(target)
    return found


def _wait_for(condition: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _slow_reader(hub: HubProcess, path: str) -> socket.socket:
    """A connection asking for ``path`` whose small receive buffer keeps the hub waiting."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.settimeout(30)
    sock.connect(("127.0.0.1", hub.http_port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: hub\r\n\r\n".encode())
    return sock


def _read_head(sock: socket.socket) -> tuple[bytes, bytearray]:
    got = bytearray()
    while b"\r\n\r\n" not in got:
        chunk = sock.recv(65536)
        assert chunk, "connection closed before the head"
        got += chunk
    head, _, body = bytes(got).partition(b"\r\n\r\n")
    return head, bytearray(body)


def test_client_that_disconnects_mid_sendfile_leaves_no_file_open(hub: HubProcess) -> None:
    data = os.urandom(32 * MIB)
    package = _upload(hub, data, "disconnect")
    assert hub.proc is not None
    for _ in range(5):
        sock = _slow_reader(hub, package["content_url"])
        head, body = _read_head(sock)
        assert head.startswith(b"HTTP/1.1 200 ")
        while len(body) < MIB:
            body += sock.recv(65536)
        # An abortive close (RST) in the middle of the body.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    pid = hub.proc.pid
    _wait_for(lambda: not _open_blob_fds(pid, package["sha256"]), "the hub to close the file")
    whole = httpx.get(f"{hub.http_url}{package['content_url']}", timeout=60)
    assert whole.status_code == 200
    assert hashlib.sha256(whole.content).hexdigest() == package["sha256"]
    assert "Traceback" not in hub.log()


def test_package_deleted_while_being_sent_is_sent_whole_from_the_old_file(
    hub: HubProcess,
) -> None:
    old = os.urandom(48 * MIB)
    package = _upload(hub, old, "old")
    sock = _slow_reader(hub, package["content_url"])
    try:
        head, body = _read_head(sock)
        assert head.startswith(b"HTTP/1.1 200 ")
        assert f"content-length: {len(old)}".encode() in head.lower()
        # A new version arrives (a new file: the store is content-addressed) and
        # the old package and its blob are deleted while the send waits on us.
        _upload(hub, os.urandom(len(old)), "new")
        r = httpx.delete(f"{hub.http_url}/api/v1/firmware/{package['id']}", timeout=30)
        assert r.status_code == 204, r.text
        blob = hub.data_dir / "blobs" / "sha256" / package["sha256"][:2] / package["sha256"]
        assert not blob.exists()
        while len(body) < len(old):
            chunk = sock.recv(MIB)
            assert chunk, f"connection closed after {len(body)} of {len(old)} bytes"
            body += chunk
    finally:
        sock.close()
    assert hashlib.sha256(body).hexdigest() == package["sha256"]
    assert httpx.get(f"{hub.http_url}{package['content_url']}").status_code == 404


def test_file_replaced_while_being_sent_is_sent_whole_from_the_old_file(hub: HubProcess) -> None:
    """A thin-edge file PUT over one being downloaded: the download goes on with
    the old bytes (the listener sends from the descriptor opened for it), the
    next one gets the new file; the first download of a URL runs through the
    app, the next ones directly (direct.py), and both are covered."""
    path = "/te/v1/files/replaced-child/config/big.bin"
    current = os.urandom(24 * MIB)
    r = httpx.put(f"{hub.http_url}{path}", content=current, timeout=60)
    assert r.status_code == 201, r.text
    for _ in range(3):
        sock = _slow_reader(hub, path)
        try:
            head, body = _read_head(sock)
            assert head.startswith(b"HTTP/1.1 200 "), head
            assert f"content-length: {len(current)}".encode() in head.lower()
            replacement = os.urandom(len(current))
            r = httpx.put(f"{hub.http_url}{path}", content=replacement, timeout=60)
            assert r.status_code == 201, r.text
            while len(body) < len(current):
                chunk = sock.recv(MIB)
                assert chunk, f"connection closed after {len(body)} of {len(current)} bytes"
                body += chunk
        finally:
            sock.close()
        assert bytes(body) == current
        assert httpx.get(f"{hub.http_url}{path}", timeout=60).content == replacement
        current = replacement
    assert "Traceback" not in hub.log()


async def _range_request(port: int, path: str, start: int, stop: int) -> tuple[bytes, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: hub\r\nRange: bytes={start}-{stop - 1}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        response = await reader.read()  # to the end: the hub closes after the response
    finally:
        writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    return head, body


def test_1000_concurrent_range_requests(hub: HubProcess) -> None:
    data = os.urandom(4 * MIB)
    package = _upload(hub, data, "ranges")
    size, piece, count = len(data), 16 * 1024, 1000
    wanted = [
        ((i * 4099) % (size - piece), (i * 4099) % (size - piece) + piece) for i in range(count)
    ]

    async def all_at_once() -> list[tuple[bytes, bytes]]:
        return await asyncio.wait_for(
            asyncio.gather(
                *(_range_request(hub.http_port, package["content_url"], a, b) for a, b in wanted)
            ),
            120,
        )

    answers = asyncio.run(all_at_once())
    for (start, stop), (head, body) in zip(wanted, answers, strict=True):
        lines = head.lower().split(b"\r\n")
        assert lines[0].startswith(b"http/1.1 206 "), head
        assert f"content-range: bytes {start}-{stop - 1}/{size}".encode() in lines
        assert body == data[start:stop]
    assert hub.proc is not None
    _wait_for(lambda: not _open_blob_fds(hub.proc.pid, package["sha256"]), "files to close")


def test_one_connection_downloads_then_uploads_then_downloads(hub: HubProcess) -> None:
    """A keep-alive connection served by the listener is handed to uvicorn for
    an upload with the bytes already read, in order."""
    first = os.urandom(3 * MIB)
    package = _upload(hub, first, "keep-alive-1")
    with httpx.Client(base_url=hub.http_url, timeout=60) as client:
        for attempt in range(5):
            got = client.get(package["content_url"], headers={"Range": "bytes=10-19"})
            assert got.status_code == 206 and got.content == first[10:20]
            body = os.urandom(MIB + attempt)
            r = client.post(
                "/api/v1/firmware",
                params={"title": "listener-test", "version": f"keep-alive-2-{attempt}"},
                content=body,
                headers={"Content-Type": "application/octet-stream"},
            )
            assert r.status_code == 201, r.text
            assert r.json()["sha256"] == hashlib.sha256(body).hexdigest()
            again = client.get(r.json()["content_url"])
            assert again.status_code == 200 and again.content == body


def test_an_idle_keep_alive_connection_is_closed(hub: HubProcess) -> None:
    with socket.create_connection(("127.0.0.1", hub.http_port), timeout=60) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: hub\r\n\r\n")
        head, _ = _read_head(sock)
        assert head.startswith(b"HTTP/1.1 200 ")
        # Nothing more is asked: the hub closes the connection after its
        # keep-alive timeout (5 s); a socket timeout here (60 s) fails the test.
        while sock.recv(65536):
            pass


def test_a_client_that_closes_its_side_after_the_request_gets_the_answer(hub: HubProcess) -> None:
    data = os.urandom(2 * MIB)
    package = _upload(hub, data, "half-close")
    with socket.create_connection(("127.0.0.1", hub.http_port), timeout=30) as sock:
        sock.sendall(f"GET {package['content_url']} HTTP/1.1\r\nHost: hub\r\n\r\n".encode())
        sock.shutdown(socket.SHUT_WR)
        head, body = _read_head(sock)
        while chunk := sock.recv(MIB):
            body += chunk
    assert head.startswith(b"HTTP/1.1 200 ")
    assert bytes(body) == data


def test_file_bodies_whole_and_ranged_go_out_with_sendfile_small_ones_with_the_head(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(3 * MIB + 5)
    (tmp_path / "fw.bin").write_bytes(data)
    etag = hashlib.sha256(data).hexdigest()
    app = FastAPI()

    @app.get("/fw.bin")
    async def firmware(request: Request) -> Response:
        return file_response(request, tmp_path / "fw.bin", etag=etag)

    calls: list[tuple[int, int]] = []
    real_sendfile = os.sendfile

    def counting_sendfile(out_fd: int, in_fd: int, offset: int | None, count: int) -> int:
        assert offset is not None
        calls.append((offset, count))
        return real_sendfile(out_fd, in_fd, offset, count)

    monkeypatch.setattr(os, "sendfile", counting_sendfile)
    server = HubHttpServer(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        _wait_for(lambda: server.started, "the listener to start")
        url = f"http://127.0.0.1:{server.port}/fw.bin"
        whole = httpx.get(url, timeout=30)
        assert whole.status_code == 200 and whole.content == data
        assert calls and calls[0][0] == 0
        assert sum(count for _offset, count in calls) >= len(data)
        calls.clear()
        part = httpx.get(url, headers={"Range": "bytes=1000000-1999999"}, timeout=30)
        assert part.status_code == 206 and part.content == data[1_000_000:2_000_000]
        assert calls[0] == (1_000_000, 1_000_000)
        calls.clear()
        # a small range goes out with the head, in one send
        small = httpx.get(url, headers={"Range": "bytes=5-65540"}, timeout=30)
        assert small.status_code == 206 and small.content == data[5:65541]
        assert calls == []
    finally:
        server.should_exit = True
        thread.join(10)


class _Uploads:
    """An in-process listener whose POST route reads the body and says how it ended."""

    def __init__(self, body_timeout: float, wait_before_reading: float = 0.0) -> None:
        self.ended: list[str] = []
        app = FastAPI()

        @app.post("/upload")
        async def upload(request: Request) -> Response:
            await asyncio.sleep(wait_before_reading)
            received = 0
            try:
                async for chunk in request.stream():
                    received += len(chunk)
            except ClientDisconnect:
                self.ended.append(f"disconnect after {received}")
                raise
            self.ended.append(f"complete {received}")
            return Response(str(received))

        self.server = HubHttpServer(
            uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
        )
        self.server.body_timeout = body_timeout
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> _Uploads:
        self.thread.start()
        _wait_for(lambda: self.server.started, "the listener to start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    def post(self, length: int) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.server.port), timeout=30)
        sock.sendall(
            f"POST /upload HTTP/1.1\r\nHost: hub\r\nContent-Length: {length}\r\n\r\n".encode()
        )
        return sock


def test_a_handed_over_body_that_stops_arriving_is_cut_after_the_body_timeout() -> None:
    with _Uploads(body_timeout=1.0) as uploads:
        sock = uploads.post(1_000_000)
        try:
            sock.sendall(b"x" * 1000)  # then nothing, the connection left open
            started = time.monotonic()
            with contextlib.suppress(ConnectionResetError):  # an abortive close
                assert sock.recv(65536) == b""  # the hub closed it
            assert time.monotonic() - started < 10
        finally:
            sock.close()
        _wait_for(lambda: uploads.ended, "the app to see the disconnect")
        assert uploads.ended == ["disconnect after 1000"]


def test_a_slow_body_or_a_slow_app_is_not_cut() -> None:
    # bytes keep coming, slower than the whole timeout in total
    with _Uploads(body_timeout=1.0) as uploads:
        with uploads.post(10) as sock:
            for _ in range(5):
                sock.sendall(b"xx")
                time.sleep(0.4)
            head, _ = _read_head(sock)
            assert head.startswith(b"HTTP/1.1 200 ")
        assert uploads.ended == ["complete 10"]
    # the app reads late: the body waits in the socket (reading paused), not the client
    with _Uploads(body_timeout=1.0, wait_before_reading=3.0) as uploads:
        with uploads.post(2 * MIB) as sock:
            sock.sendall(os.urandom(2 * MIB))
            head, _ = _read_head(sock)
            assert head.startswith(b"HTTP/1.1 200 ")
        assert uploads.ended == [f"complete {2 * MIB}"]
