"""EnOS agent against otahub serve: signed login, upgrade push, HTTP download, faults.

Downloads go straight to the hub's ``fileUrl``, or, with ``--enos-file-url
relative``, through the hub's EnOS HTTP broker pair (``/auth``, ``/multipart``).
A relaying :class:`FileServer` in front of the hub paces and counts them.

The hub's update record (``GET /api/v1/updates/{id}``) is the oracle. One hub
serves the module; each test has its own device keys and package version.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from otahub.agent.config import DownloadConfig, EnosConfig
from otahub.agent.download import DownloadError
from otahub.agent.enos_broker import BrokerFile
from tests.agent.agentproc import AgentProcess, observer
from tests.agent.fileserver import FileServer
from tests.agent.hubapi import (
    api,
    corrupt_blob,
    get_update,
    path_of,
    register,
    start_update,
    state_file,
    until,
    upload,
    wait_state,
)
from tests.agent.scenarios import (
    assert_resumed,
    kill_mid_download,
    killed_after_install_succeeds_once,
    throttle,
)
from tests.agent.test_thin_edge import Device, agents, install_hook, lingering_install_hook
from tests.hubproc import HubProcess
from tests.interop.tedge_child import MOSQUITTO, Mosquitto

__all__ = ["agents"]  # the fixture, shared with the thin-edge tests

TITLE = "enos-firmware"
PRODUCT = "pkAgentTests"


RELATIVE = ("--enos-file-url", "relative")


@pytest.fixture(scope="module")
def enoshub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    hub = HubProcess(tmp_path_factory.mktemp("enoshub") / "data", extra_args=["--no-auth"])
    yield hub.start()
    hub.stop()


@pytest.fixture(scope="module")
def relhub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    """A hub whose upgrades carry a relative ``fileUrl``."""
    data_dir = tmp_path_factory.mktemp("relhub") / "data"
    hub = HubProcess(data_dir, extra_args=["--no-auth", *RELATIVE])
    yield hub.start()
    hub.stop()


def new_device(hub: HubProcess, tmp_path: Path, device_key: str) -> tuple[Device, dict[str, str]]:
    secret = f"secret-{device_key}"
    register(
        hub,
        name=device_key,
        dialect="enos",
        product_key=PRODUCT,
        device_key=device_key,
        secret=secret,
    )
    keys = {"product_key": PRODUCT, "device_key": device_key, "device_secret": secret}
    return Device(tmp_path), keys


def enos_config(
    hub: HubProcess | None,
    device: Device,
    keys: dict[str, str],
    hook: str,
    port: int | None = None,
    **hooks: Any,
) -> dict[str, Any]:
    """The agent's config; ``port`` is another broker's, without a hub."""
    return {
        "dialect": "enos",
        "state_dir": str(device.state_dir),
        "log_level": "DEBUG",
        "mqtt": {
            "host": "127.0.0.1",
            "port": port if hub is None else hub.mqtt_port,
            "reconnect_initial": 0.2,
        },
        "enos": {**keys, "reply_timeout": 5},
        "version": {"file": str(device.version_file), "name": TITLE},
        "hooks": {"install": hook, "timeout": 20, **hooks},
        "download": {"backoff_initial": 0.05, "backoff_max": 0.2},
    }


async def test_update_succeeds(
    enoshub: HubProcess, agents: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    device, keys = new_device(enoshub, tmp_path, "enos-ok")
    upload(enoshub, TITLE, "1.0.1", os.urandom(200_000))
    agents(enos_config(enoshub, device, keys, install_hook(device)))
    update_id = await start_update(enoshub, "enos-ok", TITLE, "1.0.1")
    update = await wait_state(enoshub, update_id)
    assert update["state"] == "succeeded", update
    states = path_of(update)
    assert states.index("sent") < states.index("downloading") < states.index("succeeded")
    assert device.hook_runs() == ["1.0.1"]
    assert device.version_file.read_text() == "1.0.1"


async def test_blob_corrupted_on_the_hub_is_not_served_and_installs_nothing(
    enoshub: HubProcess, agents: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    device, keys = new_device(enoshub, tmp_path, "enos-bad-sum")
    package = upload(enoshub, TITLE, "1.0.2", os.urandom(20_000))
    corrupt_blob(enoshub, package["sha256"])
    agents(enos_config(enoshub, device, keys, install_hook(device)))
    update_id = await start_update(enoshub, "enos-bad-sum", TITLE, "1.0.2")
    update = await wait_state(enoshub, update_id)
    assert update["state"] == "failed", update
    # the hub refuses to serve bytes that no longer match their SHA-256
    assert update["code"] == "firmware_corrupt", update
    assert "no longer matches its SHA-256" in update["reason"]
    assert "installing" not in path_of(update)
    assert device.hook_runs() == []
    assert device.version_file.read_text().strip() == "1.0.0"
    # the hub failed the update at its refusal; the agent then gives up on its own
    await until(lambda: not list((device.state_dir / "downloads").iterdir()))


async def test_hook_failure_reports_stderr(
    enoshub: HubProcess, agents: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    device, keys = new_device(enoshub, tmp_path, "enos-hook-fails")
    upload(enoshub, TITLE, "1.0.3", os.urandom(10_000))
    hook = install_hook(device, exit_code=7, stderr="partition locked")
    agents(enos_config(enoshub, device, keys, hook))
    update_id = await start_update(enoshub, "enos-hook-fails", TITLE, "1.0.3")
    update = await wait_state(enoshub, update_id)
    assert update["state"] == "failed", update
    assert update["code"] == "-4", update  # burning failure
    assert "install hook failed (exit code 7): partition locked" in update["reason"]
    assert device.version_file.read_text().strip() == "1.0.0"


async def test_reboot_required_verifies_after_restart(
    enoshub: HubProcess, agents: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    device, keys = new_device(enoshub, tmp_path, "enos-reboot")
    upload(enoshub, TITLE, "1.0.4", os.urandom(10_000))
    verify_log = tmp_path / "verify.log"
    config = enos_config(
        enoshub,
        device,
        keys,
        install_hook(device, exit_code=100),
        verify=f"sh -c 'echo {{version}} >> {verify_log}'",
    )
    agent = agents(config)
    update_id = await start_update(enoshub, "enos-reboot", TITLE, "1.0.4")
    await until(
        lambda: (
            state_file(device.state_dir).exists()
            and '"reboot_pending"' in state_file(device.state_dir).read_text()
        )
    )
    agent.stop()  # the device restarts
    update = await wait_state(enoshub, update_id, "installing")
    assert not verify_log.exists()
    agents(config)
    update = await wait_state(enoshub, update_id)
    assert update["state"] == "succeeded", update
    assert verify_log.read_text().split() == ["1.0.4"]
    assert device.hook_runs() == ["1.0.4"]


async def test_failed_verification_after_restart_rolls_back(
    enoshub: HubProcess, agents: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    device, keys = new_device(enoshub, tmp_path, "enos-rollback")
    upload(enoshub, TITLE, "1.0.5", os.urandom(10_000))
    config = enos_config(
        enoshub,
        device,
        keys,
        install_hook(device, exit_code=100),
        # Takes a moment, so the agent is connected again before it fails.
        verify="sh -c 'sleep 1; echo watchdog reset >&2; exit 1'",
        rollback=f"sh -c 'printf 1.0.0 > {device.version_file}'",
    )
    agent = agents(config)
    update_id = await start_update(enoshub, "enos-rollback", TITLE, "1.0.5")
    await until(
        lambda: (
            state_file(device.state_dir).exists()
            and '"reboot_pending"' in state_file(device.state_dir).read_text()
        )
    )
    agent.stop()
    # The install hook wrote the new version: an inform of it on reconnect,
    # before the verification, would already count as success on the hub.
    agents(config)
    update = await wait_state(enoshub, update_id)
    assert update["state"] == "failed", update
    assert update["code"] == "-4", update
    assert "verify hook failed (exit code 1): watchdog reset; rolled back" in update["reason"]
    assert device.version_file.read_text() == "1.0.0"


async def test_request_mode_polls_getversion(
    enoshub: HubProcess, agents: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    device, keys = new_device(enoshub, tmp_path, "enos-on-request")
    upload(enoshub, TITLE, "1.0.6", os.urandom(10_000))
    config = enos_config(enoshub, device, keys, install_hook(device))
    config["enos"] = {**config["enos"], "mode": "request", "poll_interval": 0.5}
    agents(config)
    # The hub never pushes an on-request update: the agent finds it by polling.
    update_id = await start_update(enoshub, "enos-on-request", TITLE, "1.0.6", mode="on-request")
    update = await wait_state(enoshub, update_id)
    assert update["state"] == "succeeded", update
    assert update["mode"] == "on-request"
    assert device.hook_runs() == ["1.0.6"]
    assert "pushed update" not in "".join(
        line for line in enoshub.log().splitlines() if "enos-on-request" in line
    )


def broker_calls(device_key: str) -> tuple[str, str]:
    return (
        f"POST /auth/{PRODUCT}/{device_key}",
        f"GET /multipart/sys/{PRODUCT}/{device_key}/file/download",
    )


async def test_relative_file_url_downloads_through_the_http_broker(
    relhub: HubProcess, files: FileServer, agents: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    files.upstream = relhub.http_url
    device, keys = new_device(relhub, tmp_path, "enos-broker")
    data = os.urandom(300_000)
    upload(relhub, TITLE, "2.0.1", data)
    config = enos_config(relhub, device, keys, install_hook(device))
    config["enos"]["http_broker"] = files.base_url
    agents(config)
    update_id = await start_update(relhub, "enos-broker", TITLE, "2.0.1")
    update = await wait_state(relhub, update_id)
    assert update["state"] == "succeeded", update
    # A signed login, then the file through the session's multipart URL.
    assert files.calls == list(broker_calls("enos-broker"))
    assert files.bytes_sent >= len(data)
    assert device.hook_runs() == ["2.0.1"]
    assert device.version_file.read_text() == "2.0.1"


async def test_relative_file_url_without_a_broker_fails_as_a_download_failure(
    relhub: HubProcess, agents: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    device, keys = new_device(relhub, tmp_path, "enos-no-broker")
    upload(relhub, TITLE, "2.0.2", os.urandom(10_000))
    agents(enos_config(relhub, device, keys, install_hook(device)))
    update_id = await start_update(relhub, "enos-no-broker", TITLE, "2.0.2")
    update = await wait_state(relhub, update_id)
    assert update["state"] == "failed", update
    assert update["code"] == "-2", update  # download failure
    assert "is not an http(s) URL" in update["reason"]
    assert "no EnOS HTTP broker is configured (enos.http_broker)" in update["reason"]
    assert device.hook_runs() == []
    assert device.version_file.read_text().strip() == "1.0.0"


async def test_broker_login_with_a_wrong_secret_is_refused(
    relhub: HubProcess, tmp_path: Path
) -> None:
    _, keys = new_device(relhub, tmp_path, "enos-broker-refused")
    wrong = EnosConfig(**{**keys, "device_secret": "not-the-secret"})
    source = BrokerFile(relhub.http_url, wrong, DownloadConfig(), "/enos/ota/1/x")
    with pytest.raises(DownloadError, match="HTTP 401: login refused with code 401"):
        await source.resolve()
    # The right secret gets a session URL on the broker's multipart download.
    right = BrokerFile(relhub.http_url, EnosConfig(**keys), DownloadConfig(), "/enos/ota/1/x")
    url = await right.resolve()
    assert url.startswith(f"{relhub.http_url}/multipart/sys/{PRODUCT}/enos-broker-refused/")
    assert "sessionId=" in url and "fileUri=%2Fenos%2Fota%2F1%2Fx" in url


@pytest.mark.parametrize("form", ["absolute", "relative"])
async def test_killed_mid_download_resumes(
    form: str,
    hub_factory: Callable[..., HubProcess],
    files: FileServer,
    agents: Callable[..., AgentProcess],
    tmp_path: Path,
) -> None:
    # The relay is where devices download from: the hub's public URL, or the broker.
    hub_args = ("--public-url", files.base_url) if form == "absolute" else RELATIVE
    hub = hub_factory("--no-auth", *hub_args)
    files.upstream = hub.http_url
    device, keys = new_device(hub, tmp_path, "enos-kill")
    data = os.urandom(1_000_000)
    upload(hub, TITLE, "2.1.0", data)
    config = enos_config(hub, device, keys, install_hook(device))
    if form == "relative":
        config["enos"]["http_broker"] = files.base_url
    throttle(files)
    agent = agents(config)
    update_id = await start_update(hub, "enos-kill", TITLE, "2.1.0")
    await kill_mid_download(files, agent)
    assert get_update(hub, update_id)["state"] == "downloading"
    agents(config)
    update = await wait_state(hub, update_id)
    assert update["state"] == "succeeded", update
    assert_resumed(files, len(data))
    if form == "relative":
        # The resume logged in again: a session per attempt, none reused.
        assert files.calls == list(broker_calls("enos-kill")) * 2
    assert device.hook_runs() == ["2.1.0"]


async def test_killed_after_install_before_report_succeeds_once(
    enoshub: HubProcess, agents: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    device, keys = new_device(enoshub, tmp_path, "enos-kill-install")
    upload(enoshub, TITLE, "2.1.1", os.urandom(20_000))
    config = enos_config(enoshub, device, keys, lingering_install_hook(device))
    await killed_after_install_succeeds_once(
        enoshub, agents, device, config, ("enos-kill-install", TITLE, "2.1.1")
    )


async def test_rollback_to_a_version_installed_before_succeeds(
    enoshub: HubProcess, agents: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    """1.0.4 -> 1.0.5 -> 1.0.4: the running version decides, not the agent's history."""
    device, keys = new_device(enoshub, tmp_path, "enos-back-to-earlier")
    title = "enos-rollback-fw"
    for version in ("1.0.4", "1.0.5"):
        upload(enoshub, title, version, os.urandom(10_000))
    agents(enos_config(enoshub, device, keys, install_hook(device)))
    for version in ("1.0.4", "1.0.5", "1.0.4"):
        update_id = await start_update(enoshub, "enos-back-to-earlier", title, version)
        update = await wait_state(enoshub, update_id)
        assert update["state"] == "succeeded", update
        assert device.version_file.read_text() == version
    assert device.hook_runs() == ["1.0.4", "1.0.5", "1.0.4"]


