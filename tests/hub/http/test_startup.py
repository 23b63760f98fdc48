"""How ``otahub serve`` sets up auth and storage when it starts."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.hubproc import HubProcess, free_port


def test_admin_token_from_env_writes_no_file(hub_factory: Callable[..., HubProcess]) -> None:
    hub = hub_factory(env={"OTAHUB_ADMIN_TOKEN": "s3cret-token"})
    assert not (hub.data_dir / "admin.token").exists()
    url = f"{hub.http_url}/api/v1/devices"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Bearer s3cret-token"}).status_code == 200


def test_token_file_survives_restarts(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = HubProcess(data_dir=data).start()
    token = (data / "admin.token").read_text()
    first.stop()
    second = HubProcess(data_dir=data).start()
    try:
        assert (data / "admin.token").read_text() == token
        r = httpx.get(
            f"{second.http_url}/api/v1/firmware",
            headers={"Authorization": f"Bearer {token.strip()}"},
        )
        assert r.status_code == 200
    finally:
        second.stop()


def test_no_auth_on_loopback(hub: HubProcess) -> None:
    assert httpx.get(f"{hub.http_url}/api/v1/updates").status_code == 200
    assert not (hub.data_dir / "admin.token").exists()


def test_bad_database_url_is_one_clear_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "otahub",
            "serve",
            "--data-dir",
            str(tmp_path),
            "--http-port",
            str(free_port()),
            "--mqtt-port",
            str(free_port()),
        ],
        env={"OTAHUB_DATABASE_URL": "mysql://db/x", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "unsupported database URL scheme" in result.stderr
    assert "Traceback" not in result.stderr
