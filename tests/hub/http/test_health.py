"""``/healthz`` and ``/readyz`` of ``otahub serve``: no auth, and readiness that means it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx

from tests.hubproc import HubProcess, free_port
from tests.pgserver import PostgresServer


def test_health_routes_answer_without_a_token(hub_factory: Callable[..., HubProcess]) -> None:
    hub = hub_factory()  # admin auth on
    assert httpx.get(f"{hub.http_url}/api/v1/devices", timeout=10).status_code == 401
    alive = httpx.get(f"{hub.http_url}/healthz", timeout=10)
    assert alive.status_code == 200
    assert alive.json() == {"status": "ok"}
    ready = httpx.get(f"{hub.http_url}/readyz", timeout=10)
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"status": "ok", "problems": []}


def test_health_routes_are_on_the_device_port_with_a_separate_admin_listener(
    hub_factory: Callable[..., HubProcess],
) -> None:
    admin_port = free_port()
    hub = hub_factory("--admin-port", str(admin_port))
    assert httpx.get(f"{hub.http_url}/readyz", timeout=10).status_code == 200
    admin = f"http://127.0.0.1:{admin_port}"
    assert httpx.get(f"{admin}/readyz", timeout=10).status_code == 200


def test_readyz_is_503_once_the_database_is_gone(tmp_path: Path) -> None:
    server = PostgresServer.start()
    hub = HubProcess(
        data_dir=tmp_path / "data", env={"OTAHUB_DATABASE_URL": server.create_database()}
    )
    try:
        hub.start()
        assert httpx.get(f"{hub.http_url}/readyz", timeout=10).status_code == 200
        server.stop()
        gone = httpx.get(f"{hub.http_url}/readyz", timeout=30)
        assert gone.status_code == 503, gone.text
        body = gone.json()
        assert body["status"] == "unavailable"
        assert any("database" in problem for problem in body["problems"]), body
        # still alive: a restart would not bring the database back
        assert httpx.get(f"{hub.http_url}/healthz", timeout=10).status_code == 200
    finally:
        hub.stop()
        server.stop()