@pytest.mark.skipif(not Path(MOSQUITTO).exists(), reason="needs the mosquitto broker")
async def test_empty_image_installs_once_without_looping(
    files: FileServer, agents: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    """An image of 0 bytes, offered by an EnOS cloud played through mosquitto (request mode)."""
    files.files["empty.bin"] = b""
    broker = Mosquitto(tmp_path / "mosquitto").start()
    try:
        device = Device(tmp_path)
        keys = {"product_key": PRODUCT, "device_key": "enos-empty", "device_secret": "s"}
        base = f"/sys/{PRODUCT}/enos-empty/ota/device"
        async with observer(broker.port, f"{base}/#") as cloud:
            config = enos_config(None, device, keys, install_hook(device), port=broker.port)
            config["enos"] = {**config["enos"], "mode": "request"}
            agents(config)
            await cloud.wait_for(lambda: cloud.json_on(f"{base}/getversion"))
            request = cloud.json_on(f"{base}/getversion")[0]
            offer = {
                "version": "1.0.1",
                "sign": hashlib.md5(b"").hexdigest(),
                "signMethod": "md5",
                "fileUrl": files.url("empty.bin"),
                "fileSize": 0,
            }
            reply = {"id": request["id"], "code": 200, "data": [offer]}
            await cloud.publish(f"{base}/getversion_reply", json.dumps(reply).encode())

            def informed() -> list[str]:
                return [m["params"]["version"] for m in cloud.json_on(f"{base}/inform")]

            await cloud.wait_for(lambda: "1.0.1" in informed())
            steps = [m["params"]["step"] for m in cloud.json_on(f"{base}/progress")]
    finally:
        broker.stop()
    assert steps == ["0", "90", "100"], steps
    assert device.hook_runs() == ["1.0.1"]
    assert device.version_file.read_text() == "1.0.1"


def cancel(hub: HubProcess, update_id: int) -> None:
    with api(hub) as client:
        r = client.post(f"/updates/{update_id}/cancel")
        assert r.status_code == 200, r.text


async def test_canceled_update_stops_at_the_next_progress_report(
    hub_factory: Callable[..., HubProcess],
    files: FileServer,
    agents: Callable[..., AgentProcess],
    tmp_path: Path,
) -> None:
    """EnOS tells a device nothing on cancel; the 764 reply to its next progress does."""
    hub = hub_factory("--no-auth", "--public-url", files.base_url)
    files.upstream = hub.http_url
    device, keys = new_device(hub, tmp_path, "enos-cancel")
    upload(hub, TITLE, "3.0.0", os.urandom(1_000_000))
    throttle(files)
    agent = agents(enos_config(hub, device, keys, install_hook(device)))
    update_id = await start_update(hub, "enos-cancel", TITLE, "3.0.0")
    await until(lambda: files.bytes_sent >= 150_000)
    cancel(hub, update_id)
    await until(lambda: "stopped working on the update to 3.0.0" in agent.log())
    assert "progress reply 764" in agent.log()
    files.slow_piece, files.slow_delay = None, 0.0
    await until(lambda: not list((device.state_dir / "downloads").glob("*.bin")))
    assert get_update(hub, update_id)["state"] == "canceled"
    assert device.hook_runs() == []


async def test_update_canceled_while_the_agent_was_stopped_is_not_resumed(
    hub_factory: Callable[..., HubProcess],
    files: FileServer,
    agents: Callable[..., AgentProcess],
    tmp_path: Path,
) -> None:
    hub = hub_factory("--no-auth", "--public-url", files.base_url)
    files.upstream = hub.http_url
    device, keys = new_device(hub, tmp_path, "enos-cancel-stopped")
    upload(hub, TITLE, "3.0.1", os.urandom(1_000_000))
    config = enos_config(hub, device, keys, install_hook(device))
    throttle(files)
    agent = agents(config)
    update_id = await start_update(hub, "enos-cancel-stopped", TITLE, "3.0.1")
    await kill_mid_download(files, agent)
    cancel(hub, update_id)
    calls = list(files.calls)
    agent = agents(config)
    await until(lambda: "stopped working on the update to 3.0.1" in agent.log())
    assert files.calls == calls  # its download was not resumed
    assert not list((device.state_dir / "downloads").glob("*.bin"))
    assert get_update(hub, update_id)["state"] == "canceled"
    assert device.hook_runs() == []


async def test_reconnect_after_the_login_window_signs_a_fresh_login(
    tmp_path_factory: pytest.TempPathFactory, agents: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    """The login's timestamp is made per connection, not once at start-up.

    A hub with a 2 s window restarts after the agent's first login has aged
    past it; the agent must come back with a new timestamp, not be refused
    for ever with the old one.
    """
    data_dir = tmp_path_factory.mktemp("windowhub") / "data"
    hub = HubProcess(data_dir, extra_args=["--no-auth", "--enos-login-window", "2"]).start()
    try:
        device, keys = new_device(hub, tmp_path, "enos-window")
        agent = agents(enos_config(hub, device, keys, install_hook(device)))
        await until(lambda: agent.log().count("connected to 127.0.0.1") >= 1)
        hub.stop()
        await asyncio.sleep(3)  # the first login is now outside the window
        hub.start()
        await until(lambda: agent.log().count("connected to 127.0.0.1") >= 2)
        assert "stale EnOS login" not in hub.log()
    finally:
        hub.stop()
