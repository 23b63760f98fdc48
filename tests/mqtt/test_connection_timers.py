"""The asyncio connection runs the state machine's timers: keep alive over a real socket."""

from __future__ import annotations

import asyncio
import time

from otahub.mqtt.packets import Disconnect, Pingreq, Pingresp
from otahub.mqtt.reason_codes import ReasonCode
from tests.mqtt.conftest import RunningServer
from tests.mqtt.rawclient import RawClient


async def test_silent_v5_client_is_disconnected_after_one_and_a_half_keep_alives(
    running: RunningServer,
) -> None:
    client = await RawClient.open(running.port, 5)
    await client.connect("quiet", keep_alive=1)
    started = time.monotonic()
    got = await client.closed(timeout=5)
    waited = time.monotonic() - started
    [disconnect] = got
    assert isinstance(disconnect, Disconnect)
    assert disconnect.reason_code == ReasonCode.KEEP_ALIVE_TIMEOUT
    assert 1.3 <= waited < 3.0, waited


async def test_pinging_client_stays_connected(running: RunningServer) -> None:
    client = await RawClient.open(running.port, 4)
    await client.connect("pinger", keep_alive=1)
    for _ in range(4):  # 2.4 s, well past one and a half keep alives
        await asyncio.sleep(0.6)
        await client.send(Pingreq())
        assert await client.recv() == Pingresp()
    assert running.server.sessions["pinger"].connected
    client.close()
