"""thin-edge agent against the hub's thin-edge driver (the hub as the requester).

The hub's update record is the oracle: the agent's custom statuses become
the canonical states, the hook's stderr becomes the failure reason.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.agent.agentproc import AgentProcess
from tests.agent.hubapi import api, path_of, register, start_update, until, upload, wait_state
from tests.agent.test_thin_edge import Device, agents, install_hook
from tests.hubproc import HubProcess

__all__ = ["agents"]  # the fixture, shared with the thin-edge tests

TITLE = "te-firmware"


@pytest.fixture(scope="module")
def tehub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    hub = HubProcess(tmp_path_factory.mktemp("tehub") / "data", extra_args=["--no-auth"])
    yield hub.start()
    hub.stop()


def config(hub: HubProcess, device: Device, child: str, hook: str) -> dict[str, Any]:
    return {
        "dialect": "thin-edge",
        "state_dir": str(device.state_dir),
        "mqtt": {"host": "127.0.0.1", "port": hub.mqtt_port, "reconnect_initial": 0.2},
        "thin_edge": {"device_id": child},
        "version": {"file": str(device.version_file), "name": TITLE},
        "hooks": {"install": hook, "timeout": 20},
    }


async def test_statuses_become_canonical_states(
    tehub: HubProcess, agents: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    device = Device(tmp_path)
    upload(tehub, TITLE, "1.0.1", os.urandom(100_000))
    agents(config(tehub, device, "te-hub-ok", install_hook(device)))
    update_id = await start_update(tehub, "te-hub-ok", TITLE, "1.0.1")
    update = await wait_state(tehub, update_id)
    assert update["state"] == "succeeded", update
    states = [s for s in path_of(update) if s not in ("pending", "sent")]
    assert states == ["downloading", "downloaded", "verified", "installing", "succeeded"]
    assert device.hook_runs() == ["1.0.1"]


async def test_hook_failure_reason_reaches_the_hub(
    tehub: HubProcess, agents: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    device = Device(tmp_path)
    upload(tehub, TITLE, "1.0.2", os.urandom(10_000))
    hook = install_hook(device, exit_code=7, stderr="partition locked")
    agents(config(tehub, device, "te-hub-fail", hook))
    update_id = await start_update(tehub, "te-hub-fail", TITLE, "1.0.2")
    update = await wait_state(tehub, update_id)
    assert update["state"] == "failed", update
    assert update["reason"] == "install hook failed (exit code 7): partition locked"
    assert device.version_file.read_text().strip() == "1.0.0"


async def test_rollback_to_a_version_installed_before_succeeds(
    tehub: HubProcess, agents: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    """1.0.4 -> 1.0.5 -> 1.0.4: the running version decides, not the agent's history."""
    device = Device(tmp_path)
    title = "te-rollback-fw"
    for version in ("1.0.4", "1.0.5"):
        upload(tehub, title, version, os.urandom(10_000))
    agent_config = config(tehub, device, "te-hub-rollback", install_hook(device))
    agent_config["version"]["name"] = title
    agents(agent_config)
    for version in ("1.0.4", "1.0.5", "1.0.4"):
        update_id = await start_update(tehub, "te-hub-rollback", title, version)
        update = await wait_state(tehub, update_id)
        assert update["state"] == "succeeded", update
        assert device.version_file.read_text() == version
    assert device.hook_runs() == ["1.0.4", "1.0.5", "1.0.4"]


async def test_hub_killed_while_a_child_installs_ends_in_the_child_s_real_state(
    agents: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    # The child finishes while the hub is down (SIGKILL); after the restart on
    # the same data dir the update must converge to what the child did.
    hub = HubProcess(tmp_path / "hub" / "data", extra_args=["--no-auth"]).start()
    try:
        device = Device(tmp_path)
        gate = tmp_path / "gate"
        hook = (
            f"sh -c 'while [ ! -e {gate} ]; do sleep 0.05; done; "
            f'echo "$2" >> {device.hook_log}; printf %s "$2" > {device.version_file}\''
            " hook {file} {version}"
        )
        upload(hub, TITLE, "1.0.7", os.urandom(50_000))
        cfg = config(hub, device, "te-hub-killed", hook)
        cfg["mqtt"]["reconnect_max"] = 0.5
        cfg["hooks"]["timeout"] = 120
        agents(cfg)
        update_id = await start_update(hub, "te-hub-killed", TITLE, "1.0.7")
        await wait_state(hub, update_id, "installing")
        hub.stop(signal.SIGKILL)
        gate.touch()
        await until(lambda: device.hook_runs() == ["1.0.7"])
        hub.start()
        update = await wait_state(hub, update_id)
        assert update["state"] == "succeeded", update
    finally:
        hub.stop()


async def test_agent_with_credentials_updates_its_own_device(
    tehub: HubProcess, agents: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    """A child whose credentials are set logs in with them and stays in its own topics."""
    device = Device(tmp_path)
    register(tehub, name="te-hub-creds", dialect="thin-edge", password="te-hub-creds pw")
    upload(tehub, TITLE, "1.0.7", os.urandom(10_000))
    agent_config = config(tehub, device, "te-hub-creds", install_hook(device))
    agent_config["mqtt"] |= {"username": "te-hub-creds", "password": "te-hub-creds pw"}
    agents(agent_config)
    update_id = await start_update(tehub, "te-hub-creds", TITLE, "1.0.7")
    update = await wait_state(tehub, update_id)
    assert update["state"] == "succeeded", update
    assert device.hook_runs() == ["1.0.7"]


async def test_agent_logged_in_as_its_gateway_serves_the_child_it_registers(
    tehub: HubProcess, agents: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    """The agent of a child behind a gateway uses the gateway's credentials: the child
    it registers becomes the gateway's, and its update goes through."""
    device = Device(tmp_path)
    register(tehub, name="te-hub-gw", dialect="thin-edge", password="gw pw", gateway=True)
    upload(tehub, TITLE, "1.0.8", os.urandom(10_000))
    agent_config = config(tehub, device, "te-hub-gw-child", install_hook(device))
    agent_config["mqtt"] |= {"username": "te-hub-gw", "password": "gw pw"}
    agents(agent_config)
    await until(lambda: owner_of(tehub, "te-hub-gw-child") == "te-hub-gw")
    update_id = await start_update(tehub, "te-hub-gw-child", TITLE, "1.0.8")
    update = await wait_state(tehub, update_id)
    assert update["state"] == "succeeded", update
    assert device.hook_runs() == ["1.0.8"]


def owner_of(hub: HubProcess, name: str) -> str | None:
    with api(hub) as client:
        response = client.get(f"/devices/{name}")
    return response.json().get("owner") if response.status_code == 200 else None
