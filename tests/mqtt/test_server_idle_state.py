"""What an idle connection keeps: no empty queues, not its CONNECT.

A hub holds thousands of idle device connections, so every per-connection
object made "just in case" is memory multiplied by the fleet. The queues are
made when something has to wait and dropped once it has gone.
"""

from __future__ import annotations

import asyncio

from otahub.mqtt.packets import Puback, Publish
from tests.mqtt.conftest import RunningServer
from tests.mqtt.rawclient import RawClient


async def test_an_idle_session_holds_no_queue_and_no_connect_packet(
    running: RunningServer,
) -> None:
    client = await RawClient.open(running.port, 4)
    await client.connect("idle-1", username="dev", password=b"secret")
    await client.subscribe("idle/#", qos=1)
    session = running.server.session("idle-1")
    assert session is not None and session.connection is not None
    assert session.queue is None
    assert session.limits_hit is None
    assert session.handlers._calls is None
    assert session.connection.proto.connect is None  # its password with it
    client.close()


async def test_messages_queued_while_offline_are_delivered_and_the_queue_dropped(
    running: RunningServer,
) -> None:
    client = await RawClient.open(running.port, 4)
    await client.connect("idle-2", clean_start=False)
    await client.subscribe("idle/q", qos=1)
    client.close()
    await asyncio.sleep(0.1)
    for n in range(3):
        running.server.publish("idle/q", b"m%d" % n, qos=1)
    session = running.server.session("idle-2")
    assert session is not None and session.queue is not None and len(session.queue) == 3

    again = await RawClient.open(running.port, 4)
    connack = await again.connect("idle-2", clean_start=False)
    assert connack.session_present
    got = [await again.recv() for _ in range(3)]
    assert [p.payload for p in got if isinstance(p, Publish)] == [b"m0", b"m1", b"m2"]
    for packet in got:
        assert isinstance(packet, Publish) and packet.packet_id is not None
        await again.send(Puback(packet.packet_id))
    await again.expect_nothing()
    assert session.queue is None
    assert not session.inflight
    again.close()
