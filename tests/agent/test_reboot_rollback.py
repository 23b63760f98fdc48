"""The reboot and rollback hooks, with thin-edge as the carrier.

The reboot hook runs once the "reboot required" outcome is persisted; here it
kills the agent the way a real reboot would. The rollback hook runs when the
check after the restart (verify hook, or the running version) fails.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.agent.agentproc import AgentProcess, Observer, observer
from tests.agent.fileserver import FileServer
from tests.agent.hubapi import until
from tests.agent.test_thin_edge import (
    CHILD,
    CMD_BASE,
    TWIN,
    Device,
    agents,
    init_command,
    install_hook,
    statuses,
    te_config,
)
from tests.hubproc import HubProcess

__all__ = ["agents"]  # the fixture, shared with the thin-edge tests


async def run_until_restart(
    gw: Observer, files: FileServer, cmd_topic: str, size: int = 10_000
) -> None:
    await gw.wait_for(lambda: gw.on(TWIN))
    command = init_command(files, os.urandom(size))
    await gw.publish(cmd_topic, json.dumps(command).encode(), retain=True)
    await gw.wait_for(lambda: "restart" in statuses(gw.json_on(cmd_topic)))


async def test_reboot_hook_restarts_the_device_after_persisting(
    hub: HubProcess, files: FileServer, agents: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    device = Device(tmp_path)
    snapshot = tmp_path / "state-at-reboot.json"
    # "Reboots": keeps what the agent had persisted, then kills it like a power cycle.
    reboot = f"sh -c 'cp {device.state_dir}/state.json {snapshot}; kill -9 $PPID'"
    config = te_config(hub, device, install_hook(device, exit_code=100), reboot=reboot)
    agent = agents(config)
    cmd_topic = f"{CMD_BASE}/otahub-reboot-1"
    async with observer(hub.mqtt_port, f"te/device/{CHILD}///#") as gw:
        await run_until_restart(gw, files, cmd_topic)
        assert agent.proc is not None
        await until(lambda: agent.proc is not None and agent.proc.poll() is not None)
        assert agent.proc.returncode == -9
        persisted: dict[str, Any] = json.loads(snapshot.read_text())
        assert persisted["current"]["phase"] == "reboot_pending"
        assert "successful" not in statuses(gw.json_on(cmd_topic))
        agents(config)  # the device is back
        await gw.wait_for(lambda: "successful" in statuses(gw.json_on(cmd_topic)))
        assert statuses(gw.json_on(cmd_topic))[-3:] == ["restart", "verifying", "successful"]
        assert device.hook_runs() == ["1.0.1"]
        assert json.loads(gw.on(TWIN)[-1])["version"] == "1.0.1"


async def test_failed_verify_hook_runs_rollback(
    hub: HubProcess, files: FileServer, agents: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    device = Device(tmp_path)
    rollback_log = tmp_path / "rollback.log"
    config = te_config(
        hub,
        device,
        install_hook(device, exit_code=100),
        verify="sh -c 'echo new image does not boot >&2; exit 1'",
        # Puts the old image back; gets what was tried, like the install hook.
        rollback=f"sh -c 'echo \"$1\" >> {rollback_log}; printf 1.0.0 > {device.version_file}' "
        "rollback {version}",
    )
    agent = agents(config)
    cmd_topic = f"{CMD_BASE}/otahub-rollback-1"
    async with observer(hub.mqtt_port, f"te/device/{CHILD}///#") as gw:
        await run_until_restart(gw, files, cmd_topic)
        assert not rollback_log.exists()
        agent.stop()
        agents(config)
        await gw.wait_for(lambda: "failed" in statuses(gw.json_on(cmd_topic)))
        failed = gw.json_on(cmd_topic)[-1]
        assert failed["reason"] == (
            "verify hook failed (exit code 1): new image does not boot; rolled back"
        )
        assert rollback_log.read_text().split() == ["1.0.1"]
        assert device.version_file.read_text() == "1.0.0"
        assert device.hook_runs() == ["1.0.1"]


async def test_old_version_after_restart_runs_rollback_and_reports_its_failure(
    hub: HubProcess, files: FileServer, agents: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    device = Device(tmp_path)
    rollback_log = tmp_path / "rollback.log"
    # The install "needs a reboot" but the device comes back on the old image
    # (no verify hook: the version file decides); the rollback itself fails.
    hook = f"sh -c 'echo \"$2\" >> {device.hook_log}; exit 100' hook {{file}} {{version}}"
    config = te_config(
        hub,
        device,
        hook,
        rollback=f"sh -c 'echo {{version}} >> {rollback_log}; echo no spare slot >&2; exit 3'",
    )
    agent = agents(config)
    cmd_topic = f"{CMD_BASE}/otahub-rollback-2"
    async with observer(hub.mqtt_port, f"te/device/{CHILD}///#") as gw:
        await run_until_restart(gw, files, cmd_topic)
        agent.stop()
        agents(config)
        await gw.wait_for(lambda: "failed" in statuses(gw.json_on(cmd_topic)))
        failed = gw.json_on(cmd_topic)[-1]
        assert failed["reason"] == (
            "after the restart the device runs 1.0.0, not 1.0.1; "
            "rollback hook failed (exit code 3): no spare slot"
        )
        assert rollback_log.read_text().split() == ["1.0.1"]
        assert json.loads(gw.on(TWIN)[-1])["version"] == "1.0.0"
