"""``otahub serve --admin-port``: the admin REST API on its own listener.

The operator keeps the admin API on loopback while devices reach the HTTP
port for downloads and ThingsBoard's device HTTP API; the HTTP port then
answers 404 for every admin route.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx

from tests.hubproc import free_port
from tests.security.conftest import SecureHub

ADMIN_ROUTES = (
    ("GET", "/api/v1/devices"),
    ("POST", "/api/v1/devices"),
    ("GET", "/api/v1/firmware"),
    ("GET", "/api/v1/updates"),
    ("GET", "/api/v1/docs"),
    ("GET", "/api/v1/openapi.json"),
    ("PUT", "/api/v1/thingsboard/devices/tb-1"),
    ("GET", "/api/v1/device-types/assignments"),
)


def test_admin_api_is_only_on_the_admin_listener_when_one_is_configured(
    secure_hub: Callable[..., SecureHub],
) -> None:
    admin_port = free_port()
    hub = secure_hub("--admin-port", str(admin_port))
    public = httpx.Client(base_url=hub.process.http_url, timeout=10)
    admin = httpx.Client(base_url=f"http://127.0.0.1:{admin_port}/api/v1", timeout=10)
    hub.api.close()
    hub.api = admin  # the operator's side
    for method, path in ADMIN_ROUTES:
        answer = public.request(method, path, json={})
        assert answer.status_code == 404, (method, path, answer.status_code, answer.text)
    hub.wait_log(rf"admin API on http://127\.0\.0\.1:{admin_port} only")

    assert admin.get("/devices").status_code == 200
    hub.add_device("tb-1", "thingsboard", token="token-tb-1")
    image = b"firmware over the public port\n" * 100
    hub.upload("tb-fw", "1.0.0", image)
    hub.start_update("tb-1", "tb-fw", "1.0.0")
    # ThingsBoard's device HTTP API stays where ThingsBoard has it: the public port
    download = public.get(
        "/api/v1/token-tb-1/firmware", params={"title": "tb-fw", "version": "1.0.0"}
    )
    assert download.status_code == 200, download.text
    assert download.content == image
    assert public.get("/healthz").status_code == 200
    public.close()
    admin.close()


def test_admin_api_stays_on_the_http_port_by_default(
    secure_hub: Callable[..., SecureHub],
) -> None:
    hub = secure_hub()
    assert hub.api.get("/devices").status_code == 200
    assert hub.api.get("/docs").status_code == 200
