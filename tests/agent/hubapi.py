"""The hub's REST API as the agent tests use it: devices, firmware, updates, the blob store."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import httpx

from tests.hubproc import HubProcess

TERMINAL = ("succeeded", "failed", "canceled")


def api(hub: HubProcess) -> httpx.Client:
    return httpx.Client(base_url=f"{hub.http_url}/api/v1", timeout=30.0)


def register(hub: HubProcess, **device: Any) -> None:
    with api(hub) as client:
        r = client.post("/devices", json=device)
        assert r.status_code in (200, 201), r.text


def upload(
    hub: HubProcess, title: str, version: str, data: bytes, kind: str = "firmware"
) -> dict[str, Any]:
    with api(hub) as client:
        r = client.post(
            "/firmware",
            params={"title": title, "version": version, "kind": kind},
            content=data,
            headers={"content-type": "application/octet-stream"},
        )
        assert r.status_code == 201, r.text
        package: dict[str, Any] = r.json()
        return package


def corrupt_blob(hub: HubProcess, sha256: str) -> None:
    """Flip one byte of a stored image in place, so it no longer matches its checksums."""
    path = hub.data_dir / "blobs" / "sha256" / sha256[:2] / sha256
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0xFF]))


async def start_update(
    hub: HubProcess, device: str, title: str, version: str, **options: Any
) -> int:
    """Start an update once the device is ready for one (the agent has announced itself)."""
    deadline = time.monotonic() + 30
    body = {"device": device, "title": title, "version": version, **options}
    with api(hub) as client:
        while True:
            r = client.post("/updates", json=body)
            if r.status_code < 400:
                return int(r.json()["id"])
            # 404: a thin-edge child becomes a device when its registration arrives.
            assert r.status_code in (404, 409, 422) and time.monotonic() < deadline, r.text
            await asyncio.sleep(0.2)


def get_update(hub: HubProcess, update_id: int) -> dict[str, Any]:
    with api(hub) as client:
        r = client.get(f"/updates/{update_id}")
        assert r.status_code == 200, r.text
        update: dict[str, Any] = r.json()
        return update


async def wait_state(
    hub: HubProcess, update_id: int, *states: str, timeout: float = 60.0
) -> dict[str, Any]:
    """Poll the update until it reaches one of ``states`` (default: any terminal one)."""
    wanted = states or TERMINAL
    deadline = time.monotonic() + timeout
    while True:
        update = get_update(hub, update_id)
        if update["state"] in wanted:
            return update
        assert update["state"] not in TERMINAL, update
        assert time.monotonic() < deadline, f"still {update['state']}: {update}"
        await asyncio.sleep(0.1)


def path_of(update: dict[str, Any]) -> list[str]:
    """The states the update went through, in order."""
    return [t["to_state"] for t in update["transitions"] or []]


async def until(predicate: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def state_file(state_dir: Path) -> Path:
    return state_dir / "state.json"
