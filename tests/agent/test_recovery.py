"""kill -9 at the worst moments: the agent resumes and never installs twice."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from pathlib import Path

from tests.agent.agentproc import AgentProcess, observer
from tests.agent.fileserver import FileServer
from tests.agent.scenarios import assert_resumed, kill_mid_download, throttle
from tests.agent.test_thin_edge import (
    CHILD,
    CMD_BASE,
    TWIN,
    Device,
    agents,
    init_command,
    install_hook,
    lingering_install_hook,
    statuses,
    te_config,
)
from tests.hubproc import HubProcess

__all__ = ["agents"]  # the fixture, shared with the thin-edge tests


async def _until(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    async def loop() -> None:
        while not predicate():  # noqa: ASYNC110  # polls files and another thread's counter
            await asyncio.sleep(0.02)

    await asyncio.wait_for(loop(), timeout)


async def test_killed_mid_download_resumes(
    hub: HubProcess, files: FileServer, agents: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    device = Device(tmp_path)
    config = te_config(hub, device, install_hook(device))
    agent = agents(config)
    data = os.urandom(1_000_000)
    throttle(files)
    cmd_topic = f"{CMD_BASE}/otahub-kill-1"
    async with observer(hub.mqtt_port, f"te/device/{CHILD}///#") as gw:
        await gw.wait_for(lambda: gw.on(TWIN))
        command = init_command(files, data)
        await gw.publish(cmd_topic, json.dumps(command).encode(), retain=True)
        await kill_mid_download(files, agent)
        agents(config)
        await gw.wait_for(lambda: "successful" in statuses(gw.json_on(cmd_topic)))
        assert_resumed(files, len(data))
        assert device.hook_runs() == ["1.0.1"]
        assert statuses(gw.json_on(cmd_topic)).count("executing") == 1


async def test_killed_after_install_before_report(
    hub: HubProcess, files: FileServer, agents: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    device = Device(tmp_path)
    config = te_config(hub, device, lingering_install_hook(device))
    agent = agents(config)
    cmd_topic = f"{CMD_BASE}/otahub-kill-2"
    async with observer(hub.mqtt_port, f"te/device/{CHILD}///#") as gw:
        await gw.wait_for(lambda: gw.on(TWIN))
        command = init_command(files, os.urandom(50_000))
        await gw.publish(cmd_topic, json.dumps(command).encode(), retain=True)
        await _until(lambda: device.version_file.read_text() == "1.0.1")
        agent.kill()
        state = json.loads((device.state_dir / "state.json").read_text())
        assert state["current"]["phase"] == "installing"
        assert "successful" not in statuses(gw.json_on(cmd_topic))
        await asyncio.sleep(2.5)  # the orphaned hook finishes
        agents(config)
        await gw.wait_for(lambda: "successful" in statuses(gw.json_on(cmd_topic)))
        await asyncio.sleep(1.0)  # anything duplicated would arrive by now
        assert statuses(gw.json_on(cmd_topic)).count("successful") == 1
        assert device.hook_runs() == ["1.0.1"]
        assert json.loads(gw.on(TWIN)[-1])["version"] == "1.0.1"
