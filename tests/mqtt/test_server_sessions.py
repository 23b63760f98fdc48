"""Session, QoS and MQTT 5.0 feature behaviour of the endpoint."""

from __future__ import annotations

import asyncio

from otahub.mqtt.packets import (
    Disconnect,
    Properties,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Subscribe,
    Subscription,
    Will,
)
from otahub.mqtt.reason_codes import ReasonCode
from tests.mqtt.conftest import RunningServer
from tests.mqtt.rawclient import RawClient


async def test_qos2_inbound_exactly_once(running: RunningServer) -> None:
    sub = await RawClient.open(running.port, 4)
    await sub.connect("sub")
    await sub.subscribe("q2", qos=0)
    pub = await RawClient.open(running.port, 4)
    await pub.connect("pub")
    message = Publish("q2", b"once", qos=2, packet_id=7)
    await pub.send(message)
    assert await pub.recv() == Pubrec(7)
    message.dup = True
    await pub.send(message)  # re-sent before PUBREL: acknowledged, not routed again
    assert await pub.recv() == Pubrec(7)
    await pub.send(Pubrel(7))
    assert await pub.recv() == Pubcomp(7)
    got = await sub.recv()
    assert isinstance(got, Publish) and got.payload == b"once"
    await sub.expect_nothing()


async def test_qos2_outbound_flow_and_pubrel_resent_on_resume(running: RunningServer) -> None:
    sub = await RawClient.open(running.port, 4)
    await sub.connect("q2sub", clean_start=False)
    await sub.subscribe("q2/out", qos=2)
    running.server.publish("q2/out", b"data", qos=2)
    got = await sub.recv()
    assert isinstance(got, Publish) and got.qos == 2 and got.packet_id is not None
    await sub.send(Pubrec(got.packet_id))
    assert await sub.recv() == Pubrel(got.packet_id)
    sub.close()  # gone before PUBCOMP
    await asyncio.sleep(0.1)
    again = await RawClient.open(running.port, 4)
    connack = await again.connect("q2sub", clean_start=False)
    assert connack.session_present
    assert await again.recv() == Pubrel(got.packet_id)
    await again.send(Pubcomp(got.packet_id))
    await again.expect_nothing()
    session = running.server.session("q2sub")
    assert session is not None and not session.inflight


async def test_v5_takeover_sends_session_taken_over(running: RunningServer) -> None:
    first = await RawClient.open(running.port, 5)
    await first.connect("same")
    second = await RawClient.open(running.port, 5)
    await second.connect("same")
    sent = await first.closed()
    assert isinstance(sent[0], Disconnect) and sent[0].reason_code == ReasonCode.SESSION_TAKEN_OVER


async def test_v5_session_expiry(running: RunningServer) -> None:
    client = await RawClient.open(running.port, 5)
    await client.connect(
        "expiring", clean_start=False, properties=Properties(session_expiry_interval=1)
    )
    await client.subscribe("e/#", qos=1)
    client.close()
    await asyncio.sleep(0.2)
    assert running.server.session("expiring") is not None
    await asyncio.sleep(1.2)
    assert running.server.session("expiring") is None


async def test_v5_session_ends_at_disconnect_by_default(running: RunningServer) -> None:
    client = await RawClient.open(running.port, 5)
    await client.connect("brief", clean_start=False)
    await client.send(Disconnect())
    await client.closed()
    assert running.server.session("brief") is None


async def test_v5_will_delay_cancelled_by_reconnect(running: RunningServer) -> None:
    watcher = await RawClient.open(running.port, 4)
    await watcher.connect("watch")
    await watcher.subscribe("will/#")
    will = Will("will/x", b"dead", properties=Properties(will_delay_interval=1))
    client = await RawClient.open(running.port, 5)
    props = Properties(session_expiry_interval=10)
    await client.connect("delayed", clean_start=False, will=will, properties=props)
    client.close()
    await asyncio.sleep(0.3)
    back = await RawClient.open(running.port, 5)
    await back.connect("delayed", clean_start=False, properties=props)
    await watcher.expect_nothing(1.2)
    # and without the reconnect it is published after the delay
    back.close()
    await asyncio.sleep(0.1)
    dying = await RawClient.open(running.port, 5)
    await dying.connect("delayed2", will=will, properties=props)
    dying.close()
    await watcher.expect_nothing(0.5)
    got = await watcher.recv(2)
    assert isinstance(got, Publish) and got.payload == b"dead"


async def test_v5_disconnect_with_will(running: RunningServer) -> None:
    watcher = await RawClient.open(running.port, 4)
    await watcher.connect("watch")
    await watcher.subscribe("will/#")
    client = await RawClient.open(running.port, 5)
    await client.connect("w", will=Will("will/w", b"bye"))
    await client.send(Disconnect(ReasonCode.DISCONNECT_WITH_WILL))
    got = await watcher.recv()
    assert isinstance(got, Publish) and got.payload == b"bye"


