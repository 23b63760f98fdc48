"""A rollout through ``otahub serve``: real agents of two dialects, the CLI, the REST API."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from tests.agent.agentproc import AgentProcess
from tests.agent.hubapi import register, upload
from tests.agent.test_thin_edge import Device, agents, install_hook
from tests.hubproc import HubProcess

__all__ = ["agents"]  # the fixture

TITLE = "ro-fw"


def te_config(hub: HubProcess, device: Device, child: str) -> dict[str, Any]:
    return {
        "dialect": "thin-edge",
        "state_dir": str(device.state_dir),
        "mqtt": {"host": "127.0.0.1", "port": hub.mqtt_port, "reconnect_initial": 0.2},
        "thin_edge": {"device_id": child},
        "version": {"file": str(device.version_file), "name": TITLE},
        "hooks": {"install": install_hook(device), "timeout": 20},
    }


def tb_config(hub: HubProcess, device: Device, token: str) -> dict[str, Any]:
    return {
        "dialect": "thingsboard",
        "state_dir": str(device.state_dir),
        "mqtt": {"host": "127.0.0.1", "port": hub.mqtt_port, "reconnect_initial": 0.2},
        "thingsboard": {"token": token, "chunk_size": 4096, "chunk_timeout": 5},
        "version": {"file": str(device.version_file), "name": TITLE},
        "hooks": {"install": install_hook(device), "timeout": 20},
    }


def run_cli(hub: HubProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "otahub", "rollout", *args, "--server", hub.http_url],
        capture_output=True,
        text=True,
        timeout=60,
    )


def cli(hub: HubProcess, *args: str) -> str:
    done = run_cli(hub, *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


async def poll(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


async def test_two_stage_rollout_to_thin_edge_and_thingsboard_agents(
    hub: HubProcess, agents: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    devices: dict[str, Device] = {}

    def new_device(name: str) -> Device:
        (tmp_path / name).mkdir()
        devices[name] = Device(tmp_path / name)
        return devices[name]

    for i in range(2):
        name = f"ro-tb-{i}"
        register(hub, name=name, dialect="thingsboard", token=f"tok-{name}")
        agents(tb_config(hub, new_device(name), f"tok-{name}"), name=name)
    for i in range(2):
        name = f"ro-te-{i}"
        agents(te_config(hub, new_device(name), name), name=name)
    upload(hub, TITLE, "1.0.1", os.urandom(30_000))
    api = httpx.AsyncClient(base_url=f"{hub.http_url}/api/v1", timeout=30)

    async def all_reported() -> bool:
        for name in devices:
            r = await api.get(f"/devices/{name}")
            if r.status_code != 200 or r.json()["firmware"]["version"] != "1.0.0":
                return False
        return True

    await poll(all_reported, "the agents to report 1.0.0")

    out = cli(
        hub,
        "create",
        "fleet-1",
        "--title",
        TITLE,
        "--version",
        "1.0.1",
        "--filter",
        "name=ro-*",
        "--stages",
        "2",
        "--success-threshold",
        "100",
        "--error-threshold",
        "0",
        "--min-finished",
        "1",
        "--max-concurrent",
        "2",
        "--rate",
        "600/min",
        "--update-timeout",
        "1m",
    )
    assert "rollout fleet-1 created" in out
    assert "running" in cli(hub, "start", "fleet-1")

    async def rollout() -> dict[str, Any]:
        r = await api.get("/rollouts/fleet-1")
        assert r.status_code == 200, r.text
        found: dict[str, Any] = r.json()
        return found

    async def ended() -> bool:
        return (await rollout())["state"] in ("finished", "paused")

    await poll(ended, "the rollout to end")
    view = await rollout()
    assert view["state"] == "finished", view
    assert view["counts"]["succeeded"] == 4
    assert [s["size"] for s in view["stages"]] == [2, 2]
    for name, device in devices.items():
        assert device.hook_runs() == ["1.0.1"], name
        assert device.version_file.read_text() == "1.0.1"
    members = (await api.get("/rollouts/fleet-1/devices")).json()
    updates = {m["device"]: (await api.get(f"/updates/{m['update_id']}")).json() for m in members}
    first = [updates[m["device"]] for m in members if m["stage"] == 1]
    second = [updates[m["device"]] for m in members if m["stage"] == 2]
    # Stage 2 started only once stage 1 had fully succeeded (threshold 100 %).
    assert max(u["finished_at"] for u in first) <= min(u["created_at"] for u in second)
    assert {u["dialect"] for u in updates.values()} == {"thin-edge", "thingsboard"}
    trail = [e["kind"] for e in (await api.get("/rollouts/fleet-1/events")).json()]
    assert trail[:3] == ["created", "targets", "stage_started"]
    assert trail.count("stage_completed") == 1 and trail[-1] == "finished"
    shown = cli(hub, "show", "fleet-1")
    assert "finished" in shown and "100%" in shown
    assert "fleet-1" in cli(hub, "list")
    # --watch follows until the rollout has ended: here it has, so it shows it once and stops.
    assert "finished" in cli(hub, "show", "fleet-1", "--watch")
    refused = run_cli(hub, "pause", "fleet-1")
    assert refused.returncode == 1
    assert "409 Conflict: rollout 'fleet-1' is finished" in refused.stderr
    await api.aclose()
