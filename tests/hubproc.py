"""Runs ``otahub serve`` as a real subprocess on free loopback ports."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from otahub.hub.settings import HubSettings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class HubProcess:
    data_dir: Path
    mqtt_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    #: run in the child before ``otahub serve`` starts (e.g. to lower a limit)
    preexec: Callable[[], None] | None = None

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self, timeout: float = 30.0) -> HubProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.data_dir.parent / f"hub-{self.mqtt_port}.log"
        args = [
            sys.executable,
            "-m",
            "otahub",
            "serve",
            "--mqtt-port",
            str(self.mqtt_port),
            "--http-port",
            str(self.http_port),
            "--data-dir",
            str(self.data_dir),
            *self.extra_args,
        ]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=self.preexec
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"otahub serve exited early:\n{self.log()}")
            if self._ready():
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"otahub serve did not become ready:\n{self.log()}")

    def _ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.mqtt_port), timeout=0.5):
                pass
            # ready, not only alive: every part of the hub has started
            with urllib.request.urlopen(f"{self.http_url}/readyz", timeout=0.5) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def log(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        self.proc = None
        return code


def in_process_settings(data_dir: Path) -> HubSettings:
    """A hub for ``run_hub`` in the test's own process: free ports, no admin token."""
    return HubSettings(
        data_dir=data_dir,
        mqtt_port=free_port(),
        http_port=free_port(),
        no_auth=True,
        shutdown_timeout=5,
    )


class InProcessHub:
    """A hub run with ``run_hub`` in the test's own event loop (drivers can be
    patched), and an HTTP client on its API."""

    def __init__(self, settings: HubSettings, http: httpx.AsyncClient) -> None:
        self.settings = settings
        self.http = http

    async def device(self, name: str) -> dict[str, object] | None:
        response = await self.http.get(f"/api/v1/devices/{name}")
        return response.json() if response.status_code == 200 else None


@contextlib.asynccontextmanager
async def in_process_hub(data_dir: Path) -> AsyncIterator[InProcessHub]:
    from otahub.hub.app import run_hub

    settings = in_process_settings(data_dir)
    task = asyncio.create_task(run_hub(settings))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.http_port}") as http:
        deadline = time.monotonic() + 60
        while True:
            try:
                if (await http.get("/healthz")).is_success:
                    break
            except httpx.TransportError:
                pass
            assert not task.done(), task
            assert time.monotonic() < deadline, "the hub did not start"
            await asyncio.sleep(0.05)
        yield InProcessHub(settings, http)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