async def test_v5_topic_alias(running: RunningServer) -> None:
    sub = await RawClient.open(running.port, 4)
    await sub.connect("s")
    await sub.subscribe("long/topic/name")
    pub = await RawClient.open(running.port, 5)
    await pub.connect("p")
    await pub.send(Publish("long/topic/name", b"1", properties=Properties(topic_alias=3)))
    await pub.send(Publish("", b"2", properties=Properties(topic_alias=3)))
    for payload in (b"1", b"2"):
        got = await sub.recv()
        assert isinstance(got, Publish) and (got.topic, got.payload) == ("long/topic/name", payload)
    await pub.send(Publish("", b"3", properties=Properties(topic_alias=4)))
    sent = await pub.closed()
    assert isinstance(sent[0], Disconnect) and sent[0].reason_code == ReasonCode.PROTOCOL_ERROR


async def test_v5_subscription_options_and_identifiers(running: RunningServer) -> None:
    server = running.server
    server.publish("opt/r", b"kept", retain=True)
    client = await RawClient.open(running.port, 5)
    await client.connect("opts")
    await client.send(
        Subscribe(
            1,
            [Subscription("opt/#", 1, no_local=True, retain_as_published=True)],
            Properties(subscription_identifiers=[9]),
        )
    )
    await client.recv()  # SUBACK
    retained = await client.recv()
    assert isinstance(retained, Publish)
    assert retained.retain and retained.properties.subscription_identifiers == [9]
    await client.publish("opt/mine", b"own", qos=0)  # no local: not echoed
    await client.expect_nothing()
    server.publish("opt/r", b"new", retain=True)
    live = await client.recv()
    assert isinstance(live, Publish) and live.retain  # retain as published
    # retain handling 2: no retained messages at subscribe
    await client.send(Subscribe(2, [Subscription("opt/r", 0, retain_handling=2)]))
    await client.recv()
    await client.expect_nothing()
    # retain handling 1: only for a new subscription
    await client.send(Subscribe(3, [Subscription("opt/r", 0, retain_handling=1)]))
    await client.recv()
    await client.expect_nothing()


async def test_v5_no_matching_subscribers_reason(running: RunningServer) -> None:
    pub = await RawClient.open(running.port, 5)
    await pub.connect("lonely")
    await pub.publish("nobody/listens", b"x", qos=1)
    ack = await pub.recv()
    assert isinstance(ack, Puback) and ack.reason_code == ReasonCode.NO_MATCHING_SUBSCRIBERS


async def test_v5_client_maximum_packet_size_respected(running: RunningServer) -> None:
    client = await RawClient.open(running.port, 5)
    await client.connect("small", properties=Properties(maximum_packet_size=100))
    await client.subscribe("big/#")
    running.server.publish("big/1", b"x" * 200)
    running.server.publish("big/2", b"y" * 10)
    got = await client.recv()
    assert isinstance(got, Publish) and got.topic == "big/2"


async def test_v5_receive_maximum_limits_inflight(running: RunningServer) -> None:
    client = await RawClient.open(running.port, 5)
    await client.connect("slow", properties=Properties(receive_maximum=1))
    await client.subscribe("rm/#", qos=1)
    for i in range(3):
        running.server.publish(f"rm/{i}", b"", qos=1)
    first = await client.recv()
    await client.expect_nothing()
    assert isinstance(first, Publish) and first.packet_id is not None
    await client.send(Puback(first.packet_id))
    second = await client.recv()
    assert isinstance(second, Publish) and second.topic == "rm/1"


async def test_shared_subscription_not_supported(running: RunningServer) -> None:
    client = await RawClient.open(running.port, 5)
    await client.connect("share")
    suback = await client.subscribe("$share/g/t", "+/x")
    assert suback.reason_codes == [ReasonCode.SHARED_SUBSCRIPTIONS_NOT_SUPPORTED, 0]


async def test_dollar_topics_not_matched_by_leading_wildcards(running: RunningServer) -> None:
    client = await RawClient.open(running.port, 4)
    await client.connect("dollar")
    await client.subscribe("#", "+/info")
    running.server.publish("$SYS/info", b"hidden", retain=True)
    await client.expect_nothing()
    await client.subscribe("$SYS/#")
    got = await client.recv()
    assert isinstance(got, Publish) and got.topic == "$SYS/info"


async def test_v311_empty_client_id_without_clean_session_refused(running: RunningServer) -> None:
    client = await RawClient.open(running.port, 4)
    connack = await client.connect("", clean_start=False)
    assert connack.reason_code == 2  # identifier rejected


async def test_v311_empty_client_id_with_clean_session_accepted(running: RunningServer) -> None:
    client = await RawClient.open(running.port, 4)
    connack = await client.connect("", clean_start=True)
    assert connack.reason_code == 0
