"""thin-edge v1 flows end to end: agent subprocess, otahub serve as the broker, test as gateway."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.agent.agentproc import AgentProcess, observer, write_config
from tests.agent.fileserver import FileServer
from tests.agent.hubapi import until
from tests.hubproc import HubProcess

CHILD = "child03"
CMD_BASE = f"te/device/{CHILD}///cmd/firmware_update"
TWIN = f"te/device/{CHILD}///twin/firmware"


class Device:
    """The files an agent's device is made of: version file, hook log, state dir."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.version_file = root / "version"
        self.hook_log = root / "hook.log"
        self.state_dir = root / "state"
        self.version_file.write_text("1.0.0\n")

    def hook_runs(self) -> list[str]:
        return self.hook_log.read_text().splitlines() if self.hook_log.exists() else []


def install_hook(device: Device, exit_code: int = 0, stderr: str = "") -> str:
    # Records each run, writes the new version, then exits as asked.
    script = (
        f'echo "$2" >> {device.hook_log}; '
        + (f'printf %s "$2" > {device.version_file}; ' if exit_code in (0, 100) else "")
        + (f'echo "{stderr}" >&2; ' if stderr else "")
        + f"exit {exit_code}"
    )
    return f"sh -c '{script}' hook {{file}} {{version}}"


def lingering_install_hook(device: Device) -> str:
    # Installs (logs its run, writes the version), then lingers for 2 s: a kill
    # in that window comes after the install but before the agent's report.
    return (
        f'sh -c \'echo "$2" >> {device.hook_log}; printf %s "$2" > {device.version_file}; '
        "sleep 2' hook {file} {version}"
    )


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[Callable[..., AgentProcess]]:
    started: list[AgentProcess] = []

    def start(config: dict[str, Any], name: str = "agent") -> AgentProcess:
        path = write_config(tmp_path / f"{name}-{len(started)}.toml", config)
        agent = AgentProcess(path, tmp_path / f"{name}.log").start()
        started.append(agent)
        return agent

    yield start
    for agent in started:
        agent.stop()


def te_config(hub: HubProcess, device: Device, hook: str, **hooks: Any) -> dict[str, Any]:
    return {
        "dialect": "thin-edge",
        "state_dir": str(device.state_dir),
        "log_level": "DEBUG",
        "mqtt": {"host": "127.0.0.1", "port": hub.mqtt_port, "reconnect_initial": 0.2},
        "thin_edge": {"device_id": CHILD, "name": "Child 03", "type": "RaspberryPi4"},
        "version": {"file": str(device.version_file), "name": "my firmware 2"},
        "hooks": {"install": hook, "timeout": 20, **hooks},
        "download": {"backoff_initial": 0.05, "backoff_max": 0.2},
    }


def init_command(files: FileServer, data: bytes, **extra: Any) -> dict[str, Any]:
    files.files["fw.bin"] = data
    return {
        "status": "init",
        "tedgeUrl": files.url("fw.bin"),
        "remoteUrl": files.url("remote.bin"),
        "name": "my firmware 2",
        "version": "1.0.1",
        "sha256": hashlib.sha256(data).hexdigest(),
        "x-custom": {"kept": True},
        **extra,
    }


def statuses(messages: list[dict[str, Any]]) -> list[str]:
    return [m["status"] for m in messages]


