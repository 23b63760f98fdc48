"""Download routes the listener runs without FastAPI (direct.py): only for requests
the app itself routes to the mirrored endpoint, with the route's own rules."""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request, Response

from otahub.hub.http.direct import MAX_PATH, PATHS, DirectRoutes, confirm, direct_routes
from otahub.hub.http.files import file_response
from otahub.hub.http.listener import HubHttpServer
from tests.hubproc import HubProcess

MIB = 1 << 20


class Served:
    """An app with a download route mirrored as a direct route, and an earlier
    route whose paths the direct route's pattern also matches."""

    def __init__(self, tmp_path: Path) -> None:
        self.data = os.urandom(2 * MIB + 3)
        self.file = tmp_path / "fw.bin"
        self.file.write_bytes(self.data)
        self.etag = hashlib.sha256(self.data).hexdigest()
        self.endpoint_calls = 0
        self.direct_calls = 0
        self.refuse = False  # the direct handler leaves the request to the app
        self.fail = False  # the direct handler raises
        app = FastAPI()

        @app.get("/api/v1/devices/{name}")
        async def device(name: str) -> dict[str, str]:
            return {"device": name}

        @app.get("/api/v1/{token}/firmware")
        @app.head("/api/v1/{token}/firmware")
        async def firmware(token: str, request: Request) -> Response:
            self.endpoint_calls += 1
            confirm(request, "download")
            return self.answer(request, token)

        async def direct(request: Request, params: Mapping[str, str]) -> Response | None:
            self.direct_calls += 1
            if self.fail:
                raise RuntimeError("the app answers this one")
            if self.refuse:
                return None
            return self.answer(request, params["token"])

        direct_routes(app).add("download", r"/api/v1/(?P<token>[^/]+)/firmware", direct)
        self.server = HubHttpServer(
            uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
        )

    def answer(self, request: Request, token: str) -> Response:
        if token != "good":
            return Response("unknown token", status_code=401)
        return file_response(request, self.file, etag=self.etag)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    served = Served(tmp_path)
    thread = threading.Thread(target=served.server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not served.server.started:
        assert time.monotonic() < deadline, "the listener did not start"
        time.sleep(0.02)
    try:
        yield served
    finally:
        served.server.should_exit = True
        thread.join(10)


def _calls(served: Served) -> tuple[int, int]:
    return served.endpoint_calls, served.direct_calls


def test_the_first_request_for_a_path_goes_through_the_app_the_next_ones_direct(
    served: Served,
) -> None:
    with httpx.Client(base_url=served.url, timeout=30) as client:
        for n in range(3):
            r = client.get("/api/v1/good/firmware", headers={"Range": "bytes=100-1048675"})
            assert r.status_code == 206, r.text
            assert r.content == served.data[100:1048676]
            assert r.headers["content-range"] == f"bytes 100-1048675/{len(served.data)}"
            assert _calls(served) == (1, n)
        # HEAD is another request to route: the app first, then direct
        for n in range(2):
            head = client.head("/api/v1/good/firmware")
            assert head.status_code == 200 and head.content == b""
            assert head.headers["content-length"] == str(len(served.data))
            assert _calls(served) == (2, 2 + n)
        # the route's own refusal, direct as well once its path was routed
        assert client.get("/api/v1/bad/firmware").status_code == 401
        assert client.get("/api/v1/bad/firmware").status_code == 401
        assert _calls(served) == (3, 4)


def test_a_path_the_app_routes_elsewhere_is_never_taken_directly(served: Served) -> None:
    with httpx.Client(base_url=served.url, timeout=30) as client:
        for _ in range(3):
            r = client.get("/api/v1/devices/firmware")
            assert r.status_code == 200 and r.json() == {"device": "firmware"}
    assert _calls(served) == (0, 0)


def test_a_handler_that_declines_or_fails_leaves_the_request_to_the_app(served: Served) -> None:
    with httpx.Client(base_url=served.url, timeout=30) as client:
        assert client.get("/api/v1/good/firmware").content == served.data
        served.refuse = True
        assert client.get("/api/v1/good/firmware").content == served.data
        assert _calls(served) == (2, 1)
        served.refuse, served.fail = False, True
        r = client.get("/api/v1/good/firmware", headers={"Range": "bytes=0-9"})
        assert r.status_code == 206 and r.content == served.data[:10]
        assert _calls(served) == (3, 2)


def test_a_request_with_proxy_headers_goes_through_the_app(served: Served) -> None:
    with httpx.Client(base_url=served.url, timeout=30) as client:
        client.get("/api/v1/good/firmware")
        for header in ("X-Forwarded-For", "X-Forwarded-Proto", "Forwarded"):
            r = client.get("/api/v1/good/firmware", headers={header: "10.1.2.3"})
            assert r.status_code == 200 and r.content == served.data
        assert _calls(served) == (4, 0)


# -- the content route of a real hub, admin auth on ----------------------------------


def _metric(text: str, name: str) -> float:
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert found is not None, f"{name} not in /metrics"
    return float(found.group(1))


def test_content_route_keeps_admin_auth_and_download_counters(
    hub_factory: Any,
) -> None:
    hub: HubProcess = hub_factory()
    token = (hub.data_dir / "admin.token").read_text().strip()
    good = {"Authorization": f"Bearer {token}"}
    data = os.urandom(3 * MIB)
    with httpx.Client(base_url=hub.http_url, timeout=60) as client:
        r = client.post(
            "/api/v1/firmware",
            params={"title": "direct", "version": "1"},
            content=data,
            headers={**good, "Content-Type": "application/octet-stream"},
        )
        assert r.status_code == 201, r.text
        url = r.json()["content_url"]
        for start in range(0, 3 * MIB, MIB):  # the first through the app, then direct
            part = client.get(url, headers={**good, "Range": f"bytes={start}-{start + MIB - 1}"})
            assert part.status_code == 206 and part.content == data[start : start + MIB]
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": token}):
            refused = client.get(url, headers=headers)
            assert refused.status_code == 401, headers
            assert "www-authenticate" in refused.headers
        metrics = client.get("/metrics", headers=good).text
        assert _metric(metrics, "otahub_downloads_total") >= 3
        assert _metric(metrics, "otahub_download_sent_bytes_total") >= 3 * MIB
        # a range of a package deleted meanwhile: the app's 404, not a stale answer
        assert client.delete(url.removesuffix("/content"), headers=good).status_code == 204
        gone = client.get(url, headers={**good, "Range": "bytes=0-9"})
        assert gone.status_code == 404


async def _never(request: Request, params: Mapping[str, str]) -> Response | None:
    return None


def test_the_table_of_confirmed_paths_is_bounded_and_refuses_long_paths() -> None:
    routes = DirectRoutes()
    routes.add("file", r"/files/(?P<name>[^/]+)", _never)
    # confirmed before any token check: a long junk path is never remembered
    long_path = "/files/" + "x" * MAX_PATH
    routes.confirm({"method": "GET", "path": long_path}, "file")
    assert routes.lookup("GET", long_path) is None
    for n in range(PATHS + 10):
        routes.confirm({"method": "GET", "path": f"/files/{n}"}, "file")
    assert routes.lookup("GET", "/files/0") is None  # the oldest went first
    assert routes.lookup("GET", "/files/9") is None
    assert routes.lookup("GET", "/files/10") is not None
    assert routes.lookup("GET", f"/files/{PATHS + 9}") is not None
