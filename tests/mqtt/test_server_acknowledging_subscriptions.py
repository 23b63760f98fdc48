"""In-process subscriptions that acknowledge: a client's QoS 1/2 PUBLISH is
acknowledged once the subscriber is done with it, in order with the others."""

from __future__ import annotations

import asyncio

import pytest

from otahub.mqtt.packets import Puback, Publish, Pubrec
from otahub.mqtt.reason_codes import ReasonCode
from tests.mqtt.conftest import RunningServer
from tests.mqtt.rawclient import RawClient

VERSIONS = [pytest.param(4, id="3.1.1"), pytest.param(5, id="5.0")]


class Holding:
    """A subscriber whose every message waits for the test to let it go."""

    def __init__(self) -> None:
        self.got: list[bytes] = []
        self.release: list[asyncio.Future[None]] = []

    async def __call__(self, packet: Publish) -> None:
        self.got.append(packet.payload)
        self.release.append(asyncio.get_running_loop().create_future())
        await self.release[-1]

    async def until(self, count: int) -> None:
        for _ in range(500):
            if len(self.got) >= count:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"{count} messages never reached the subscriber: {self.got}")


async def _holding_child(running: RunningServer, version: int = 4) -> tuple[Holding, RawClient]:
    """A subscription on ``res/+`` that acknowledges, and a client connected."""
    holding = Holding()
    running.server.subscribe("res/+", holding, acknowledges=True)
    device = await RawClient.open(running.port, version)
    await device.connect("child")
    return holding, device


@pytest.mark.parametrize("version", VERSIONS)
async def test_the_acknowledgement_waits_until_the_subscriber_is_done(
    running: RunningServer, version: int
) -> None:
    holding, device = await _holding_child(running, version)
    await device.publish("res/a", b"first", qos=1)
    await device.publish("res/a", b"second", qos=1)
    await holding.until(1)
    await device.expect_nothing()  # handled, not done
    holding.release[0].set_result(None)
    first = await device.recv()
    assert isinstance(first, Puback) and first.packet_id == 1
    await holding.until(2)
    await device.expect_nothing()
    holding.release[1].set_result(None)
    second = await device.recv()
    assert isinstance(second, Puback) and second.packet_id == 2
    assert second.reason_code == 0


async def test_a_later_message_to_others_is_acknowledged_after_the_waiting_one(
    running: RunningServer,
) -> None:
    holding, device = await _holding_child(running)
    await device.publish("res/a", b"waits", qos=1)
    await device.publish("plain/topic", b"routed", qos=1)
    await holding.until(1)
    await device.expect_nothing()
    holding.release[0].set_result(None)
    acks = [await device.recv(), await device.recv()]
    assert [p.packet_id for p in acks if isinstance(p, Puback)] == [1, 2]


async def test_a_qos2_message_is_received_once_the_subscriber_is_done(
    running: RunningServer,
) -> None:
    holding, device = await _holding_child(running)
    await device.publish("res/a", b"exactly once", qos=2)
    await holding.until(1)
    await device.expect_nothing()
    holding.release[0].set_result(None)
    assert isinstance(await device.recv(), Pubrec)


async def test_a_failing_subscriber_is_an_implementation_specific_error_in_mqtt5(
    running: RunningServer,
) -> None:
    async def failing(packet: Publish) -> None:
        await asyncio.sleep(0)
        raise OSError("disk full")

    running.server.subscribe("res/+", failing, acknowledges=True)
    device = await RawClient.open(running.port, 5)
    await device.connect("child")
    await device.publish("res/a", b"", qos=1)
    ack = await device.recv()
    assert isinstance(ack, Puback)
    assert ack.reason_code == ReasonCode.IMPLEMENTATION_SPECIFIC_ERROR


async def test_other_subscriptions_do_not_hold_the_acknowledgement_back(
    running: RunningServer,
) -> None:
    holding = Holding()
    unsubscribe = running.server.subscribe("res/+", holding)
    device = await RawClient.open(running.port, 4)
    await device.connect("child")
    await device.publish("res/a", b"handled later", qos=1)
    ack = await device.recv()
    assert isinstance(ack, Puback) and ack.packet_id == 1
    assert running.server.acknowledging_subscriptions == 0
    unsubscribe()
    holding.release[0].set_result(None)
    ends = running.server.subscribe("res/+", holding, acknowledges=True)
    assert running.server.acknowledging_subscriptions == 1
    ends()
    ends()  # twice is once
    assert running.server.acknowledging_subscriptions == 0
