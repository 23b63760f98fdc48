"""The hooks dialect drivers use, exercised by a small test driver."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from otahub.mqtt.hooks import NO_ACK, ConnectInfo, Identity, Refusal
from otahub.mqtt.packets import MQTT_5, Connack, Connect, Puback, Publish, Suback
from otahub.mqtt.reason_codes import ReasonCode
from otahub.mqtt.session import Session
from tests.mqtt.conftest import RunningServer
from tests.mqtt.rawclient import RawClient

VERSIONS = [pytest.param(4, id="3.1.1"), pytest.param(5, id="5.0")]


@dataclass(frozen=True)
class OwnTopicsAcl:
    """A device may only use topics under its own name."""

    prefix: str

    def can_publish(self, topic: str) -> bool:
        return topic.startswith(self.prefix)

    def can_subscribe(self, topic_filter: str) -> bool:
        return topic_filter.startswith(self.prefix)


class TokenDriver:
    """Accepts username == a known token; passes on anything without a username."""

    def __init__(self, tokens: dict[str, str]) -> None:
        self.tokens = tokens
        self.seen: list[ConnectInfo] = []

    async def __call__(self, info: ConnectInfo) -> Identity | Refusal | None:
        self.seen.append(info)
        if info.username is None:
            return None
        device = self.tokens.get(info.username)
        if device is None:
            return Refusal(ReasonCode.NOT_AUTHORIZED, f"unknown token {info.username!r}")
        return Identity(device, dialect="test", acl=OwnTopicsAcl(f"dev/{device}/"))


@pytest.mark.parametrize("version", VERSIONS)
async def test_authenticator_accepts_with_identity(running: RunningServer, version: int) -> None:
    driver = TokenDriver({"tok-1": "sensor-1"})
    running.server.add_authenticator(driver)
    client = await RawClient.open(running.port, version)
    connack = await client.connect("cid-1", username="tok-1", password=b"pw")
    assert connack.reason_code == 0
    session = running.server.session("cid-1")
    assert session is not None
    assert session.identity.name == "sensor-1"
    info = driver.seen[0]
    assert (info.client_id, info.username, info.password, info.protocol_level) == (
        "cid-1",
        "tok-1",
        b"pw",
        version,
    )
    assert info.listener == "mqtt"
    client.close()


@pytest.mark.parametrize(("version", "code"), [(4, 5), (5, ReasonCode.NOT_AUTHORIZED)])
async def test_authenticator_refusal_gets_connack_code(
    running: RunningServer, version: int, code: int, caplog: pytest.LogCaptureFixture
) -> None:
    running.server.add_authenticator(TokenDriver({}))
    client = await RawClient.open(running.port, version)
    await client.send(Connect(client_id="x", protocol_level=version, username="bad"))
    got = await client.closed()
    assert isinstance(got[0], Connack)
    assert got[0].reason_code == code
    assert "refused CONNECT" in caplog.text and "unknown token 'bad'" in caplog.text


async def test_anonymous_refused_when_not_allowed(running: RunningServer) -> None:
    running.server.config.anonymous_from = ()
    running.server.add_authenticator(TokenDriver({}))
    client = await RawClient.open(running.port, 4)
    connack = await client.connect("anon")
    assert connack.reason_code == 5


@pytest.mark.parametrize("version", VERSIONS)
async def test_acl_refuses_foreign_subscribe_and_publish(
    running: RunningServer, version: int, caplog: pytest.LogCaptureFixture
) -> None:
    running.server.add_authenticator(TokenDriver({"a": "A", "b": "B"}))
    spy = await RawClient.open(running.port, 4)
    await spy.connect("spy")
    await spy.subscribe("#")
    dev_a = await RawClient.open(running.port, version)
    await dev_a.connect("a", username="a")
    suback = await dev_a.subscribe("dev/A/in", "dev/B/in", qos=1)
    failure = ReasonCode.NOT_AUTHORIZED if version == MQTT_5 else 0x80
    assert suback.reason_codes == [1, failure]
    await dev_a.publish("dev/B/out", b"intrusion", qos=1)
    ack = await dev_a.recv()
    assert isinstance(ack, Puback)
    assert ack.reason_code == (ReasonCode.NOT_AUTHORIZED if version == MQTT_5 else 0)
    await spy.expect_nothing()
    assert "may not publish to 'dev/B/out'" in caplog.text
    await dev_a.publish("dev/A/out", b"fine", qos=0)
    got = await spy.recv()
    assert isinstance(got, Publish) and got.topic == "dev/A/out"


@pytest.mark.parametrize("version", VERSIONS)
async def test_interception_goes_to_driver_not_subscribers(
    running: RunningServer, version: int
) -> None:
    server = running.server

    async def by_token(info: ConnectInfo) -> Identity | None:
        return Identity("dev-7", dialect="test") if info.username == "t" else None

    server.add_authenticator(by_token)
    received: list[tuple[str, str, bytes]] = []

    async def handler(session: Session, packet: Publish) -> None:
        received.append((session.identity.name, packet.topic, packet.payload))
        # answer straight to the sender, which never subscribed to the reply topic
        session.send(packet.topic.replace("request", "response"), b"reply:" + packet.payload)

    server.intercept("v1/devices/me/rpc/request/+", handler)
    spy = await RawClient.open(running.port, 4)
    await spy.connect("spy")
    await spy.subscribe("#")
    device = await RawClient.open(running.port, version)
    await device.connect("dev", username="t")
    await device.publish("v1/devices/me/rpc/request/42", b"ping", qos=1, retain=True)
    packets = [await device.recv(), await device.recv()]
    assert any(isinstance(p, Puback) for p in packets)
    reply = next(p for p in packets if isinstance(p, Publish))
    assert (reply.topic, reply.payload) == ("v1/devices/me/rpc/response/42", b"reply:ping")
    assert received == [("dev-7", "v1/devices/me/rpc/request/42", b"ping")]
    await spy.expect_nothing()
    assert len(server.retained) == 0  # intercepted messages are never retained


async def test_direct_delivery_to_unsubscribed_session(running: RunningServer) -> None:
    client = await RawClient.open(running.port, 5)
    await client.connect("target")
    assert running.server.deliver("target", "/sys/pk/dk/ota/device/upgrade", b"{}", qos=1)
    packet = await client.recv()
    assert isinstance(packet, Publish)
    assert (packet.topic, packet.qos) == ("/sys/pk/dk/ota/device/upgrade", 1)
    assert not running.server.deliver("nobody", "x", b"")


async def test_in_process_publish_and_subscribe(running: RunningServer) -> None:
    server = running.server
    client = await RawClient.open(running.port, 4)
    await client.connect("child")
    await client.publish("te/device/child//", b'{"@type":"child-device"}', qos=1, retain=True)
    await client.recv()
    seen: list[tuple[str, bytes, bool]] = []
    unsubscribe = server.subscribe(
        "te/+/+//", lambda p: seen.append((p.topic, p.payload, p.retain))
    )
    assert seen == [("te/device/child//", b'{"@type":"child-device"}', True)]  # retained replay
    await client.subscribe("te/device/child///cmd/#", qos=1)
    server.publish(
        "te/device/child///cmd/firmware_update/otahub-1", b'{"status":"init"}', qos=1, retain=True
    )
    cmd = await client.recv()
    assert isinstance(cmd, Publish) and cmd.payload == b'{"status":"init"}'
    await client.publish("te/device/child//", b"{}", qos=0)
    await asyncio.sleep(0.1)
    assert seen[-1] == ("te/device/child//", b"{}", False)
    unsubscribe()
    await client.publish("te/device/child//", b"later", qos=0)
    await asyncio.sleep(0.1)
    assert seen[-1][1] == b"{}"


async def test_session_observers(running: RunningServer) -> None:
    events: list[tuple[str, str]] = []
    running.server.on_session_connected(lambda s: events.append(("up", s.client_id)))
    running.server.on_session_disconnected(lambda s: events.append(("down", s.client_id)))
    client = await RawClient.open(running.port, 4)
    await client.connect("obs")
    client.close()
    for _ in range(50):
        if len(events) == 2:
            break
        await asyncio.sleep(0.02)
    assert events == [("up", "obs"), ("down", "obs")]


async def test_failing_handler_does_not_break_connection(
    running: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(session: Session, packet: Publish) -> None:
        raise RuntimeError("driver bug")

    running.server.intercept("boom", broken)
    client = await RawClient.open(running.port, 4)
    await client.connect("c")
    await client.publish("boom", b"", qos=1)
    assert isinstance(await client.recv(), Puback)
    assert isinstance(await client.subscribe("ok"), Suback)
    assert "driver bug" in caplog.text


@pytest.mark.parametrize("asynchronous", [False, True], ids=["plain", "coroutine"])
async def test_handler_verdict_decides_the_acknowledgement(
    running: RunningServer, asynchronous: bool
) -> None:
    verdicts = {"v/ok": None, "v/bad": ReasonCode.PAYLOAD_FORMAT_INVALID, "v/none": NO_ACK}

    def plain(session: Session, packet: Publish) -> int | None:
        return verdicts[packet.topic]

    async def coroutine(session: Session, packet: Publish) -> int | None:
        await asyncio.sleep(0.01)
        return verdicts[packet.topic]

    running.server.intercept("v/+", coroutine if asynchronous else plain)
    client = await RawClient.open(running.port, 5)
    await client.connect("verdicts")
    await client.send(Publish("v/ok", b"", qos=1, packet_id=1))
    assert await client.recv() == Puback(1)
    await client.send(Publish("v/bad", b"", qos=1, packet_id=2))
    assert await client.recv() == Puback(2, ReasonCode.PAYLOAD_FORMAT_INVALID)
    await client.send(Publish("v/none", b"", qos=1, packet_id=3))
    await client.expect_nothing()


async def test_acl_may_name_the_subscribe_refusal_code(running: RunningServer) -> None:
    class ExactFilters:
        def can_publish(self, topic: str) -> bool:
            return True

        def can_subscribe(self, topic_filter: str) -> bool | int:
            return topic_filter == "ok" or ReasonCode.TOPIC_FILTER_INVALID

    async def exact(info: ConnectInfo) -> Identity:
        return Identity("dev", acl=ExactFilters())

    running.server.add_authenticator(exact)
    for version, refused in ((5, ReasonCode.TOPIC_FILTER_INVALID), (4, 0x80)):
        client = await RawClient.open(running.port, version)
        await client.connect(f"acl-{version}")
        suback = await client.subscribe("ok", "ok/+")
        assert suback.reason_codes == [0, refused]
        client.close()


async def test_acknowledgement_precedes_a_plain_handlers_reply(running: RunningServer) -> None:
    def answer(session: Session, packet: Publish) -> None:
        session.send("reply/1", b"chunk")

    def refuse(session: Session, packet: Publish) -> int:
        session.send("error", b"NOT_FOUND")
        session.disconnect(ReasonCode.IMPLEMENTATION_SPECIFIC_ERROR, "nothing assigned")
        return NO_ACK

    running.server.intercept("ask/1", answer)
    running.server.intercept("ask/2", refuse)
    client = await RawClient.open(running.port, 5)
    await client.connect("ordered")
    await client.send(Publish("ask/1", b"", qos=1, packet_id=7))
    assert await client.recv() == Puback(7)
    reply = await client.recv()
    assert isinstance(reply, Publish) and reply.topic == "reply/1"
    await client.send(Publish("ask/2", b"", qos=1, packet_id=8))
    sent = await client.closed()
    assert [type(p).__name__ for p in sent] == ["Publish", "Disconnect"]


@pytest.mark.parametrize("clean_start", [True, False], ids=["clean", "resumed"])
async def test_session_observers_hear_of_a_connection_taken_over(
    running: RunningServer, clean_start: bool
) -> None:
    # A driver counting live connections per device must see the old one end.
    events: list[tuple[str, int]] = []
    running.server.on_session_connected(lambda s: events.append(("up", id(s))))
    running.server.on_session_disconnected(lambda s: events.append(("down", id(s))))
    first = await RawClient.open(running.port, 4)
    await first.connect("twice", clean_start=False)
    old = running.server.session("twice")
    second = await RawClient.open(running.port, 4)
    await second.connect("twice", clean_start=clean_start)
    new = running.server.session("twice")
    assert old is not None and new is not None
    second.close()
    for _ in range(100):
        if len(events) == 4:
            break
        await asyncio.sleep(0.02)
    assert events == [("up", id(old)), ("down", id(old)), ("up", id(new)), ("down", id(new))]


async def test_subscription_observer_sees_granted_filters_after_the_suback(
    running: RunningServer,
) -> None:
    seen: list[tuple[str, str]] = []

    def observe(session: Session, topic_filter: str) -> None:
        # what a driver sends here must reach the client after its SUBACK
        session.send(f"echo/{topic_filter.replace('+', 'x')}", b"", 0)
        seen.append((session.client_id, topic_filter))

    stop = running.server.on_subscribed(observe)
    running.server.add_authenticator(TokenDriver({"tok": "dev"}))
    client = await RawClient.open(running.port, 5)
    await client.connect("subs", username="tok")
    suback = await client.subscribe("dev/dev/+", "other/topic", qos=1)
    assert suback.reason_codes[0] == 1 and suback.reason_codes[1] >= 0x80
    echo = await client.recv()
    assert isinstance(echo, Publish) and echo.topic == "echo/dev/dev/x"
    assert seen == [("subs", "dev/dev/+")]
    stop()
    await client.subscribe("dev/dev/a", qos=1)
    await client.expect_nothing()
    assert len(seen) == 1
