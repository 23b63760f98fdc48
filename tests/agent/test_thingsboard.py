"""ThingsBoard agent against otahub serve: MQTT chunk downloads, faults, resume, software.

The hub's update record (``GET /api/v1/updates/{id}``) is the oracle. One hub
serves the module; each test has its own device, token and package version.
The agent logs every chunk it requests at DEBUG, which is how the resume
tests see which chunk indices travelled after a cut.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from tests.agent.agentproc import AgentProcess, Observer, observer
from tests.agent.fileserver import FileServer
from tests.agent.hubapi import (
    corrupt_blob,
    path_of,
    register,
    start_update,
    state_file,
    until,
    upload,
    wait_state,
)
from tests.agent.scenarios import killed_after_install_succeeds_once
from tests.agent.test_thin_edge import Device, agents, install_hook, lingering_install_hook
from tests.hubproc import HubProcess
from tests.interop.tedge_child import MOSQUITTO, Mosquitto

__all__ = ["agents"]  # the fixture, shared with the thin-edge tests

TITLE = "tb-firmware"
FLOW = ["downloading", "downloaded", "verified", "installing", "succeeded"]
ATTRIBUTES = "v1/devices/me/attributes"
TELEMETRY = "v1/devices/me/telemetry"
needs_mosquitto = pytest.mark.skipif(
    not Path(MOSQUITTO).exists(), reason="needs the mosquitto broker"
)


@pytest.fixture(scope="module")
def tbhub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    hub = HubProcess(tmp_path_factory.mktemp("tbhub") / "data", extra_args=["--no-auth"])
    yield hub.start()
    hub.stop()


def tb_config(
    hub: HubProcess | None,
    device: Device,
    token: str,
    hook: str,
    chunk_size: int = 4096,
    port: int | None = None,
    **hooks: Any,
) -> dict[str, Any]:
    """The agent's config; ``port`` is another broker's, without a hub."""
    return {
        "dialect": "thingsboard",
        "state_dir": str(device.state_dir),
        "log_level": "DEBUG",
        "mqtt": {
            "host": "127.0.0.1",
            "port": port if hub is None else hub.mqtt_port,
            "reconnect_initial": 0.2,
            "reconnect_max": 0.5,
        },
        "thingsboard": {"token": token, "chunk_size": chunk_size, "chunk_timeout": 5},
        "version": {"file": str(device.version_file), "name": TITLE},
        "hooks": {"install": hook, "timeout": 20, **hooks},
    }


def new_device(hub: HubProcess, tmp_path: Path, name: str) -> tuple[Device, str]:
    token = f"token-{name}"
    register(hub, name=name, dialect="thingsboard", token=token)
    return Device(tmp_path), token


def is_subsequence(wanted: list[str], seen: list[str]) -> bool:
    it = iter(seen)
    return all(state in it for state in wanted)


def requested_chunks(log: str) -> list[int]:
    return [int(n) for n in re.findall(r"requesting chunk (\d+) ", log)]


async def test_update_succeeds(
    tbhub: HubProcess, agents: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    device, token = new_device(tbhub, tmp_path, "tb-ok")
    data = os.urandom(50_000)
    upload(tbhub, TITLE, "1.0.1", data)
    agent = agents(tb_config(tbhub, device, token, install_hook(device)))
    update_id = await start_update(tbhub, "tb-ok", TITLE, "1.0.1")
    update = await wait_state(tbhub, update_id)
    assert update["state"] == "succeeded", update
    assert is_subsequence(FLOW, path_of(update)), path_of(update)
    assert device.hook_runs() == ["1.0.1"]
    assert device.version_file.read_text() == "1.0.1"
    # 50 000 bytes in 4096-byte chunks: 0..12, each asked for once.
    assert requested_chunks(agent.log()) == list(range(13))


async def test_blob_corrupted_on_the_hub_is_not_served_and_installs_nothing(
    tbhub: HubProcess, agents: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    device, token = new_device(tbhub, tmp_path, "tb-bad-sum")
    package = upload(tbhub, TITLE, "1.0.2", os.urandom(20_000))
    corrupt_blob(tbhub, package["sha256"])
    agents(tb_config(tbhub, device, token, install_hook(device)))
    update_id = await start_update(tbhub, "tb-bad-sum", TITLE, "1.0.2")
    update = await wait_state(tbhub, update_id)
    assert update["state"] == "failed", update
    # the hub refuses to serve bytes that no longer match their SHA-256
    assert update["code"] == "firmware_corrupt", update
    assert "no longer matches its SHA-256" in update["reason"]
    assert "installing" not in path_of(update)
    assert device.hook_runs() == []
    assert device.version_file.read_text().strip() == "1.0.0"


async def test_hook_failure_reports_stderr(
    tbhub: HubProcess, agents: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    device, token = new_device(tbhub, tmp_path, "tb-hook-fails")
    upload(tbhub, TITLE, "1.0.3", os.urandom(10_000))
    hook = install_hook(device, exit_code=7, stderr="partition locked")
    agents(tb_config(tbhub, device, token, hook))
    update_id = await start_update(tbhub, "tb-hook-fails", TITLE, "1.0.3")
    update = await wait_state(tbhub, update_id)
    assert update["state"] == "failed", update
    assert update["reason"] == "install hook failed (exit code 7): partition locked"
    assert "installing" in path_of(update)
    assert device.version_file.read_text().strip() == "1.0.0"


async def test_same_package_started_again_after_a_failure_is_installed(
    tbhub: HubProcess, agents: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    """A retry assigns what is already assigned: the hub must make it a change."""
    device, token = new_device(tbhub, tmp_path, "tb-retry")
    upload(tbhub, TITLE, "1.0.6", os.urandom(10_000))
    # fails on its first run only
    marker = tmp_path / "failed-once"
    hook = (
        f'sh -c \'echo "$2" >> {device.hook_log}; '
        f"if [ ! -e {marker} ]; then touch {marker}; exit 7; fi; "
        f'printf %s "$2" > {device.version_file}\' hook {{file}} {{version}}'
    )
    agents(tb_config(tbhub, device, token, hook))
    first = await wait_state(tbhub, await start_update(tbhub, "tb-retry", TITLE, "1.0.6"))
    assert first["state"] == "failed", first
    again = await wait_state(tbhub, await start_update(tbhub, "tb-retry", TITLE, "1.0.6"))
    assert again["state"] == "succeeded", again
    assert device.hook_runs() == ["1.0.6", "1.0.6"]
    assert device.version_file.read_text() == "1.0.6"


async def test_reboot_required_verifies_after_restart(
    tbhub: HubProcess, agents: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    device, token = new_device(tbhub, tmp_path, "tb-reboot")
    upload(tbhub, TITLE, "1.0.4", os.urandom(10_000))
    verify_log = tmp_path / "verify.log"
    config = tb_config(
        tbhub,
        device,
        token,
        install_hook(device, exit_code=100),
        verify=f"sh -c 'echo {{version}} >> {verify_log}'",
    )
    agent = agents(config)
    update_id = await start_update(tbhub, "tb-reboot", TITLE, "1.0.4")
    await until(
        lambda: (
            state_file(device.state_dir).exists()
            and '"reboot_pending"' in state_file(device.state_dir).read_text()
        )
    )
    agent.stop()  # the device restarts
    update = await wait_state(tbhub, update_id, "installing")
    assert not verify_log.exists()
    agents(config)
    update = await wait_state(tbhub, update_id)
    assert update["state"] == "succeeded", update
    assert verify_log.read_text().split() == ["1.0.4"]
    assert device.hook_runs() == ["1.0.4"]


async def test_chunks_resume_after_the_connection_is_cut(
    hub_factory: Callable[..., HubProcess], agents: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    # Its own hub: restarting it cuts the agent's connection mid-download.
    hub = hub_factory("--no-auth")
    device, token = new_device(hub, tmp_path, "tb-cut")
    size, chunk = 3_000_000, 2048
    upload(hub, TITLE, "1.1.0", os.urandom(size))
    agent = agents(tb_config(hub, device, token, install_hook(device), chunk_size=chunk))
    update_id = await start_update(hub, "tb-cut", TITLE, "1.1.0")
    downloads = device.state_dir / "downloads"
    await until(lambda: any(p.stat().st_size > size // 4 for p in downloads.glob("*.bin")))
    hub.stop()
    before = requested_chunks(agent.log())
    hub.start()
    update = await wait_state(hub, update_id, timeout=90)
    assert update["state"] == "succeeded", update
    log = agent.log()
    assert "MQTT connection lost" in log
    after = requested_chunks(log)[len(before) :]
    last = -(-size // chunk) - 1
    # The chunk in flight at the cut is asked for again, then the rest in
    # order; nothing before it travels twice.
    assert after[0] in (before[-1], before[-1] + 1), (before[-3:], after[:3])
    assert after == list(range(after[0], last + 1))
    assert before == list(range(before[-1] + 1))
    assert device.hook_runs() == ["1.1.0"]


async def test_killed_mid_download_resumes_from_the_last_whole_chunk(
    tbhub: HubProcess, agents: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    device, token = new_device(tbhub, tmp_path, "tb-kill")
    size, chunk = 3_000_000, 2048
    upload(tbhub, TITLE, "1.1.1", os.urandom(size))
    config = tb_config(tbhub, device, token, install_hook(device), chunk_size=chunk)
    agent = agents(config)
    update_id = await start_update(tbhub, "tb-kill", TITLE, "1.1.1")
    downloads = device.state_dir / "downloads"
    await until(lambda: any(p.stat().st_size > size // 4 for p in downloads.glob("*.bin")))
    agent.kill()
    (partial,) = downloads.glob("*.bin")
    whole = partial.stat().st_size // chunk
    before = requested_chunks(agent.log())
    agents(config)
    update = await wait_state(tbhub, update_id, timeout=90)
    assert update["state"] == "succeeded", update
    log = agent.log()  # both runs append to the same log
    assert f"starts at chunk {whole} of {-(-size // chunk)}" in log
    assert requested_chunks(log)[len(before) :] == list(range(whole, -(-size // chunk)))
    assert device.hook_runs() == ["1.1.1"]


async def test_killed_after_install_before_report_succeeds_once(
    tbhub: HubProcess, agents: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    device, token = new_device(tbhub, tmp_path, "tb-kill-install")
    upload(tbhub, TITLE, "1.1.2", os.urandom(20_000))
    config = tb_config(tbhub, device, token, lingering_install_hook(device))
    await killed_after_install_succeeds_once(
        tbhub, agents, device, config, ("tb-kill-install", TITLE, "1.1.2")
    )


async def test_software_update_next_to_firmware(
    tbhub: HubProcess, agents: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    device, token = new_device(tbhub, tmp_path, "tb-software")
    sw_version = tmp_path / "sw-version"
    sw_version.write_text("2.0.0\n")
    sw_log = tmp_path / "sw-hook.log"
    sw_hook = (
        f'sh -c \'echo "$1 $2" >> {sw_log}; printf %s "$2" > {sw_version}\' '
        "hook {kind} {version}"
    )
    config = tb_config(tbhub, device, token, install_hook(device))
    config["thingsboard.software"] = {
        "enabled": True,
        "file": str(sw_version),
        "name": "tb-app",
        "install": sw_hook,
    }
    upload(tbhub, "tb-app", "2.1.0", os.urandom(30_000), kind="software")
    agent = agents(config)
    update_id = await start_update(tbhub, "tb-software", "tb-app", "2.1.0")
    update = await wait_state(tbhub, update_id)
    assert update["state"] == "succeeded", update
    assert update["kind"] == "software"
    assert is_subsequence(FLOW, path_of(update)), path_of(update)
    assert sw_log.read_text().split() == ["software", "2.1.0"]
    assert sw_version.read_text() == "2.1.0"
    # The firmware is untouched and its hook never ran.
    assert device.hook_runs() == []
    assert device.version_file.read_text().strip() == "1.0.0"
    assert "software download (rid 1) starts at chunk 0 of 8" in agent.log()


@pytest.mark.skipif(not Path(MOSQUITTO).exists(), reason="needs the mosquitto broker")
async def test_external_fw_url_is_downloaded_over_http(
    files: FileServer, agents: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    """A package with an external URL: ``fw_url`` instead of chunks, and no ``fw_size``.

    The hub never sends ``fw_url`` (it keeps every package's bytes and serves
    chunks), so the test plays the ThingsBoard server through a plain broker.
    """
    data = os.urandom(300_000)
    files.files["external.bin"] = data
    broker = Mosquitto(tmp_path / "mosquitto").start()
    try:
        device = Device(tmp_path)
        config = tb_config(None, device, "token-ext", install_hook(device), port=broker.port)
        async with observer(broker.port, "v1/devices/me/#") as server:
            agent = agents(config)
            request = "v1/devices/me/attributes/request/1"
            await server.wait_for(lambda: server.on(request))
            assert "fw_url" in json.loads(server.on(request)[0])["sharedKeys"].split(",")
            shared = {
                "fw_title": TITLE,
                "fw_version": "2.0.0",
                "fw_url": files.url("external.bin"),
                "fw_checksum_algorithm": "SHA256",
                "fw_checksum": hashlib.sha256(data).hexdigest(),
            }
            response = json.dumps({"shared": shared}).encode()
            await server.publish("v1/devices/me/attributes/response/1", response)

            def states() -> list[str]:
                telemetry = server.json_on("v1/devices/me/telemetry")
                return [t["fw_state"] for t in telemetry if "fw_state" in t]

            await server.wait_for(lambda: "UPDATED" in states() or "FAILED" in states())
            done = [t for t in server.json_on("v1/devices/me/telemetry") if "fw_state" in t][-1]
    finally:
        broker.stop()
    assert states() == ["DOWNLOADING", "DOWNLOADED", "VERIFIED", "UPDATING", "UPDATED"], done
    assert (done["current_fw_title"], done["current_fw_version"]) == (TITLE, "2.0.0")
    assert files.requests == [None]  # one plain GET of the whole image
    assert requested_chunks(agent.log()) == []
    assert device.hook_runs() == ["2.0.0"]


@asynccontextmanager
async def played_server(tmp_path: Path) -> AsyncIterator[tuple[int, Observer]]:
    """A ThingsBoard server played by the test through mosquitto: (port, server's client)."""
    broker = Mosquitto(tmp_path / "mosquitto").start()
    try:
        async with observer(broker.port, "v1/devices/me/#") as server:
            yield broker.port, server
    finally:
        broker.stop()


def fw_states(server: Observer) -> list[str]:
    return [t["fw_state"] for t in server.json_on(TELEMETRY) if "fw_state" in t]


def external_package(
    files: FileServer, version: str, data: bytes, checksum: str | None = None
) -> dict[str, Any]:
    """The shared attributes of a package with an external ``fw_url`` served by ``files``."""
    files.files[f"{version}.bin"] = data
    return {
        "fw_title": TITLE,
        "fw_version": version,
        "fw_url": files.url(f"{version}.bin"),
        "fw_checksum_algorithm": "SHA256",
        "fw_checksum": checksum or hashlib.sha256(data).hexdigest(),
    }


async def answer_attribute_request(server: Observer, nth: int, shared: dict[str, Any]) -> None:
    """Answer the agent's ``nth`` attribute request (each agent process counts from 1)."""
    requests = "v1/devices/me/attributes/request/1"
    await server.wait_for(lambda: len(server.on(requests)) >= nth)
    response = json.dumps({"shared": shared}).encode()
    await server.publish("v1/devices/me/attributes/response/1", response)


@needs_mosquitto
async def test_failed_package_is_not_restarted_by_attribute_pushes_or_restart(
    files: FileServer, agents: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    """After a failure only a reassignment (another fw_title/fw_version) starts anything.

    Neither the ``{"deleted": [...]}`` that precedes every assignment, nor an
    unrelated shared attribute, nor an agent restart fetches the failed package
    again, so no extra ``FAILED`` lands on the next assignment.
    """
    bad = external_package(files, "2.0.0", os.urandom(20_000), checksum="0" * 64)
    good = external_package(files, "2.0.1", os.urandom(30_000))
    device = Device(tmp_path)
    async with played_server(tmp_path) as (port, server):
        config = tb_config(None, device, "token-reassign", install_hook(device), port=port)
        agent = agents(config)
        await answer_attribute_request(server, 1, bad)
        await server.wait_for(lambda: "FAILED" in fw_states(server))
        agent.stop()
        agents(config)
        await answer_attribute_request(server, 2, bad)  # still assigned after the restart
        await server.publish(ATTRIBUTES, json.dumps({"deleted": ["fw_tag"]}).encode())
        await server.publish(ATTRIBUTES, json.dumps({"targetTemperature": 21}).encode())
        # The reassignment as ThingsBoard pushes it: the deletion first, then the values.
        await server.publish(ATTRIBUTES, json.dumps({"deleted": ["fw_tag"]}).encode())
        await server.publish(ATTRIBUTES, json.dumps(good).encode())
        await server.wait_for(lambda: "UPDATED" in fw_states(server))
        telemetry = server.json_on(TELEMETRY)
    assert fw_states(server) == [
        "DOWNLOADING",
        "DOWNLOADED",
        "FAILED",
        "DOWNLOADING",
        "DOWNLOADED",
        "VERIFIED",
        "UPDATING",
        "UPDATED",
    ]
    assert "SHA256 checksum mismatch" in next(t for t in telemetry if "fw_error" in t)["fw_error"]
    assert files.calls == ["GET /2.0.0.bin", "GET /2.0.1.bin"]
    assert device.hook_runs() == ["2.0.1"]


@needs_mosquitto
async def test_unassigned_package_stops_downloading_and_reports_nothing_more(
    files: FileServer, agents: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    """Unassigning the package being downloaded (a cancel) stops the agent's work on it."""
    files.slow_piece, files.slow_delay = 10_000, 0.05
    slow = external_package(files, "2.1.0", os.urandom(2_000_000))
    device = Device(tmp_path)
    async with played_server(tmp_path) as (port, server):
        agent = agents(tb_config(None, device, "token-unassign", install_hook(device), port=port))
        await answer_attribute_request(server, 1, slow)
        await until(lambda: files.bytes_sent > 100_000)
        deleted = {"deleted": [key for key in slow if key.startswith("fw_")]}
        await server.publish(ATTRIBUTES, json.dumps(deleted).encode())
        await until(lambda: "stopped working on the update to 2.1.0" in agent.log())
        files.slow_piece, files.slow_delay = None, 0.0
        # Assigned again later, it is a new assignment and starts from the beginning.
        await server.publish(ATTRIBUTES, json.dumps(slow).encode())
        await server.wait_for(lambda: "UPDATED" in fw_states(server))
    assert fw_states(server) == [
        "DOWNLOADING",
        "DOWNLOADING",
        "DOWNLOADED",
        "VERIFIED",
        "UPDATING",
        "UPDATED",
    ]
    assert files.requests[-1] is None  # the partial image was dropped with the cancel
    assert device.hook_runs() == ["2.1.0"]


async def test_rollback_to_a_version_installed_before_succeeds(
    tbhub: HubProcess, agents: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    """1.0.4 -> 1.0.5 -> 1.0.4: the running version decides, not the agent's history."""
    device, token = new_device(tbhub, tmp_path, "tb-rollback")
    title = "tb-rollback-fw"
    for version in ("1.0.4", "1.0.5"):
        upload(tbhub, title, version, os.urandom(10_000))
    config = tb_config(tbhub, device, token, install_hook(device))
    config["version"]["name"] = title
    agents(config)
    for version in ("1.0.4", "1.0.5", "1.0.4"):
        update_id = await start_update(tbhub, "tb-rollback", title, version)
        update = await wait_state(tbhub, update_id)
        assert update["state"] == "succeeded", update
        assert device.version_file.read_text() == version
    assert device.hook_runs() == ["1.0.4", "1.0.5", "1.0.4"]


@needs_mosquitto
async def test_package_unassigned_while_the_agent_was_stopped_is_not_resumed(
    files: FileServer, agents: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    """The push of the unassignment never reached the stopped agent; the attribute
    response after its restart, without ``fw_*`` keys, says so before anything resumes."""
    files.slow_piece, files.slow_delay = 10_000, 0.05
    slow = external_package(files, "2.2.0", os.urandom(2_000_000))
    device = Device(tmp_path)
    async with played_server(tmp_path) as (port, server):
        config = tb_config(
            None, device, "token-unassigned-stopped", install_hook(device), port=port
        )
        agent = agents(config)
        await answer_attribute_request(server, 1, slow)
        await until(lambda: files.bytes_sent > 100_000)
        agent.kill()
        files.slow_piece, files.slow_delay = None, 0.0
        calls = list(files.calls)
        agent = agents(config)
        await answer_attribute_request(server, 2, {})
        await until(lambda: "stopped working on the update to 2.2.0" in agent.log())
    assert files.calls == calls  # its download was not resumed
    assert fw_states(server) == ["DOWNLOADING"]
    assert not list((device.state_dir / "downloads").glob("*.bin"))
    assert device.hook_runs() == []


@asynccontextmanager
async def chunk_server(
    port: int, images: dict[str, bytes], assigned: list[str]
) -> AsyncIterator[dict[str, str]]:
    """Answers ``v2/fw`` chunk requests as ThingsBoard does; yields rid -> version served.

    The first request of a rid binds it to the package assigned at that moment
    (the last of ``assigned``), whatever the device meant to fetch.
    """
    bound: dict[str, str] = {}
    async with aiomqtt.Client("127.0.0.1", port, identifier="tb-chunks") as client:
        await client.subscribe("v2/fw/request/+/chunk/+", qos=1)

        async def serve() -> None:
            async for message in client.messages:
                _, _, _, rid, _, index = str(message.topic).split("/")
                data = images[bound.setdefault(rid, assigned[-1])]
                payload = message.payload
                size = int(payload.decode() if isinstance(payload, bytes) else str(payload))
                start = size * int(index)
                response = f"v2/fw/response/{rid}/chunk/{index}"
                await client.publish(response, data[start : start + size], qos=1)

        task = asyncio.create_task(serve())
        try:
            yield bound
        finally:
            task.cancel()


@needs_mosquitto
async def test_reassignment_after_a_failure_fetches_only_the_new_package_in_chunks(
    agents: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    """The deletion push that precedes the new assignment does not send the failed
    package's download again: the server would answer a new rid with the new package,
    and the mismatch would put a FAILED on the new update."""
    images = {"2.3.0": os.urandom(20_000), "2.3.1": os.urandom(30_000)}

    def shared(version: str, checksum: str | None = None) -> dict[str, Any]:
        data = images[version]
        return {
            "fw_title": TITLE,
            "fw_version": version,
            "fw_size": len(data),
            "fw_checksum_algorithm": "SHA256",
            "fw_checksum": checksum or hashlib.sha256(data).hexdigest(),
        }

    assigned = ["2.3.0"]
    device = Device(tmp_path)
    async with (
        played_server(tmp_path) as (port, server),
        chunk_server(port, images, assigned) as bound,
    ):
        agents(tb_config(None, device, "token-chunks", install_hook(device), port=port))
        await answer_attribute_request(server, 1, shared("2.3.0", checksum="0" * 64))
        await server.wait_for(lambda: "FAILED" in fw_states(server))
        # The server's assignment changes first; its pushes follow: deletion, then values.
        assigned.append("2.3.1")
        await server.publish(ATTRIBUTES, json.dumps({"deleted": ["fw_url"]}).encode())
        await server.publish(ATTRIBUTES, json.dumps(shared("2.3.1")).encode())
        await server.wait_for(lambda: "UPDATED" in fw_states(server))
    assert fw_states(server) == [
        "DOWNLOADING",
        "DOWNLOADED",
        "FAILED",
        "DOWNLOADING",
        "DOWNLOADED",
        "VERIFIED",
        "UPDATING",
        "UPDATED",
    ]
    assert bound == {"1": "2.3.0", "2": "2.3.1"}
    assert device.hook_runs() == ["2.3.1"]


@needs_mosquitto
async def test_empty_image_installs_once(
    agents: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    """A package of 0 bytes (``fw_size`` 0): no chunk to ask for, installed once."""
    shared = {
        "fw_title": TITLE,
        "fw_version": "2.4.0",
        "fw_size": 0,
        "fw_checksum_algorithm": "SHA256",
        "fw_checksum": hashlib.sha256(b"").hexdigest(),
    }
    device = Device(tmp_path)
    async with (
        played_server(tmp_path) as (port, server),
        chunk_server(port, {"2.4.0": b""}, ["2.4.0"]) as bound,
    ):
        agents(tb_config(None, device, "token-empty", install_hook(device), port=port))
        await answer_attribute_request(server, 1, shared)
        await server.wait_for(lambda: "UPDATED" in fw_states(server))
    assert fw_states(server) == ["DOWNLOADING", "DOWNLOADED", "VERIFIED", "UPDATING", "UPDATED"]
    assert bound == {}
    assert device.hook_runs() == ["2.4.0"]
