"""A hub subprocess with EnOS devices and packages, driven through the CLI and REST API."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.hubproc import HubProcess

TERMINAL = ("succeeded", "failed", "canceled")


@dataclass
class EnosHub:
    proc: HubProcess
    work: Path

    @property
    def mqtt_port(self) -> int:
        return self.proc.mqtt_port

    @property
    def url(self) -> str:
        return self.proc.http_url

    def cli(self, *args: str) -> Any:
        """Run ``otahub ARGS --server URL --json`` and return the parsed output."""
        done = subprocess.run(
            [sys.executable, "-m", "otahub", *args, "--server", self.url, "--json"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def add_device(self, name: str, pk: str, dk: str, secret: str, *, cli: bool = False) -> None:
        if cli:
            self.cli(
                "device", "add", name, "--dialect", "enos",
                "--product-key", pk, "--device-key", dk, "--secret", secret,
            )  # fmt: skip
            return
        body = {
            "name": name,
            "dialect": "enos",
            "product_key": pk,
            "device_key": dk,
            "secret": secret,
        }
        httpx.post(f"{self.url}/api/v1/devices", json=body, timeout=10).raise_for_status()

    def upload(self, title: str, version: str, content: bytes, *, cli: bool = False) -> str:
        """Upload a package (through the CLI when asked); returns its MD5."""
        if cli:
            path = self.work / f"{title}-{version}.bin"
            path.write_bytes(content)
            self.cli("firmware", "upload", str(path), "--title", title, "--version", version)
        else:
            params = {"title": title, "version": version}
            httpx.post(
                f"{self.url}/api/v1/firmware", params=params, content=content, timeout=10
            ).raise_for_status()
        return hashlib.md5(content).hexdigest()

    def start_update(
        self, device: str, title: str, version: str, *, mode: str = "push", force: bool = False,
        cli: bool = False,
    ) -> int:  # fmt: skip
        if cli:
            extra = ["--mode", mode] + (["--force"] if force else [])
            update = self.cli(
                "update", "start", "--device", device, "--title", title, "--version", version,
                *extra,
            )  # fmt: skip
        else:
            body = {
                "device": device,
                "title": title,
                "version": version,
                "mode": mode,
                "force": force,
            }
            response = httpx.post(f"{self.url}/api/v1/updates", json=body, timeout=10)
            response.raise_for_status()
            update = response.json()
        return int(update["id"])

    def update(self, update_id: int) -> dict[str, Any]:
        response = httpx.get(f"{self.url}/api/v1/updates/{update_id}", timeout=10)
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def device(self, name: str) -> dict[str, Any]:
        response = httpx.get(f"{self.url}/api/v1/devices/{name}", timeout=10)
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def wait_update(
        self, update_id: int, states: tuple[str, ...], timeout: float = 20
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            update = self.update(update_id)
            if update["state"] in states:
                return update
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"update stayed {update['state']}: {update}\n{self.proc.log()}"
                )
            time.sleep(0.05)

    def path(self, update: dict[str, Any]) -> list[str]:
        return [t["to_state"] for t in update["transitions"]]


def hub_fixture(tmp_path_factory: pytest.TempPathFactory, *extra_args: str) -> Iterator[EnosHub]:
    """Body of a module-scoped fixture: one hub for all tests of a module."""
    work = tmp_path_factory.mktemp("enos")
    proc = HubProcess(
        data_dir=work / "data",
        extra_args=["--no-auth", *extra_args],
        # a short grace before the push after CONNECT keeps the tests quick
        env={"OTAHUB_ENOS_PUSH_GRACE": "0.3"},
    )
    proc.start()
    try:
        yield EnosHub(proc, work)
    finally:
        proc.stop()
