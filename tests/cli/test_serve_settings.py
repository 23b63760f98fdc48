"""``otahub serve`` as a process: settings from --config, the environment and
the command line; what its start-up log says; its JSON log lines."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.hubproc import HubProcess, free_port


def _wait_for(check: Callable[[], bool], what: str, log: Callable[[], str]) -> None:
    deadline = time.monotonic() + 30
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached:\n{log()}")
        time.sleep(0.05)


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture
def serve_process(tmp_path: Path) -> Iterator[Callable[..., tuple[subprocess.Popen[bytes], Path]]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(*args: str, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], Path]:
        log_path = tmp_path / f"serve-{len(started)}.log"
        clean = {k: v for k, v in os.environ.items() if not k.startswith("OTAHUB_")}
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "otahub", "serve", *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**clean, "PYTHONUNBUFFERED": "1", **env},
                cwd=tmp_path,
            )
        started.append(proc)
        return proc, log_path

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_serve_takes_the_config_file_under_the_environment_under_the_command_line(
    tmp_path: Path, serve_process: Callable[..., tuple[subprocess.Popen[bytes], Path]]
) -> None:
    mqtt_port, http_port, file_http_port = free_port(), free_port(), free_port()
    data_dir = tmp_path / "from-file"
    config = tmp_path / "hub.toml"
    config.write_text(
        f"mqtt_port = {mqtt_port}\n"
        f"http_port = {file_http_port}\n"  # the environment's wins
        f'data_dir = "{data_dir}"\n'
        'log_level = "debug"\n'  # the command line's wins
        "update_timeout = 120\n"
    )
    proc, log_path = serve_process(
        "--config",
        str(config),
        "--log-level",
        "info",
        env={"OTAHUB_HTTP_PORT": str(http_port)},
    )
    log = log_path.read_text
    _wait_for(lambda: "otahub ready" in log(), "otahub ready", log)
    assert proc.poll() is None
    assert _listening(mqtt_port)
    assert httpx.get(f"http://127.0.0.1:{http_port}/healthz").status_code == 200
    assert not _listening(file_http_port)
    assert (data_dir / "admin.token").exists()
    assert " DEBUG " not in log()

    lines = log()
    assert f"MQTT: mqtt://127.0.0.1:{mqtt_port}\n" in lines
    assert f"HTTP: http://127.0.0.1:{http_port} (devices download from" in lines
    assert re.search(rf"API docs: http://127\.0\.0\.1:{http_port}/\S*docs\n", lines)
    assert f"database: sqlite+aiosqlite:///{data_dir.resolve()}/" in lines
    assert f"data dir: {data_dir.resolve()}\n" in lines
    assert f"admin token: in {data_dir.resolve() / 'admin.token'}\n" in lines
    assert "WARNING" not in lines


def test_serve_refuses_an_unknown_config_key_naming_it(
    tmp_path: Path, serve_process: Callable[..., tuple[subprocess.Popen[bytes], Path]]
) -> None:
    config = tmp_path / "hub.toml"
    config.write_text("mqtt_port = 1883\nhttp_prot = 8000\n")
    proc, log_path = serve_process("--config", str(config), env={})
    assert proc.wait(timeout=60) == 2
    assert log_path.read_text().strip() == (
        f"otahub serve: {config}: unknown key 'http_prot' (not an otahub serve option)"
    )


def test_serve_refuses_a_bad_environment_value_naming_the_variable(
    serve_process: Callable[..., tuple[subprocess.Popen[bytes], Path]],
) -> None:
    proc, log_path = serve_process(env={"OTAHUB_MQTT_PORT": "eighteen"})
    assert proc.wait(timeout=60) == 2
    assert log_path.read_text().startswith("otahub serve: OTAHUB_MQTT_PORT: ")


def test_json_log_lines_carry_the_update_id_device_and_dialect(
    hub_factory: Callable[..., HubProcess],
) -> None:
    hub = hub_factory("--no-auth", "--log-format", "json")
    api = httpx.Client(base_url=f"{hub.http_url}/api/v1", timeout=30)
    assert api.post("/firmware", params={"title": "fw", "version": "2"}, content=b"x").is_success
    device = {"name": "pump-1", "dialect": "enos", "product_key": "pk", "device_key": "dk"}
    assert api.post("/devices", json={**device, "secret": "s"}).status_code == 201
    update = api.post("/updates", json={"device": "pump-1", "title": "fw", "version": "2"}).json()
    assert api.post(f"/updates/{update['id']}/cancel", json={"reason": "test"}).is_success

    def events() -> list[dict[str, object]]:
        return [json.loads(line) for line in hub.log().splitlines() if line.strip()]

    def ended() -> list[dict[str, object]]:
        return [e for e in events() if str(e["message"]).startswith(f"update {update['id']} ended")]

    _wait_for(lambda: bool(ended()), "the update-ended line", hub.log)
    [line] = ended()
    assert (line["update_id"], line["device"], line["dialect"]) == (
        update["id"],
        "pump-1",
        "enos",
    )
    assert (line["level"], line["logger"]) == ("INFO", "otahub.hub.updates")
    for event in events():
        assert {"time", "level", "logger", "message"} <= event.keys(), event
    assert any(str(e["message"]).startswith("otahub ready") for e in events())
    assert any(str(e["message"]).startswith("--no-auth: ") for e in events())
