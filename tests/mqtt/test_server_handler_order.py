"""Driver code sees one session's messages in order; sessions do not wait for each other."""

from __future__ import annotations

import asyncio
import time

import pytest

from otahub.mqtt.limits import Limits
from otahub.mqtt.packets import Puback, Publish
from otahub.mqtt.server import MQTTServer, ServerConfig
from otahub.mqtt.session import Session
from tests.mqtt.conftest import RunningServer
from tests.mqtt.rawclient import RawClient

VERSIONS = [pytest.param(4, id="3.1.1"), pytest.param(5, id="5.0")]


async def wait_for(predicate: object, timeout: float = 10.0) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("version", VERSIONS)
async def test_one_sessions_coroutine_handlers_run_one_after_another_in_order(
    running: RunningServer, version: int
) -> None:
    events: list[str] = []

    async def handler(session: Session, packet: Publish) -> None:
        n = int(packet.payload)
        events.append(f"start {n}")
        # the earlier the message, the longer its handler takes
        await asyncio.sleep(0.02 * (5 - n))
        events.append(f"end {n}")

    running.server.intercept("ordered/+", handler)
    device = await RawClient.open(running.port, version)
    await device.connect("ordered")
    for n in range(5):
        await device.publish("ordered/x", str(n).encode(), qos=n % 2)
    await wait_for(lambda: len(events) == 10)
    assert events == [f"{what} {n}" for n in range(5) for what in ("start", "end")]


async def test_a_plain_handler_waits_for_the_sessions_coroutine_before_it(
    running: RunningServer,
) -> None:
    events: list[str] = []

    async def slow(session: Session, packet: Publish) -> None:
        await asyncio.sleep(0.1)
        events.append("slow done")

    def quick(session: Session, packet: Publish) -> None:
        events.append("quick")

    running.server.intercept("mixed/slow", slow)
    running.server.intercept("mixed/quick", quick)
    device = await RawClient.open(running.port, 4)
    await device.connect("mixed")
    await device.publish("mixed/slow", b"", qos=1)
    await device.publish("mixed/quick", b"", qos=1)
    acks = [await device.recv(), await device.recv()]
    assert [type(p) for p in acks] == [Puback, Puback]
    assert events == ["slow done", "quick"]


async def test_in_process_subscriber_gets_one_sessions_messages_in_order(
    running: RunningServer,
) -> None:
    seen: list[bytes] = []

    async def subscriber(packet: Publish) -> None:
        await asyncio.sleep(0.02 * (5 - int(packet.payload)))
        seen.append(packet.payload)

    running.server.subscribe("te/#", subscriber)
    device = await RawClient.open(running.port, 4)
    await device.connect("child")
    for n in range(5):
        await device.publish(f"te/device/child/{n}", str(n).encode(), qos=1)
    await wait_for(lambda: len(seen) == 5)
    assert seen == [b"0", b"1", b"2", b"3", b"4"]


async def test_a_slow_handler_for_one_device_does_not_delay_another_device(
    running: RunningServer,
) -> None:
    release = asyncio.Event()
    slow_started = asyncio.Event()
    handled: list[str] = []

    async def handler(session: Session, packet: Publish) -> None:
        if session.client_id == "slow-device":
            slow_started.set()
            await release.wait()  # e.g. a database write that hangs
        handled.append(session.client_id)

    running.server.intercept("events/+", handler)
    slow = await RawClient.open(running.port, 4)
    await slow.connect("slow-device")
    quick = await RawClient.open(running.port, 4)
    await quick.connect("quick-device")
    await slow.publish("events/a", b"stuck", qos=1)
    await asyncio.wait_for(slow_started.wait(), 5)

    started = time.monotonic()
    for n in range(20):
        await quick.publish("events/b", str(n).encode(), qos=1)
        assert isinstance(await quick.recv(), Puback)
    took = time.monotonic() - started
    # all of the quick device's messages were handled while the slow one's still hangs
    assert handled == ["quick-device"] * 20, f"after {took:.3f}s"
    assert not release.is_set()
    release.set()
    assert isinstance(await slow.recv(), Puback)
    assert handled[-1] == "slow-device"


async def test_a_flood_behind_a_slow_handler_stops_reading_from_that_socket_only() -> None:
    server = MQTTServer(ServerConfig(limits=Limits(max_queued_handlers=4)))
    port = await server.listen("127.0.0.1", 0)
    release = asyncio.Event()
    handled: list[bytes] = []

    async def handler(session: Session, packet: Publish) -> None:
        if session.client_id == "flood":
            await release.wait()
        handled.append(packet.payload)

    server.intercept("flood/+", handler)
    try:
        flood = await RawClient.open(port, 4)
        await flood.connect("flood")
        session = server.session("flood")
        assert session is not None and session.connection is not None
        conn = session.connection
        for n in range(40):
            await flood.publish("flood/x", b"%d" % n)
            await asyncio.sleep(0)
        await wait_for(lambda: conn.reading_paused)
        queued = len(session.handlers)
        # another device is read and handled meanwhile
        other = await RawClient.open(port, 4)
        await other.connect("other")
        await other.publish("flood/y", b"other", qos=1)
        assert isinstance(await other.recv(), Puback)
        assert handled == [b"other"]
        assert len(session.handlers) == queued  # nothing more read from the flood
        release.set()
        await wait_for(lambda: len(handled) == 41)
        assert handled[1:] == [b"%d" % n for n in range(40)]
        assert not conn.reading_paused
    finally:
        await server.close()
