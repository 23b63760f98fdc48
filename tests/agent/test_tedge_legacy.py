"""Legacy tedge/<child>/commands flow: answers, sha256 check, attempt re-sends, hook outcomes."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.agent.agentproc import AgentProcess, Observer, observer
from tests.agent.fileserver import FileServer
from tests.agent.hubapi import api, start_update, until, upload, wait_state
from tests.agent.test_thin_edge import Device, agents, install_hook
from tests.hubproc import HubProcess

__all__ = ["agents"]

CHILD = "tedge-child"
REQ = f"tedge/{CHILD}/commands/req/firmware_update"
RES = f"tedge/{CHILD}/commands/res/firmware_update"


def legacy_config(hub: HubProcess, device: Device) -> dict[str, Any]:
    return {
        "dialect": "tedge-legacy",
        "state_dir": str(device.state_dir),
        "mqtt": {"host": "127.0.0.1", "port": hub.mqtt_port, "reconnect_initial": 0.2},
        "tedge_legacy": {"child_id": CHILD},
        "version": {"file": str(device.version_file), "name": "OpenWRT"},
        "hooks": {"install": install_hook(device), "timeout": 20},
        "download": {"backoff_initial": 0.05},
    }


def request(op_id: str, attempt: int, url: str, sha256: str) -> bytes:
    body = {"id": op_id, "attempt": attempt, "name": "OpenWRT", "version": "22.03"}
    return json.dumps({**body, "url": url, "sha256": sha256}).encode()


async def test_resend_of_done_request_does_not_install_twice(
    hub: HubProcess, files: FileServer, agents: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    device = Device(tmp_path)
    data = os.urandom(30_000)
    files.files["fw"] = data
    agent = agents(legacy_config(hub, device))
    async with observer(hub.mqtt_port, RES) as gw:
        url, digest = files.url("fw"), hashlib.sha256(data).hexdigest()
        # The agent subscribes after connecting; a request is not retained, so resend until seen.
        while not gw.on(RES):
            await gw.publish(REQ, request("tLrLthPXksKbqRqIsrDmy", 1, url, digest))
            with contextlib.suppress(TimeoutError):
                await gw.wait_for(lambda: bool(gw.on(RES)), timeout=1)
        await gw.wait_for(lambda: {"successful"} <= {m["status"] for m in gw.json_on(RES)})
        answers = gw.json_on(RES)
        assert answers[0] == {"id": "tLrLthPXksKbqRqIsrDmy", "status": "executing"}
        assert answers[-1] == {"id": "tLrLthPXksKbqRqIsrDmy", "status": "successful"}
        count = len(answers)

        await gw.publish(REQ, request("tLrLthPXksKbqRqIsrDmy", 2, url, digest))
        await gw.wait_for(lambda: len(gw.json_on(RES)) > count)
        assert gw.json_on(RES)[-1] == {"id": "tLrLthPXksKbqRqIsrDmy", "status": "successful"}
        assert device.hook_runs() == ["22.03"]

        # A bad checksum: failed with a reason; malformed requests are ignored.
        await gw.publish(REQ, b"[1,2]")
        await gw.publish(REQ, json.dumps({"id": "x", "attempt": "1"}).encode())
        files.files["other"] = b"other image"
        await gw.publish(REQ, request("op-2", 1, files.url("other"), "0" * 64))
        await gw.wait_for(
            lambda: any(m.get("id") == "op-2" and m["status"] == "failed" for m in gw.json_on(RES))
        )
        failed = [m for m in gw.json_on(RES) if m["id"] == "op-2"][-1]
        assert "SHA256 checksum mismatch" in failed["reason"]
        assert device.hook_runs() == ["22.03"]
    assert agent.proc is not None and agent.proc.poll() is None


async def _first_answer(gw: Observer, payload: bytes) -> None:
    # The agent subscribes after connecting; a request is not retained, so resend until seen.
    while not gw.on(RES):
        await gw.publish(REQ, payload)
        with contextlib.suppress(TimeoutError):
            await gw.wait_for(lambda: bool(gw.on(RES)), timeout=1)


async def test_hook_failure_reports_stderr(
    hub: HubProcess, files: FileServer, agents: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    device = Device(tmp_path)
    data = os.urandom(10_000)
    files.files["fw"] = data
    config = legacy_config(hub, device)
    config["hooks"]["install"] = install_hook(device, exit_code=7, stderr="partition locked")
    agents(config)
    async with observer(hub.mqtt_port, RES) as gw:
        payload = request("op-hook", 1, files.url("fw"), hashlib.sha256(data).hexdigest())
        await _first_answer(gw, payload)
        await gw.wait_for(lambda: "failed" in {m["status"] for m in gw.json_on(RES)})
        assert gw.json_on(RES)[-1] == {
            "id": "op-hook",
            "status": "failed",
            "reason": "install hook failed (exit code 7): partition locked",
        }
        assert device.version_file.read_text().strip() == "1.0.0"


async def test_reboot_required_verifies_after_restart(
    hub: HubProcess, files: FileServer, agents: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    device = Device(tmp_path)
    data = os.urandom(10_000)
    files.files["fw"] = data
    verify_log = tmp_path / "verify.log"
    config = legacy_config(hub, device)
    config["hooks"]["install"] = install_hook(device, exit_code=100)
    config["hooks"]["verify"] = f"sh -c 'echo {{version}} >> {verify_log}'"
    agent = agents(config)
    state = device.state_dir / "state.json"
    async with observer(hub.mqtt_port, RES) as gw:
        payload = request("op-reboot", 1, files.url("fw"), hashlib.sha256(data).hexdigest())
        await _first_answer(gw, payload)
        await until(lambda: state.exists() and '"reboot_pending"' in state.read_text())
        agent.stop()  # the device restarts
        assert [m["status"] for m in gw.json_on(RES)] == ["executing"]
        agents(config)
        await gw.wait_for(lambda: "successful" in {m["status"] for m in gw.json_on(RES)})
        # After the restart: executing again (restarts the gateway's timer), then the result.
        assert [m["status"] for m in gw.json_on(RES)] == ["executing", "executing", "successful"]
        assert verify_log.read_text().split() == ["22.03"]
        assert device.hook_runs() == ["22.03"]


async def test_rollback_to_a_version_installed_before_succeeds(
    hub: HubProcess, agents: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    """The hub as the gateway: 1.0.4 -> 1.0.5 -> 1.0.4 ends succeeded, running 1.0.4."""
    with api(hub) as client:
        r = client.post("/devices", json={"name": CHILD, "dialect": "tedge-legacy"})
        assert r.status_code == 201, r.text
    for version in ("1.0.4", "1.0.5"):
        upload(hub, "OpenWRT", version, os.urandom(10_000))
    device = Device(tmp_path)
    agent = agents(legacy_config(hub, device))
    # Requests are not retained: the first one waits for the agent's subscription.
    await until(lambda: "waiting for firmware requests" in agent.log())
    for version in ("1.0.4", "1.0.5", "1.0.4"):
        update_id = await start_update(hub, CHILD, "OpenWRT", version)
        update = await wait_state(hub, update_id)
        assert update["state"] == "succeeded", update
        assert device.version_file.read_text() == version
    assert device.hook_runs() == ["1.0.4", "1.0.5", "1.0.4"]


async def test_agent_with_credentials_answers_its_own_requests(
    hub: HubProcess, agents: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    """A legacy child with a password logs in with it and stays in ``tedge/<own id>/``."""
    with api(hub) as client:
        r = client.post(
            "/devices", json={"name": CHILD, "dialect": "tedge-legacy", "password": "child pw"}
        )
        assert r.status_code == 201, r.text
    upload(hub, "OpenWRT", "1.0.6", os.urandom(10_000))
    device = Device(tmp_path)
    config = legacy_config(hub, device)
    config["mqtt"] |= {"username": CHILD, "password": "child pw"}
    agent = agents(config)
    await until(lambda: "waiting for firmware requests" in agent.log())
    update_id = await start_update(hub, CHILD, "OpenWRT", "1.0.6")
    update = await wait_state(hub, update_id)
    assert update["state"] == "succeeded", update
    assert device.hook_runs() == ["1.0.6"]
