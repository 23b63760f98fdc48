"""The start-up log: every URL, the database without its password, the data
dir and the admin token's place, and a warning for each thing left open."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from otahub.hub.settings import HubSettings
from otahub.hub.startup_log import log_ready


def _lines(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level]


def test_every_url_the_database_without_password_and_the_token_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = HubSettings(
        data_dir=tmp_path,
        mqtt_tls_port=8883,
        admin_host="127.0.0.1",
        admin_port=8001,
        public_url="https://ota.example/",
    )
    admin_app = FastAPI(docs_url="/api/v1/docs")

    @admin_app.get("/", response_class=HTMLResponse)
    async def dashboard() -> str:
        return "<html></html>"

    with caplog.at_level(logging.INFO, "otahub.hub"):
        log_ready(
            settings,
            database_url="postgresql+asyncpg://otahub:pa55word@db.local/otahub",
            admin_app=admin_app,
        )
    info = _lines(caplog, logging.INFO)
    assert "MQTT: mqtt://127.0.0.1:1883" in info
    assert "MQTT TLS: mqtts://127.0.0.1:8883" in info
    assert "HTTP: http://127.0.0.1:8000 (devices download from https://ota.example)" in info
    assert "admin API on http://127.0.0.1:8001 only (not on the HTTP port devices use)" in info
    assert "dashboard: http://127.0.0.1:8001/" in info
    assert "API docs: http://127.0.0.1:8001/api/v1/docs" in info
    assert "database: postgresql+asyncpg://otahub:***@db.local/otahub" in info
    assert f"data dir: {tmp_path.resolve()}" in info
    assert f"admin token: in {tmp_path.resolve() / 'admin.token'}" in info
    assert "pa55word" not in caplog.text
    assert _lines(caplog, logging.WARNING) == []


def test_open_access_is_warned_about(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    exposed = HubSettings(data_dir=tmp_path, host="0.0.0.0", admin_token="t")
    with caplog.at_level(logging.INFO, "otahub.hub"):
        log_ready(exposed, database_url="sqlite:///x.db", admin_app=FastAPI(docs_url=None))
    assert "admin token: as configured (admin_token / OTAHUB_ADMIN_TOKEN)" in caplog.text
    assert _lines(caplog, logging.WARNING) == [
        "listening beyond loopback: MQTT and HTTP on 0.0.0.0; reachable from other machines"
    ]
    caplog.clear()

    open_admin = HubSettings(
        data_dir=tmp_path, no_auth=True, admin_host="192.0.2.1", admin_port=8001
    )
    with caplog.at_level(logging.INFO, "otahub.hub"):
        log_ready(open_admin, database_url="sqlite:///x.db", admin_app=FastAPI())
    assert _lines(caplog, logging.WARNING) == [
        "--no-auth: the admin API answers anyone, without a token",
        "listening beyond loopback: the admin API on 192.0.2.1; reachable from other machines",
    ]
