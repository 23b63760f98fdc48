"""thin-edge devices on the hub's own endpoint are handled side by side, each in order."""

from __future__ import annotations

import asyncio
import time

import pytest

from otahub.hub.drivers.thin_edge.driver import ThinEdgeDriver
from otahub.protocols import thin_edge as te
from tests.hubproc import InProcessHub
from tests.mqtt.rawclient import RawClient

SLOW = "slow-child"


async def test_a_slow_database_write_for_one_child_does_not_hold_back_another_child(
    inproc_hub: InProcessHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = asyncio.Event()
    slow_started = asyncio.Event()
    original = ThinEdgeDriver._on_registration

    async def registration(self: ThinEdgeDriver, entity: te.EntityTopicId, payload: bytes) -> None:
        if entity.device_id == SLOW:
            slow_started.set()
            await release.wait()  # a registration write that hangs
        await original(self, entity, payload)

    monkeypatch.setattr(ThinEdgeDriver, "_on_registration", registration)
    port = inproc_hub.settings.mqtt_port
    slow = await RawClient.open(port, 4)
    await slow.connect(SLOW)
    await slow.publish(f"te/device/{SLOW}//", b'{"@type":"child-device"}', qos=1, retain=True)
    await asyncio.wait_for(slow_started.wait(), 10)

    quick = await RawClient.open(port, 4)
    await quick.connect("quick-child")
    started = time.monotonic()
    await quick.publish("te/device/quick-child//", b'{"@type":"child-device"}', qos=1, retain=True)
    deadline = time.monotonic() + 15
    while await inproc_hub.device("quick-child") is None:
        assert time.monotonic() < deadline, "the quick child waited behind the slow one"
        await asyncio.sleep(0.05)
    took = time.monotonic() - started
    assert await inproc_hub.device(SLOW) is None, f"registered after {took:.3f}s"
    assert not release.is_set()

    release.set()
    deadline = time.monotonic() + 15
    while await inproc_hub.device(SLOW) is None:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    slow.close()
    quick.close()


async def test_one_child_s_messages_from_different_clients_are_handled_in_arrival_order(
    inproc_hub: InProcessHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = asyncio.Event()
    events: list[str] = []
    registration_original = ThinEdgeDriver._on_registration
    capability_original = ThinEdgeDriver._on_capability

    async def registration(self: ThinEdgeDriver, entity: te.EntityTopicId, payload: bytes) -> None:
        events.append("registration")
        await release.wait()
        await registration_original(self, entity, payload)
        events.append("registered")

    async def capability(self: ThinEdgeDriver, entity: te.EntityTopicId, payload: bytes) -> None:
        events.append("capability")
        await capability_original(self, entity, payload)

    monkeypatch.setattr(ThinEdgeDriver, "_on_registration", registration)
    monkeypatch.setattr(ThinEdgeDriver, "_on_capability", capability)
    port = inproc_hub.settings.mqtt_port
    # as seed 000 does it: one mosquitto_pub (one client) per message
    mapper = await RawClient.open(port, 4)
    await mapper.connect("mapper")
    await mapper.publish("te/device/child09//", b'{"@type":"child-device"}', qos=1, retain=True)
    await mapper.recv()
    agent = await RawClient.open(port, 4)
    await agent.connect("agent")
    await agent.publish("te/device/child09///cmd/firmware_update", b"{}", qos=1, retain=True)
    await agent.recv()  # acknowledged, not yet handled: the registration is still going
    await asyncio.sleep(0.2)
    assert events == ["registration"]
    release.set()
    deadline = time.monotonic() + 15
    while len(events) < 3:
        assert time.monotonic() < deadline, events
        await asyncio.sleep(0.05)
    assert events == ["registration", "registered", "capability"]
    mapper.close()
    agent.close()
