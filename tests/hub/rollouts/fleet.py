"""A simulated fleet against ``otahub serve`` for the end-to-end rollout tests.

The hub and ``otahub simulate`` run as subprocesses; the rollout is driven
through the CLI and read through the REST API, as an operator would.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from typing import Any

import httpx

from tests.hubproc import HubProcess

TITLE = "sim-firmware"  # the simulator's firmware name
OLD, NEW = "1.0.0", "2.0.0"


def rollout_cli(hub: HubProcess, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "otahub", "rollout", *args, "--server", hub.http_url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def get(hub: HubProcess, path: str, **params: Any) -> Any:
    with httpx.Client(base_url=f"{hub.http_url}/api/v1", timeout=30) as client:
        r = client.get(path, params=params)
        assert r.status_code == 200, r.text
        return r.json()


def rollout(hub: HubProcess, name: str) -> dict[str, Any]:
    found: dict[str, Any] = get(hub, f"/rollouts/{name}")
    return found


def wait_rollout(
    hub: HubProcess, name: str, states: tuple[str, ...], timeout: float = 300
) -> dict[str, Any]:
    """Poll until the rollout is in one of ``states``."""
    deadline = time.monotonic() + timeout
    while True:
        view = rollout(hub, name)
        if view["state"] in states:
            return view
        assert time.monotonic() < deadline, f"rollout not {states}: {view}"
        time.sleep(0.3)


def wait_devices(hub: HubProcess, count: int, timeout: float = 120) -> list[dict[str, Any]]:
    """Until ``count`` devices are online and have reported their version (tedge-legacy
    devices have no way to report one before an update); returns them."""
    deadline = time.monotonic() + timeout
    while True:
        devices: list[dict[str, Any]] = get(hub, "/devices")
        ready = [
            d
            for d in devices
            if d["online"] and (d["firmware"]["version"] or d["dialect"] == "tedge-legacy")
        ]
        if len(ready) >= count:
            return devices
        assert time.monotonic() < deadline, f"{len(ready)} of {count} devices ready"
        time.sleep(0.3)


def all_updates(hub: HubProcess, page: int = 200) -> list[dict[str, Any]]:
    """Every update, page by page (``limit``/``offset``)."""
    found: list[dict[str, Any]] = []
    while True:
        chunk = get(hub, "/updates", limit=page, offset=len(found))
        found.extend(chunk)
        if len(chunk) < page:
            return found


def versions(hub: HubProcess) -> Counter[str]:
    """How many devices the hub's device list shows on each firmware version."""
    return Counter(d["firmware"]["version"] for d in get(hub, "/devices"))


def on_version(hub: HubProcess, version: str, timeout: float = 30) -> list[dict[str, Any]]:
    """The devices not (yet) on ``version`` once all are, or ``timeout`` passed: a
    device's version report may land just after its update ended."""
    deadline = time.monotonic() + timeout
    while True:
        behind = [d for d in get(hub, "/devices") if d["firmware"]["version"] != version]
        if not behind or time.monotonic() > deadline:
            return behind
        time.sleep(0.5)