async def test_update_succeeds_and_echoes_every_field(
    hub: HubProcess, files: FileServer, agents: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    device = Device(tmp_path)
    agent = agents(te_config(hub, device, install_hook(device)))
    cmd_topic = f"{CMD_BASE}/otahub-1"
    async with observer(hub.mqtt_port, f"te/device/{CHILD}//", f"te/device/{CHILD}///#") as gw:
        await gw.wait_for(lambda: gw.on(TWIN) and gw.on(CMD_BASE))
        registration = json.loads(gw.on(f"te/device/{CHILD}//")[-1])
        assert registration == {"@type": "child-device", "name": "Child 03", "type": "RaspberryPi4"}
        assert gw.on(CMD_BASE)[-1] == b"{}"
        assert json.loads(gw.on(TWIN)[-1]) == {"name": "my firmware 2", "version": "1.0.0"}

        command = init_command(files, os.urandom(200_000))
        await gw.publish(cmd_topic, json.dumps(command).encode(), retain=True)
        await gw.wait_for(lambda: "successful" in statuses(gw.json_on(cmd_topic)))

        seen = gw.json_on(cmd_topic)
        steps = [s for s in statuses(seen) if s != "downloading"]
        assert steps == [
            "init",
            "executing",
            "downloaded",
            "verified",
            "installing",
            "successful",
        ]
        for message in seen:
            assert {k: v for k, v in message.items() if k not in ("status", "progress")} == {
                k: v for k, v in command.items() if k != "status"
            }
        # The new twin is published before the command resolves.
        order = [t for t, _, _ in gw.messages if t in (TWIN, cmd_topic)]
        twin_index = max(i for i, t in enumerate(order) if t == TWIN)
        assert order[twin_index + 1 :] == [cmd_topic]
        assert json.loads(gw.on(TWIN)[-1]) == {"name": "my firmware 2", "version": "1.0.1"}
        assert device.hook_runs() == ["1.0.1"]

        # The gateway clears the command; a replayed init of a finished command is
        # answered with its result again, never executed again.
        await gw.publish(cmd_topic, b"", retain=True)
        await gw.publish(cmd_topic, json.dumps(command).encode(), retain=True)
        await gw.wait_for(lambda: statuses(gw.json_on(cmd_topic)).count("successful") == 2)
        assert device.hook_runs() == ["1.0.1"]
    assert agent.proc is not None and agent.proc.poll() is None


async def test_checksum_mismatch_fails_and_installs_nothing(
    hub: HubProcess, files: FileServer, agents: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    device = Device(tmp_path)
    agents(te_config(hub, device, install_hook(device)))
    cmd_topic = f"{CMD_BASE}/otahub-2"
    async with observer(hub.mqtt_port, f"te/device/{CHILD}///#") as gw:
        await gw.wait_for(lambda: gw.on(TWIN))
        command = init_command(files, os.urandom(10_000), sha256="0" * 64)
        await gw.publish(cmd_topic, json.dumps(command).encode(), retain=True)
        await gw.wait_for(lambda: "failed" in statuses(gw.json_on(cmd_topic)))
        failed = gw.json_on(cmd_topic)[-1]
        assert "SHA256 checksum mismatch" in failed["reason"]
        assert device.hook_runs() == []
        assert device.version_file.read_text().strip() == "1.0.0"


async def test_hook_failure_reports_stderr(
    hub: HubProcess, files: FileServer, agents: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    device = Device(tmp_path)
    agents(te_config(hub, device, install_hook(device, exit_code=7, stderr="partition locked")))
    cmd_topic = f"{CMD_BASE}/otahub-3"
    async with observer(hub.mqtt_port, f"te/device/{CHILD}///#") as gw:
        await gw.wait_for(lambda: gw.on(TWIN))
        command = init_command(files, os.urandom(10_000))
        await gw.publish(cmd_topic, json.dumps(command).encode(), retain=True)
        await gw.wait_for(lambda: "failed" in statuses(gw.json_on(cmd_topic)))
        failed = gw.json_on(cmd_topic)[-1]
        assert failed["reason"] == "install hook failed (exit code 7): partition locked"
        assert json.loads(gw.on(TWIN)[-1])["version"] == "1.0.0"


async def test_reboot_required_verifies_after_restart(
    hub: HubProcess, files: FileServer, agents: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    device = Device(tmp_path)
    verify_log = tmp_path / "verify.log"
    config = te_config(
        hub,
        device,
        install_hook(device, exit_code=100),
        verify=f"sh -c 'echo {{version}} >> {verify_log}'",
    )
    agent = agents(config)
    cmd_topic = f"{CMD_BASE}/otahub-4"
    async with observer(hub.mqtt_port, f"te/device/{CHILD}///#") as gw:
        await gw.wait_for(lambda: gw.on(TWIN))
        command = init_command(files, os.urandom(10_000))
        await gw.publish(cmd_topic, json.dumps(command).encode(), retain=True)
        await gw.wait_for(lambda: "restart" in statuses(gw.json_on(cmd_topic)))
        assert "successful" not in statuses(gw.json_on(cmd_topic))
        agent.stop()  # the device restarts
        agents(config)
        await gw.wait_for(lambda: "successful" in statuses(gw.json_on(cmd_topic)))
        tail = statuses(gw.json_on(cmd_topic))[-3:]
        assert tail == ["restart", "verifying", "successful"]
        assert verify_log.read_text().split() == ["1.0.1"]
        assert device.hook_runs() == ["1.0.1"]
        assert json.loads(gw.on(TWIN)[-1])["version"] == "1.0.1"


async def test_terminal_and_foreign_commands_are_ignored(
    hub: HubProcess, files: FileServer, agents: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    device = Device(tmp_path)
    agents(te_config(hub, device, install_hook(device)))
    async with observer(hub.mqtt_port, f"te/device/{CHILD}///#") as gw:
        await gw.wait_for(lambda: gw.on(TWIN))
        done = init_command(files, os.urandom(1000), status="successful")
        await gw.publish(f"{CMD_BASE}/c8y-mapper-1", json.dumps(done).encode(), retain=True)
        await gw.publish(f"{CMD_BASE}/bad", b"{not json", retain=True)
        # Then a real command: it is handled, so the agent is alive and read the others.
        command = init_command(files, os.urandom(1000))
        await gw.publish(f"{CMD_BASE}/otahub-5", json.dumps(command).encode(), retain=True)
        await gw.wait_for(lambda: "successful" in statuses(gw.json_on(f"{CMD_BASE}/otahub-5")))
        assert statuses(gw.json_on(f"{CMD_BASE}/c8y-mapper-1")) == ["successful"]
        assert gw.on(f"{CMD_BASE}/bad") == [b"{not json"]
        assert device.hook_runs() == ["1.0.1"]


def command_for(files: FileServer, name: str, data: bytes, version: str) -> dict[str, Any]:
    """An ``init`` command for ``data`` served as ``name``, with ``sha256`` and ``size``."""
    files.files[name] = data
    return {
        "status": "init",
        "tedgeUrl": files.url(name),
        "remoteUrl": files.url("remote.bin"),
        "name": "my firmware 2",
        "version": version,
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
    }


def terminal(messages: list[dict[str, Any]]) -> bool:
    return bool({"successful", "failed"} & set(statuses(messages)))


async def test_empty_image_installs_once_without_looping(
    hub: HubProcess, files: FileServer, agents: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    device = Device(tmp_path)
    agents(te_config(hub, device, install_hook(device)))
    cmd_topic = f"{CMD_BASE}/otahub-empty"
    async with observer(hub.mqtt_port, f"te/device/{CHILD}///#") as gw:
        await gw.wait_for(lambda: gw.on(TWIN))
        command = command_for(files, "empty.bin", b"", "1.0.1")
        await gw.publish(cmd_topic, json.dumps(command).encode(), retain=True)
        await gw.wait_for(lambda: terminal(gw.json_on(cmd_topic)))
        assert statuses(gw.json_on(cmd_topic))[-1] == "successful", gw.json_on(cmd_topic)
    # With its size known to be 0 there is nothing to fetch, and it is fetched once at most.
    assert files.calls == []
    assert device.hook_runs() == ["1.0.1"]


async def test_cleared_command_stops_the_update(
    hub: HubProcess, files: FileServer, agents: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    """The requester cancels by clearing the retained command: the agent's work on it stops."""
    device = Device(tmp_path)
    agent = agents(te_config(hub, device, install_hook(device)))
    files.slow_piece, files.slow_delay = 20_000, 0.05
    canceled, following = f"{CMD_BASE}/otahub-cancel-1", f"{CMD_BASE}/otahub-cancel-2"
    async with observer(hub.mqtt_port, f"te/device/{CHILD}///#") as gw:
        await gw.wait_for(lambda: gw.on(TWIN))
        command = command_for(files, "slow.bin", os.urandom(1_000_000), "1.0.1")
        await gw.publish(canceled, json.dumps(command).encode(), retain=True)
        await until(lambda: files.bytes_sent > 100_000)
        await gw.publish(canceled, b"", retain=True)
        await until(lambda: "stopped working on the update to 1.0.1" in agent.log())
        files.slow_piece, files.slow_delay = None, 0.0
        after_clear = len(gw.on(canceled))
        command = command_for(files, "next.bin", os.urandom(10_000), "1.0.2")
        await gw.publish(following, json.dumps(command).encode(), retain=True)
        await gw.wait_for(lambda: terminal(gw.json_on(following)))
        assert statuses(gw.json_on(following))[-1] == "successful"
        # Nothing more on the cleared topic: a status would make it a retained command again.
        assert gw.on(canceled)[after_clear:] == []
    assert device.hook_runs() == ["1.0.2"]
    assert files.calls.count("GET /slow.bin") == 1
    # The partial image went with the cancel (the other one right after its report).
    await until(lambda: not list((device.state_dir / "downloads").glob("*.bin")))


async def test_command_cleared_while_the_agent_was_stopped_is_not_resumed(
    hub: HubProcess, files: FileServer, agents: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    device = Device(tmp_path)
    config = te_config(hub, device, install_hook(device))
    config["thin_edge"]["resume_grace"] = 1.0
    agent = agents(config)
    files.slow_piece, files.slow_delay = 20_000, 0.05
    canceled, following = f"{CMD_BASE}/otahub-stopped-1", f"{CMD_BASE}/otahub-stopped-2"
    async with observer(hub.mqtt_port, f"te/device/{CHILD}///#") as gw:
        await gw.wait_for(lambda: gw.on(TWIN))
        command = command_for(files, "slow.bin", os.urandom(1_000_000), "1.0.1")
        await gw.publish(canceled, json.dumps(command).encode(), retain=True)
        await until(lambda: files.bytes_sent > 100_000)
        agent.kill()
        await gw.publish(canceled, b"", retain=True)
        files.slow_piece, files.slow_delay = None, 0.0
        agent = agents(config)
        await until(lambda: "cleared the command while the agent was stopped" in agent.log())
        after_clear = len(gw.on(canceled))
        command = command_for(files, "next.bin", os.urandom(10_000), "1.0.2")
        await gw.publish(following, json.dumps(command).encode(), retain=True)
        await gw.wait_for(lambda: terminal(gw.json_on(following)))
        assert statuses(gw.json_on(following))[-1] == "successful"
        assert gw.on(canceled)[after_clear:] == []
    assert device.hook_runs() == ["1.0.2"]
    assert files.calls.count("GET /slow.bin") == 1
