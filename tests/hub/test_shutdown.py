"""How ``otahub serve`` stops: in order, within its bound, whatever devices are doing."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

from otahub.hub.core import CoreConfig, HubCore
from otahub.hub.services.devices import DeviceSpec
from otahub.mqtt.packets import Connack, Connect
from tests.hubproc import HubProcess
from tests.mqtt.rawclient import RawClient

DEVICES = 1000


async def _register_thingsboard_devices(data_dir: Path, count: int) -> None:
    core = HubCore(CoreConfig(data_dir=data_dir))
    await core.db.migrate()
    try:
        for i in range(count):
            await core.devices.create(
                DeviceSpec(name=f"tb-{i}", dialect="thingsboard", token=f"token-{i}")
            )
    finally:
        await core.close()


async def _connect_all(port: int, count: int) -> list[RawClient]:
    """``count`` ThingsBoard devices on raw connections, each authenticated by its token."""
    gate = asyncio.Semaphore(100)

    async def one(i: int) -> RawClient:
        async with gate:
            client = await RawClient.open(port)
            await client.send(Connect(client_id=f"tb-{i}", protocol_level=4, username=f"token-{i}"))
            connack = await client.recv(timeout=30)
            assert isinstance(connack, Connack) and connack.reason_code == 0, connack
            return client

    return await asyncio.gather(*(one(i) for i in range(count)))


def _sigterm_during_mass_disconnect(
    tmp_path: Path, hub_factory: Callable[..., HubProcess], shutdown_timeout_s: float
) -> tuple[int, str]:
    """Connect DEVICES ThingsBoard devices, drop them all and SIGTERM the hub at once."""
    data_dir = tmp_path / "data"
    asyncio.run(_register_thingsboard_devices(data_dir, DEVICES))
    hub = hub_factory("--no-auth", "--shutdown-timeout", str(shutdown_timeout_s), data_dir=data_dir)
    assert hub.proc is not None

    async def connect_then_drop_all() -> None:
        clients = await _connect_all(hub.mqtt_port, DEVICES)
        # Every connection drops at once (no DISCONNECT: each is a device going
        # offline, which the hub writes to the database), and SIGTERM with them.
        for client in clients:
            transport = client.writer.transport
            assert transport is not None
            transport.abort()
        assert hub.proc is not None
        hub.proc.send_signal(signal.SIGTERM)

    asyncio.run(connect_then_drop_all())
    try:
        # Generous: the bound plus the process's start of Python; a hang is forever.
        status = hub.proc.wait(timeout=shutdown_timeout_s * 4 + 10)
    except subprocess.TimeoutExpired:
        hub.proc.kill()
        hub.proc.wait()
        raise AssertionError(f"the hub did not stop after SIGTERM:\n{hub.log()[-4000:]}") from None
    return status, hub.log()


def test_sigterm_during_a_mass_disconnect_exits_cleanly_within_the_bound(
    tmp_path: Path, hub_factory: Callable[..., HubProcess]
) -> None:
    # A bound the disconnects fit in even on a loaded machine: nothing is cut short.
    status, log = _sigterm_during_mass_disconnect(tmp_path, hub_factory, 30)
    assert status == 0, log[-4000:]
    assert "otahub stopped" in log
    assert "cut short" not in log, log[-4000:]
    assert "Traceback" not in log, log[-4000:]


def test_sigterm_with_a_bound_too_short_for_the_disconnects_cuts_them_short_and_exits(
    tmp_path: Path, hub_factory: Callable[..., HubProcess]
) -> None:
    status, log = _sigterm_during_mass_disconnect(tmp_path, hub_factory, 1)
    assert status == 0, log[-4000:]
    assert "otahub stopped" in log
