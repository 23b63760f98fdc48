"""Handlers that give their verdict later: the session goes on, acknowledgements stay in order."""

from __future__ import annotations

import asyncio

import pytest

from otahub.mqtt.hooks import NO_ACK
from otahub.mqtt.packets import Puback, Publish
from otahub.mqtt.reason_codes import ReasonCode
from otahub.mqtt.session import Session
from tests.mqtt.conftest import RunningServer
from tests.mqtt.rawclient import RawClient

VERSIONS = [pytest.param(4, id="3.1.1"), pytest.param(5, id="5.0")]


@pytest.mark.parametrize("version", VERSIONS)
async def test_the_next_message_is_handled_while_a_verdict_waits_and_acks_keep_order(
    running: RunningServer, version: int
) -> None:
    loop = asyncio.get_running_loop()
    verdicts: list[asyncio.Future[int | None]] = []
    handled: list[bytes] = []

    def handler(session: Session, packet: Publish) -> asyncio.Future[int | None]:
        handled.append(packet.payload)
        verdicts.append(loop.create_future())
        return verdicts[-1]

    running.server.intercept("late/+", handler)
    device = await RawClient.open(running.port, version)
    await device.connect("late")
    for n in range(3):
        await device.publish("late/x", str(n).encode(), qos=1)
    for _ in range(100):
        if len(handled) == 3:
            break
        await asyncio.sleep(0.01)
    # all three handled, though none has its verdict yet
    assert handled == [b"0", b"1", b"2"]
    await device.expect_nothing()
    verdicts[1].set_result(None)  # the second's verdict first: its ack waits for the first's
    await device.expect_nothing()
    verdicts[0].set_result(None)
    first, second = await device.recv(), await device.recv()
    assert isinstance(first, Puback) and isinstance(second, Puback)
    assert [first.packet_id, second.packet_id] == [1, 2]
    await device.expect_nothing()
    verdicts[2].set_result(None)
    third = await device.recv()
    assert isinstance(third, Puback) and third.packet_id == 3


async def test_a_routed_message_is_acknowledged_after_the_waiting_one_before_it(
    running: RunningServer,
) -> None:
    verdict: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
    running.server.intercept("late/x", lambda session, packet: verdict)
    device = await RawClient.open(running.port, 4)
    await device.connect("mixed")
    await device.publish("late/x", b"waits", qos=1)
    await device.publish("plain/topic", b"routed", qos=1)
    await device.expect_nothing()
    verdict.set_result(None)
    acks = [await device.recv(), await device.recv()]
    assert [p.packet_id for p in acks if isinstance(p, Puback)] == [1, 2]


async def test_a_cancelled_or_no_ack_verdict_sends_nothing_and_releases_the_next(
    running: RunningServer,
) -> None:
    loop = asyncio.get_running_loop()
    verdicts: list[asyncio.Future[int | None]] = []

    def handler(session: Session, packet: Publish) -> asyncio.Future[int | None]:
        verdicts.append(loop.create_future())
        return verdicts[-1]

    running.server.intercept("late/+", handler)
    device = await RawClient.open(running.port, 4)
    await device.connect("cancel")
    for n in range(3):
        await device.publish("late/x", str(n).encode(), qos=1)
    for _ in range(500):
        if len(verdicts) == 3:
            break
        await asyncio.sleep(0.01)
    verdicts[0].cancel()
    verdicts[1].set_result(NO_ACK)
    verdicts[2].set_result(None)
    third = await device.recv()
    assert isinstance(third, Puback) and third.packet_id == 3
    await device.expect_nothing()


async def test_a_failed_verdict_is_an_implementation_specific_error_in_mqtt5(
    running: RunningServer,
) -> None:
    verdict: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
    running.server.intercept("late/x", lambda session, packet: verdict)
    device = await RawClient.open(running.port, 5)
    await device.connect("failing")
    await device.publish("late/x", b"", qos=1)
    await device.expect_nothing()
    verdict.set_exception(OSError("disk full"))
    ack = await device.recv()
    assert isinstance(ack, Puback)
    assert ack.reason_code == ReasonCode.IMPLEMENTATION_SPECIFIC_ERROR
