"""kill -9 scenarios that several dialects' tests go through."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from tests.agent.agentproc import AgentProcess
from tests.agent.fileserver import FileServer
from tests.agent.hubapi import path_of, start_update, state_file, until, wait_state
from tests.agent.test_thin_edge import Device
from tests.hubproc import HubProcess

#: The agent is killed once the (throttled) server has sent this many bytes.
KILL_AT = 400_000


def throttle(files: FileServer) -> None:
    """20 kB every 50 ms: a download of a few hundred kB takes long enough to be killed."""
    files.slow_piece, files.slow_delay = 20_000, 0.05


async def kill_mid_download(files: FileServer, agent: AgentProcess) -> None:
    """SIGKILL the agent once :data:`KILL_AT` bytes went out, then serve at full speed."""
    await until(lambda: files.bytes_sent >= KILL_AT)
    agent.kill()
    files.slow_piece, files.slow_delay = None, 0.0


def assert_resumed(files: FileServer, size: int) -> None:
    """The restarted agent continued with Range; only what was in flight travelled twice."""
    resumed_at = int((files.requests[-1] or "bytes=0-")[6:-1])
    assert resumed_at >= KILL_AT - 100_000, files.requests
    assert files.bytes_sent < size + 150_000


async def killed_after_install_succeeds_once(
    hub: HubProcess,
    agents: Callable[..., AgentProcess],
    device: Device,
    config: dict[str, Any],
    target: tuple[str, str, str],
) -> None:
    """Kill the agent while its (lingering) install hook runs; on restart the update
    succeeds from the running version, once, and the hook is not run again.

    ``config`` installs with ``lingering_install_hook``; ``target`` is (device, title, version).
    """
    name, title, version = target
    agent = agents(config)
    update_id = await start_update(hub, name, title, version)
    await until(lambda: device.version_file.read_text() == version)
    agent.kill()
    assert json.loads(state_file(device.state_dir).read_text())["current"]["phase"] == "installing"
    await asyncio.sleep(2.5)  # the orphaned hook finishes
    await wait_state(hub, update_id, "installing")
    agents(config)
    update = await wait_state(hub, update_id)
    assert update["state"] == "succeeded", update
    assert path_of(update).count("succeeded") == 1
    assert device.hook_runs() == [version]
