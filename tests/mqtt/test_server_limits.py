"""Per-client limits of the endpoint: each refused in the protocol's own terms, logged once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from otahub.mqtt.hooks import ConnectInfo, Identity, Refusal
from otahub.mqtt.limits import Limits
from otahub.mqtt.packets import (
    Connack,
    Connect,
    Disconnect,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Unsuback,
    Unsubscribe,
    Will,
)
from otahub.mqtt.reason_codes import ReasonCode
from otahub.mqtt.server import MQTTServer, ServerConfig
from tests.interop.paho_client import V5, V311, PahoClient
from tests.mqtt.conftest import RunningServer
from tests.mqtt.rawclient import RawClient

LIMITS = Limits(
    max_subscriptions=3,
    max_retained_per_client=2,
    max_retained_bytes_per_client=100,
    max_retained=4,
    max_retained_bytes=1000,
    max_pre_connect_bytes=512,
    max_inflight=2,
)


@pytest.fixture
async def limited() -> AsyncIterator[RunningServer]:
    server = MQTTServer(ServerConfig(connect_timeout=5.0, limits=LIMITS))
    port = await server.listen("127.0.0.1", 0)
    yield RunningServer(server, port)
    await server.close()


def _logged(caplog: pytest.LogCaptureFixture, text: str) -> int:
    return sum(text in record.getMessage() for record in caplog.records)


# -- subscriptions -----------------------------------------------------------------


@pytest.mark.parametrize(("version", "refused"), [(5, ReasonCode.QUOTA_EXCEEDED), (4, 0x80)])
async def test_subscriptions_past_the_limit_are_refused_and_logged_once(
    limited: RunningServer, caplog: pytest.LogCaptureFixture, version: int, refused: int
) -> None:
    client = await RawClient.open(limited.port, version)
    await client.connect("subs")
    assert (await client.subscribe("a", "b", "c", "d", qos=1)).reason_codes == [1, 1, 1, refused]
    assert (await client.subscribe("e")).reason_codes == [refused]
    # replacing a held subscription takes no new slot
    assert (await client.subscribe("a", qos=0)).reason_codes == [0]
    session = limited.server.session("subs")
    assert session is not None and sorted(session.subscriptions) == ["a", "b", "c"]
    assert _logged(caplog, "holds 3 subscriptions, the most one client may") == 1
    # an unsubscribe frees a slot
    await client.send(Unsubscribe(client.next_pid(), ["b"]))
    assert isinstance(await client.recv(), Unsuback)
    assert (await client.subscribe("e")).reason_codes == [0]


@pytest.mark.parametrize(("protocol", "refused"), [(V5, 0x97), (V311, 0x80)])
async def test_paho_subscription_past_the_limit_gets_the_refusal_code(
    limited: RunningServer, protocol: object, refused: int
) -> None:
    client = PahoClient(limited.port, "paho-subs", protocol)  # type: ignore[arg-type]
    assert await asyncio.to_thread(client.connect) == 0
    try:
        for topic in ("p/1", "p/2", "p/3"):
            granted = await asyncio.to_thread(client.subscribe, topic, 1)
            assert [int(getattr(g, "value", g)) for g in granted] == [1]
        granted = await asyncio.to_thread(client.subscribe, "p/4", 1)
        assert [int(getattr(g, "value", g)) for g in granted] == [refused]
    finally:
        await asyncio.to_thread(client.disconnect)


# -- retained messages -------------------------------------------------------------


async def _publish_qos1(client: RawClient, topic: str, payload: bytes) -> Puback:
    pid = client.next_pid()
    await client.send(Publish(topic, payload, 1, True, packet_id=pid))
    ack = await client.recv()
    assert isinstance(ack, Puback) and ack.packet_id == pid, ack
    return ack


async def test_retained_past_the_per_client_count_gets_quota_exceeded_v5(
    limited: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    watcher = await RawClient.open(limited.port, 5)
    await watcher.connect("watcher")
    await watcher.subscribe("r/#")
    client = await RawClient.open(limited.port, 5)
    await client.connect("retainer")
    assert (await _publish_qos1(client, "r/1", b"one")).reason_code == 0
    assert (await _publish_qos1(client, "r/2", b"two")).reason_code == 0
    refused = await _publish_qos1(client, "r/3", b"three")
    assert refused.reason_code == ReasonCode.QUOTA_EXCEEDED
    assert (await _publish_qos1(client, "r/4", b"four")).reason_code == ReasonCode.QUOTA_EXCEEDED
    got = [await watcher.recv(), await watcher.recv()]
    assert [p.topic for p in got if isinstance(p, Publish)] == ["r/1", "r/2"]
    await watcher.expect_nothing()  # a refused message is not routed either
    assert limited.server.retained.get("r/3") is None
    # replacing one's own retained message fits; clearing one frees its slot
    assert (await _publish_qos1(client, "r/1", b"uno")).reason_code == 0
    assert (await _publish_qos1(client, "r/2", b"")).reason_code == 0
    assert (await _publish_qos1(client, "r/3", b"three")).reason_code == 0
    assert _logged(caplog, "holds 2 retained messages, the most one client may") == 1


async def test_retained_past_the_quota_is_dropped_for_311(limited: RunningServer) -> None:
    watcher = await RawClient.open(limited.port, 4)
    await watcher.connect("watcher311")
    await watcher.subscribe("s/#")
    client = await RawClient.open(limited.port, 4)
    await client.connect("retainer311")
    for topic in ("s/1", "s/2", "s/3"):
        # 3.1.1 acknowledgements carry no reason: the client cannot tell, the message is gone
        assert (await _publish_qos1(client, topic, b"x")).reason_code == 0
    got = [await watcher.recv(), await watcher.recv()]
    assert [p.topic for p in got if isinstance(p, Publish)] == ["s/1", "s/2"]
    await watcher.expect_nothing()
    assert limited.server.retained.get("s/3") is None
    assert limited.server.retained_quota.usage("retainer311") == (2, 2)


async def test_retained_bytes_per_client_and_in_total(
    limited: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    big = await RawClient.open(limited.port, 5)
    await big.connect("big")
    assert (await _publish_qos1(big, "b/1", b"x" * 60)).reason_code < 0x80
    over = await _publish_qos1(big, "b/2", b"x" * 41)
    assert over.reason_code == ReasonCode.QUOTA_EXCEEDED
    assert _logged(caplog, "would pass the per-client limit of 100") == 1
    # the endpoint's count: 4 in total, whoever set them
    for name in ("t1", "t2"):
        other = await RawClient.open(limited.port, 5)
        await other.connect(name)
        assert (await _publish_qos1(other, f"{name}/x", b"1")).reason_code < 0x80
    last = await RawClient.open(limited.port, 5)
    await last.connect("t3")
    assert (await _publish_qos1(last, "t3/x", b"1")).reason_code < 0x80
    full = await _publish_qos1(last, "t3/y", b"1")
    assert full.reason_code == ReasonCode.QUOTA_EXCEEDED
    assert _logged(caplog, "the endpoint holds 4 retained messages, its limit") == 1
    # the hub's own retained messages are never refused
    assert limited.server.publish("hub/cmd", b"command", qos=1, retain=True) == 0
    assert limited.server.retained.get("hub/cmd") is not None


async def test_quota_follows_the_client_id_across_reconnects(limited: RunningServer) -> None:
    first = await RawClient.open(limited.port, 5)
    await first.connect("again")
    await _publish_qos1(first, "g/1", b"1")
    await _publish_qos1(first, "g/2", b"2")
    first.close()
    second = await RawClient.open(limited.port, 5)
    await second.connect("again")
    assert (await _publish_qos1(second, "g/3", b"3")).reason_code == ReasonCode.QUOTA_EXCEEDED


async def test_retained_will_past_the_quota_is_published_without_retain(
    limited: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    watcher = await RawClient.open(limited.port, 4)
    await watcher.connect("will-watcher")
    await watcher.subscribe("w/#")
    client = await RawClient.open(limited.port, 4)
    await client.connect("willer", will=Will("w/gone", b"bye", 0, True))
    await _publish_qos1(client, "w/1", b"1")
    await _publish_qos1(client, "w/2", b"2")
    await watcher.recv()
    await watcher.recv()
    client.close()
    got = await watcher.recv()
    assert isinstance(got, Publish) and got.topic == "w/gone" and got.payload == b"bye"
    assert limited.server.retained.get("w/gone") is None
    assert _logged(caplog, "its will is published without retain") == 1


# -- before CONNECT is accepted ------------------------------------------------------


async def test_oversized_connect_closes_the_connection_without_connack(
    limited: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    client = await RawClient.open(limited.port, 4)
    await client.send(
        Connect(client_id="huge-will", protocol_level=4, will=Will("w", b"x" * 1000, 0, False))
    )
    assert await client.closed() == []
    assert limited.server.session("huge-will") is None
    assert _logged(caplog, "sent more than 512 bytes before its CONNECT was accepted") == 1


async def test_data_pipelined_while_authenticating_is_bounded(
    limited: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    entered, release = asyncio.Event(), asyncio.Event()

    async def slow(info: ConnectInfo) -> Identity | Refusal | None:
        entered.set()
        await release.wait()
        return None

    limited.server.add_authenticator(slow)
    client = await RawClient.open(limited.port, 4)
    await client.send(Connect(client_id="pipeliner", protocol_level=4))
    await asyncio.wait_for(entered.wait(), 5)  # the CONNECT is in; what follows is backlog
    for n in range(10):
        await client.publish(f"p/{n}", b"y" * 100)
    assert await client.closed() == []
    release.set()
    assert _logged(caplog, "(client id 'pipeliner') sent more than 512 bytes") == 1
    assert limited.server.session("pipeliner") is None


async def test_small_pipelined_data_is_handled_after_connack(limited: RunningServer) -> None:
    watcher = await RawClient.open(limited.port, 4)
    await watcher.connect("pipe-watcher")
    await watcher.subscribe("q/#")
    client = await RawClient.open(limited.port, 4)
    await client.send(Connect(client_id="small-pipe", protocol_level=4))
    await client.publish("q/1", b"fits")
    assert isinstance(await client.recv(), Connack)
    got = await watcher.recv()
    assert isinstance(got, Publish) and got.payload == b"fits"


# -- in flight -------------------------------------------------------------------


async def test_outgoing_inflight_window_holds_the_rest_in_the_queue(
    limited: RunningServer,
) -> None:
    client = await RawClient.open(limited.port, 4)
    await client.connect("slow-reader")
    await client.subscribe("f/#", qos=1)
    for n in range(4):
        limited.server.publish(f"f/{n}", b"m", qos=1)
    first, second = await client.recv(), await client.recv()
    assert isinstance(first, Publish) and isinstance(second, Publish)
    await client.expect_nothing()  # 3.1.1 clients get the server's window of 2
    assert first.packet_id is not None
    await client.send(Puback(first.packet_id))
    third = await client.recv()
    assert isinstance(third, Publish) and third.topic == "f/2"


async def test_v5_connack_announces_the_receive_maximum(limited: RunningServer) -> None:
    client = await RawClient.open(limited.port, 5)
    connack = await client.connect("announce")
    assert connack.properties.receive_maximum == 2


async def test_v5_qos2_past_the_receive_maximum_disconnects_with_0x93(
    limited: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    client = await RawClient.open(limited.port, 5)
    await client.connect("q2flood")
    for pid in (1, 2):
        await client.send(Publish("z", b"1", 2, packet_id=pid))
        ack = await client.recv()
        assert isinstance(ack, Pubrec) and ack.packet_id == pid and ack.reason_code < 0x80
    await client.send(Publish("z", b"1", 2, packet_id=3))
    sent = await client.closed()
    assert isinstance(sent[0], Disconnect)
    assert sent[0].reason_code == ReasonCode.RECEIVE_MAXIMUM_EXCEEDED
    assert _logged(caplog, "has 2 QoS 2 messages in flight") == 1


async def test_311_qos2_past_the_window_is_dropped_until_one_is_released(
    limited: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    watcher = await RawClient.open(limited.port, 4)
    await watcher.connect("q2-watcher")
    await watcher.subscribe("z/#")
    client = await RawClient.open(limited.port, 4)
    await client.connect("q2flood311")
    for pid in (1, 2):
        await client.send(Publish("z/a", b"ok", 2, packet_id=pid))
        assert await client.recv() == Pubrec(pid)
    for _ in range(3):  # dropped each time, logged once
        await client.send(Publish("z/a", b"over", 2, packet_id=3))
    await client.expect_nothing()
    await client.send(Pubrel(1))
    assert await client.recv() == Pubcomp(1)
    await client.send(Publish("z/a", b"over", 2, packet_id=3, dup=True))
    assert await client.recv() == Pubrec(3)
    payloads = [
        p.payload for p in [await watcher.recv() for _ in range(3)] if isinstance(p, Publish)
    ]
    assert payloads == [b"ok", b"ok", b"over"]
    assert _logged(caplog, "has 2 QoS 2 messages in flight") == 1


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_subscriptions must be at least 1"):
        Limits(max_subscriptions=0)
    with pytest.raises(ValueError, match="at most 65535"):
        Limits(max_inflight=70000)
